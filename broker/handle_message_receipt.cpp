// MESSAGE_RECEIPT: the recipient confirms a message; it leaves the queue and
// its sender is told (Notices, kept until acknowledged). No reply when
// accepted.
#include "broker/handlers.h"

namespace zchat {

Verdict HandleMessageReceipt(Context& ctx, Request& req, const Message& m) {
  const auto& receipt = std::get<MessageReceipt>(m.body);
  Result<ReceiptResult> r = ctx.store.ConfirmDelivery(
      req.peer.account_id, static_cast<int64_t>(receipt.message_id));
  if (!r.ok()) return r.status();
  switch (r->outcome) {
    case ReceiptOutcome::kAlreadyConfirmed:
      return Verdict::Accepted();  // a repeated receipt is harmless
    case ReceiptOutcome::kNotYours:
      return Status(ErrorCode::kNotYours,
                    "message " + std::to_string(receipt.message_id) +
                        " is addressed to someone else");
    case ReceiptOutcome::kUnknown:
      return Status(ErrorCode::kUnknownMessage,
                    "no message " + std::to_string(receipt.message_id));
    case ReceiptOutcome::kConfirmed:
      break;
  }
  const QueuedMessage& q = r->message;
  req.out.Count(MessageEvent::kConfirmed);
  // The sender hears of it now and until it acknowledges (unless it is gone).
  return ctx.notices.Deliver(
      req.out, q.sender_id,
      Notice{NoticeKind::kDelivered, q.id, q.recipient_name, q.client_msg_id},
      ctx.now_ms);
}

}  // namespace zchat
