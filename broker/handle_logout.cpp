// LOGOUT: revokes the session's token and ends the session.
#include "broker/handlers.h"
#include "broker/log.h"

namespace zchat {

Verdict HandleLogout(Context& ctx, Request& req, const Message&) {
  if (!req.peer.token_hash.empty()) {
    if (Status s = ctx.store.RevokeToken(req.peer.token_hash); !s.ok()) {
      return s;
    }
  }
  Log(LogLevel::kInfo, "logout: " + req.peer.username);
  ChangeSession(ctx, req.out, req.peer, [&] { ctx.sessions.Logout(req.peer); });
  req.Reply(LogoutSuccess{});
  return Verdict::Accepted();
}

}  // namespace zchat
