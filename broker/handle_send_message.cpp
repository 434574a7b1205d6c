// SEND_MESSAGE: stores the message for its recipient (a retry of an accepted
// send, same client_msg_id, gets the same message id and stores nothing),
// answers MESSAGE_PENDING and pushes it to the recipient's sessions. Both
// leave only after the batch commits.
#include "broker/handlers.h"
#include "broker/usernames.h"

namespace zchat {

Verdict HandleSendMessage(Context& ctx, Request& req, const Message& m) {
  const auto& send = std::get<SendMessage>(m.body);
  const Peer& peer = req.peer;
  if (send.body.size() > kMaxBodyBytes) {
    return Status(ErrorCode::kBodyTooLarge,
                  "body is " + std::to_string(send.body.size()) +
                      " bytes; the limit is " + std::to_string(kMaxBodyBytes));
  }
  Result<SendCheck> check = ctx.store.CheckSend(
      peer.account_id, send.client_msg_id, UsernameKey(send.recipient));
  if (!check.ok()) return check.status();
  if (check->prior) {
    req.Reply(MessagePending{static_cast<uint64_t>(*check->prior),
                             send.client_msg_id});
    return Verdict::Accepted();
  }
  if (!check->recipient) {
    return Status(ErrorCode::kUnknownRecipient,
                  "no account named '" + send.recipient + "'");
  }
  const Account& to = *check->recipient;
  if (check->queued >= ctx.config.max_queue_per_user) {
    return Status(ErrorCode::kQueueFull,
                  "'" + to.name + "' has " + std::to_string(check->queued) +
                      " undelivered messages, the most allowed");
  }
  QueuedMessage q;
  q.id = check->reserved_id;
  q.sender_id = peer.account_id;
  q.sender_name = peer.username;
  q.recipient_id = to.id;
  q.recipient_name = to.name;
  q.client_msg_id = send.client_msg_id;
  q.body = send.body;
  q.sent_at_ms = ctx.now_ms;
  q.recipient_online = ctx.sessions.IsOnline(to.id);
  Result<int64_t> id = ctx.store.Enqueue(q);
  if (!id.ok()) return id.status();
  req.Reply(MessagePending{static_cast<uint64_t>(*id), send.client_msg_id});
  const size_t pushed = PushMessageToAccount(
      ctx, req.out, to.id,
      DistributeMessage{static_cast<uint64_t>(*id), q.sender_name,
                        std::move(q.body),
                        static_cast<uint64_t>(q.sent_at_ms)});
  if (ctx.store.Shared()) {
    NotifyOtherBrokers(ctx, to.id, "m " + std::to_string(*id));
  }
  req.out.Count(MessageEvent::kAccepted);
  req.out.Count(pushed > 0 ? MessageEvent::kDeliveredLive
                           : MessageEvent::kQueued);
  return Verdict::Accepted();
}

}  // namespace zchat
