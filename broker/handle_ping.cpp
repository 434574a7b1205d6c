// PING: answered with PONG in any session state (a liveness check).
#include "broker/handlers.h"

namespace zchat {

Outcome HandlePing(Context&, Request& req, const Message&) {
  req.Reply(Pong{});
  return Outcome::Accepted();
}

}  // namespace zchat
