#include "broker/context.h"

#include "messages/codec.h"

namespace zchat {

Status NotifyOtherBrokers(Context& ctx, int64_t account_id,
                          const std::string& item) {
  if (!ctx.store.Shared()) return Status::Ok();
  Result<std::vector<std::string>> brokers =
      ctx.store.OtherBrokersOf(account_id, ctx.now_ms);
  if (!brokers.ok()) return brokers.status();
  for (const std::string& b : *brokers) ctx.store.Notify(b, item);
  return Status::Ok();
}

size_t PushToAccount(Context& ctx, Responder& out, int64_t account_id,
                     const Body& body) {
  std::vector<std::string> targets = ctx.sessions.SessionsOf(account_id);
  if (targets.empty()) return 0;
  const std::string frame = Encode(Message{0, body});
  for (const std::string& id : targets) out.PushFrame(id, frame);
  return targets.size();
}

}  // namespace zchat
