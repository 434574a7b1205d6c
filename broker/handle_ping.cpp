// PING: answered with PONG in any session state (a liveness check).
#include "broker/handlers.h"

namespace zchat {

Verdict HandlePing(Context&, Request& req, const Message&) {
  req.Reply(Pong{});
  return Verdict::Accepted();
}

}  // namespace zchat
