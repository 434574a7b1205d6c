// NOTICE_RECEIPT: the sender has a MESSAGE_SUCCESS or MESSAGE_UNDELIVERABLE
// (or up to kMaxNoticeAcks of them, `message_ids`); the broker stops
// resending them. No reply when accepted; an unknown or already acknowledged
// notice is a no-op, so a repeated receipt is harmless.
#include <span>

#include "broker/handlers.h"

namespace zchat {

Verdict HandleNoticeReceipt(Context& ctx, Request& req, const Message& m) {
  const auto& receipt = std::get<NoticeReceipt>(m.body);
  const uint64_t one[] = {receipt.message_id};
  const std::span<const uint64_t> ids =
      receipt.message_ids.empty()
          ? std::span<const uint64_t>(one)
          : std::span<const uint64_t>(receipt.message_ids);
  for (uint64_t id : ids) {
    if (Status s = ctx.notices.Acknowledge(req.peer.account_id,
                                           static_cast<int64_t>(id));
        !s.ok()) {
      return s;
    }
  }
  return Verdict::Accepted();
}

}  // namespace zchat
