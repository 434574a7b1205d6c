// NOTICE_RECEIPT: the sender has a MESSAGE_SUCCESS or MESSAGE_UNDELIVERABLE;
// the broker stops resending it. No reply when accepted; an unknown or
// already acknowledged notice is a no-op, so a repeated receipt is harmless.
#include "broker/handlers.h"

namespace zchat {

Verdict HandleNoticeReceipt(Context& ctx, Request& req, const Message& m) {
  const auto& receipt = std::get<NoticeReceipt>(m.body);
  if (Status s = ctx.notices.Acknowledge(
          req.peer.account_id, static_cast<int64_t>(receipt.message_id));
      !s.ok()) {
    return s;
  }
  return Verdict::Accepted();
}

}  // namespace zchat
