// MESSAGE_RECEIPT: the recipient confirms a message (or up to kMaxReceiptIds
// of them, `message_ids`); each leaves the queue and its sender is told
// (Notices, kept until acknowledged). No reply when every id is accepted.
#include <string>

#include "broker/handlers.h"

namespace zchat {
namespace {

// Confirms message `id` for the requesting recipient. A refusal (someone
// else's message, an id never handed out) writes nothing.
Verdict ConfirmOne(Context& ctx, Request& req, uint64_t id) {
  Result<ReceiptResult> r =
      ctx.store.ConfirmDelivery(req.peer.account_id, static_cast<int64_t>(id));
  if (!r.ok()) return r.status();
  switch (r->outcome) {
    case ReceiptOutcome::kAlreadyConfirmed:
      return Verdict::Accepted();  // a repeated receipt is harmless
    case ReceiptOutcome::kNotYours:
      return Status(ErrorCode::kNotYours, "message " + std::to_string(id) +
                                              " is addressed to someone else");
    case ReceiptOutcome::kUnknown:
      return Status(ErrorCode::kUnknownMessage,
                    "no message " + std::to_string(id));
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

}  // namespace

Verdict HandleMessageReceipt(Context& ctx, Request& req, const Message& m) {
  const auto& receipt = std::get<MessageReceipt>(m.body);
  if (receipt.message_ids.empty()) {
    return ConfirmOne(ctx, req, receipt.message_id);
  }
  // Several: each as if sent alone. One the broker would refuse alone
  // changes nothing and is named in the one ERROR the request then gets
  // (`message_ids`, the code of the first); the others are confirmed all the
  // same, so the request stands whatever it answers.
  Error refused;
  std::string first_reason;
  for (uint64_t id : receipt.message_ids) {
    Verdict v = ConfirmOne(ctx, req, id);
    if (!v.refused()) continue;
    const ErrorCode code = v.status().code();
    if (code != ErrorCode::kNotYours && code != ErrorCode::kUnknownMessage) {
      return v;  // the store's failure: the batch's
    }
    if (refused.message_ids.empty()) {
      refused.code = code;
      first_reason = v.status().detail();
    }
    refused.message_ids.push_back(id);
  }
  if (!refused.message_ids.empty()) {
    refused.reason = std::to_string(refused.message_ids.size()) + " of " +
                     std::to_string(receipt.message_ids.size()) +
                     " messages not confirmed, the first: " + first_reason;
    req.out.Reply(std::move(refused));
  }
  return Verdict::Accepted();
}

}  // namespace zchat
