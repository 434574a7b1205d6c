#include "broker/context.h"

#include "messages/codec.h"

namespace zchat {

void NotifyOtherBrokers(Context& ctx, int64_t account_id,
                        const std::string& item) {
  ctx.store.NotifyBrokersOf(account_id, item, ctx.now_ms);
}

size_t PushMessageToAccount(Context& ctx, Responder& out, int64_t account_id,
                            DistributeMessage message) {
  // Kept from call to call, their buffers reused (a thread's own: the
  // partitions' loops push on theirs).
  thread_local std::vector<std::string> each, batched;
  each.clear();
  batched.clear();
  ctx.sessions.SessionsOf(account_id, &each, &batched);
  if (!each.empty()) out.PushFrameTo(each, Encode(0, message));
  if (!batched.empty()) out.PushMessageTo(batched, std::move(message));
  return each.size() + batched.size();
}

}  // namespace zchat
