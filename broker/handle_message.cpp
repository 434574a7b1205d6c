// Message workflows: send, fetch, receipt.
#include "broker/broker_core.h"

namespace zchat {

Status BrokerCore::HandleSendMessage(Peer& peer, const Message& m) {
  const auto& req = std::get<SendMessage>(m.body);
  if (req.body.size() > kMaxBodyBytes) {
    return Status(ErrorCode::kBodyTooLarge,
                  "body is " + std::to_string(req.body.size()) +
                      " bytes; the limit is " + std::to_string(kMaxBodyBytes));
  }
  // A retry of a send already accepted gets the same message id.
  Result<std::optional<int64_t>> prior =
      store_.FindSend(peer.account_id, req.client_msg_id);
  if (!prior.ok()) return prior.status();
  if (prior->has_value()) {
    Reply(peer, m.request_id,
          MessagePending{static_cast<uint64_t>(**prior), req.client_msg_id});
    return Status::Ok();
  }
  Result<std::optional<Account>> recipient =
      FindAccountCached(UsernameKey(req.recipient));
  if (!recipient.ok()) return recipient.status();
  if (!recipient->has_value()) {
    return Status(ErrorCode::kUnknownRecipient,
                  "no account named '" + req.recipient + "'");
  }
  const Account& to = **recipient;
  Result<int64_t> queued = QueueSize(to.id);
  if (!queued.ok()) return queued.status();
  if (*queued >= config_.max_queue_per_user) {
    return Status(ErrorCode::kQueueFull,
                  "'" + to.name + "' has " + std::to_string(*queued) +
                      " undelivered messages, the most allowed");
  }
  QueuedMessage q;
  q.sender_id = peer.account_id;
  q.sender_name = peer.username;
  q.recipient_id = to.id;
  q.recipient_name = to.name;
  q.client_msg_id = req.client_msg_id;
  q.body = req.body;
  q.sent_at_ms = Now();
  Result<int64_t> id = store_.Enqueue(q);
  if (!id.ok()) return id.status();
  AdjustQueueSize(to.id, +1);
  // Both leave only after the batch commits.
  Reply(peer, m.request_id,
        MessagePending{static_cast<uint64_t>(*id), req.client_msg_id});
  PushToAccount(to.id,
                DistributeMessage{static_cast<uint64_t>(*id), q.sender_name,
                                  q.body, static_cast<uint64_t>(q.sent_at_ms)});
  return Status::Ok();
}

Status BrokerCore::HandleFetchMessages(Peer& peer, const Message& m) {
  const auto& req = std::get<FetchMessages>(m.body);
  const int64_t limit =
      static_cast<int64_t>(req.limit.value_or(kMaxFetchLimit));
  Result<int64_t> total = QueueSize(peer.account_id);
  if (!total.ok()) return total.status();
  Result<std::vector<QueuedMessage>> batch =
      store_.FetchPending(peer.account_id, limit);
  if (!batch.ok()) return batch.status();
  for (const QueuedMessage& q : *batch) {
    Push(peer.routing_id,
         DistributeMessage{static_cast<uint64_t>(q.id), q.sender_name, q.body,
                           static_cast<uint64_t>(q.sent_at_ms)});
  }
  const auto count = static_cast<int64_t>(batch->size());
  Reply(
      peer, m.request_id,
      FetchResult{static_cast<uint64_t>(count),
                  static_cast<uint64_t>(std::max<int64_t>(0, *total - count))});
  return Status::Ok();
}

Status BrokerCore::HandleMessageReceipt(Peer& peer, const Message& m) {
  const auto& req = std::get<MessageReceipt>(m.body);
  Result<ReceiptResult> r = store_.ConfirmDelivery(
      peer.account_id, static_cast<int64_t>(req.message_id));
  if (!r.ok()) return r.status();
  switch (r->outcome) {
    case ReceiptOutcome::kAlreadyConfirmed:
      return Status::Ok();  // a repeated receipt is harmless
    case ReceiptOutcome::kNotYours:
      return Status(ErrorCode::kNotYours, "message " +
                                              std::to_string(req.message_id) +
                                              " is addressed to someone else");
    case ReceiptOutcome::kUnknown:
      return Status(ErrorCode::kUnknownMessage,
                    "no message " + std::to_string(req.message_id));
    case ReceiptOutcome::kConfirmed:
      break;
  }
  AdjustQueueSize(peer.account_id, -1);
  const QueuedMessage& q = r->message;
  // The sender hears of it now, or at its next login (unless it is gone).
  if (!sessions_.IsOnline(q.sender_id)) {
    Result<std::optional<Account>> sender = store_.FindAccountById(q.sender_id);
    if (!sender.ok()) return sender.status();
    if (!sender->has_value()) return Status::Ok();
  }
  return PushNotice(q.sender_id, Notice{NoticeKind::kDelivered, q.id,
                                        q.recipient_name, q.client_msg_id});
}

}  // namespace zchat
