// NOTICE_RECEIPT: the sender has a MESSAGE_SUCCESS or MESSAGE_UNDELIVERABLE
// (or up to kMaxReceiptIds of them, `message_ids`); the broker stops
// resending them. No reply when accepted; an unknown or already acknowledged
// notice is a no-op, so a repeated receipt is harmless.
#include "broker/handlers.h"

namespace zchat {

Verdict HandleNoticeReceipt(Context& ctx, Request& req, const Message& m) {
  for (uint64_t id : ReceiptIds(std::get<NoticeReceipt>(m.body))) {
    if (Status s = ctx.notices.Acknowledge(req.peer.account_id,
                                           static_cast<int64_t>(id));
        !s.ok()) {
      return s;
    }
  }
  return Verdict::Accepted();
}

}  // namespace zchat
