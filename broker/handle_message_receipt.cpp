// MESSAGE_RECEIPT: the recipient confirms a message (or up to kMaxReceiptIds
// of them, `message_ids`); each leaves the queue and its sender is told
// (Notices, kept until acknowledged). No reply when every id is accepted.
#include <string>
#include <utility>
#include <vector>

#include "broker/handlers.h"

namespace zchat {
namespace {

// The notices a receipt produces, by sender, in the order of their first.
using NoticesBySender = std::vector<std::pair<int64_t, std::vector<Notice>>>;

// Confirms message `id` for the requesting recipient; its sender's notice is
// added to `notices`. A refusal (someone else's message, an id never handed
// out) writes nothing.
Verdict ConfirmOne(Context& ctx, Request& req, uint64_t id,
                   NoticesBySender& notices) {
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
  QueuedMessage& q = r->message;
  req.out.Count(MessageEvent::kConfirmed);
  std::vector<Notice>* of_sender = nullptr;
  for (auto& [sender, list] : notices) {
    if (sender == q.sender_id) of_sender = &list;
  }
  if (!of_sender) of_sender = &notices.emplace_back(q.sender_id, 0).second;
  of_sender->push_back(Notice{NoticeKind::kDelivered, q.id,
                              std::move(q.recipient_name), q.client_msg_id});
  return Verdict::Accepted();
}

// The senders hear of their confirmed messages now and until they
// acknowledge (unless they are gone): a sender's together, so that a
// session taking the batch form gets one MESSAGE_SUCCESS for them.
Verdict Tell(Context& ctx, Request& req, const NoticesBySender& notices) {
  for (const auto& [sender, list] : notices) {
    if (Status s = ctx.notices.Deliver(req.out, sender, list, ctx.now_ms);
        !s.ok()) {
      return s;
    }
  }
  return Verdict::Accepted();
}

}  // namespace

Verdict HandleMessageReceipt(Context& ctx, Request& req, const Message& m) {
  const auto& receipt = std::get<MessageReceipt>(m.body);
  NoticesBySender notices;
  if (receipt.message_ids.empty()) {
    Verdict v = ConfirmOne(ctx, req, receipt.message_id, notices);
    if (v.refused()) return v;
    return Tell(ctx, req, notices);
  }
  // Several: each as if sent alone. One the broker would refuse alone
  // changes nothing and is named in the one ERROR the request then gets
  // (`message_ids`, the code of the first); the others are confirmed all the
  // same, so the request stands whatever it answers.
  Error refused;
  std::string first_reason;
  for (uint64_t id : receipt.message_ids) {
    Verdict v = ConfirmOne(ctx, req, id, notices);
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
  if (Verdict v = Tell(ctx, req, notices); v.refused()) return v;
  if (!refused.message_ids.empty()) {
    refused.reason = std::to_string(refused.message_ids.size()) + " of " +
                     std::to_string(receipt.message_ids.size()) +
                     " messages not confirmed, the first: " + first_reason;
    req.out.Reply(std::move(refused));
  }
  return Verdict::Accepted();
}

}  // namespace zchat
