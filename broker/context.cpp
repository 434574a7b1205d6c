#include "broker/context.h"

#include "messages/codec.h"

namespace zchat {

void NotifyOtherBrokers(Context& ctx, int64_t account_id,
                        const std::string& item) {
  ctx.store.NotifyBrokersOf(account_id, item, ctx.now_ms);
}

size_t PushToAccount(Context& ctx, Responder& out, int64_t account_id,
                     const Body& body) {
  std::vector<std::string> targets = ctx.sessions.SessionsOf(account_id);
  if (targets.empty()) return 0;
  out.PushFrameTo(targets, Encode(0, body));
  return targets.size();
}

}  // namespace zchat
