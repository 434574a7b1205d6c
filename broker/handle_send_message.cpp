// SEND_MESSAGE: stores the message for its recipient (a retry of an accepted
// send, same client_msg_id, gets the same message id and stores nothing),
// answers MESSAGE_PENDING and pushes it to the recipient's sessions. Both
// leave only after the batch commits. The batch form's messages are
// checked first, each as if sent alone in turn, and stored only if every
// one passes: a refusal of one refuses them all, before anything is
// written.
#include <algorithm>

#include "broker/handlers.h"
#include "broker/usernames.h"

namespace zchat {
namespace {

// "message 3 of 5: " (counted from 1) for a batch's refusals.
std::string Item(size_t i, size_t n) {
  return "message " + std::to_string(i + 1) + " of " + std::to_string(n) + ": ";
}

Verdict SendBatch(Context& ctx, Request& req, const SendMessage& send) {
  const Peer& peer = req.peer;
  const size_t n = send.client_msg_ids.size();
  for (size_t i = 0; i < n; ++i) {
    if (send.bodies[i].size() > kMaxBodyBytes) {
      return Status(
          ErrorCode::kBodyTooLarge,
          Item(i, n) + "body is " + std::to_string(send.bodies[i].size()) +
              " bytes; the limit is " + std::to_string(kMaxBodyBytes));
    }
  }
  {
    std::vector<uint64_t> ids = send.client_msg_ids;
    std::sort(ids.begin(), ids.end());
    auto twice = std::adjacent_find(ids.begin(), ids.end());
    if (twice != ids.end()) {
      return Status(ErrorCode::kInvalidArgument,
                    "client_msg_id " + std::to_string(*twice) +
                        " appears more than once in 'client_msg_ids'");
    }
  }
  const std::string key = UsernameKey(send.recipient);
  std::vector<SendCheck> checks;
  checks.reserve(n);
  size_t fresh = 0;  // messages not sent before (not retries)
  const Account* to = nullptr;
  for (size_t i = 0; i < n; ++i) {
    // The recipient, once found, is not looked up again.
    Result<SendCheck> check =
        to ? ctx.store.CheckSendTo(peer.account_id, send.client_msg_ids[i], key,
                                   *to)
           : ctx.store.CheckSend(peer.account_id, send.client_msg_ids[i], key);
    if (!check.ok()) return check.status();
    if (!check->prior) {
      if (!check->recipient) {
        return Status(ErrorCode::kUnknownRecipient,
                      "no account named '" + send.recipient + "'");
      }
      ++fresh;
    }
    checks.push_back(std::move(*check));
    if (checks.back().recipient) to = &*checks.back().recipient;
  }
  if (fresh > 0) {
    // The queue's length the last new message would find. A check counts
    // the new messages checked before it on some stores (a partitioned
    // one takes each one's place at once) and not on others, so each
    // check's count plus the new messages after it, the largest.
    int64_t longest = 0;
    size_t j = 0;
    for (const SendCheck& check : checks) {
      if (check.prior) continue;
      longest = std::max<int64_t>(
          longest, check.queued + static_cast<int64_t>(fresh - 1 - j++));
    }
    if (longest >= ctx.config.max_queue_per_user) {
      return Status(ErrorCode::kQueueFull,
                    "'" + to->name + "' would have " +
                        std::to_string(longest + 1) +
                        " undelivered messages with these " +
                        std::to_string(fresh) + "; the most allowed is " +
                        std::to_string(ctx.config.max_queue_per_user));
    }
  }
  MessagePending reply;
  reply.message_ids.reserve(n);
  reply.client_msg_ids = send.client_msg_ids;
  std::vector<QueuedMessage> stored;
  stored.reserve(fresh);
  const bool online = to && ctx.sessions.IsOnline(to->id);
  for (size_t i = 0; i < n; ++i) {
    SendCheck& check = checks[i];
    if (check.prior) {
      reply.message_ids.push_back(static_cast<uint64_t>(*check.prior));
      continue;
    }
    QueuedMessage& q = stored.emplace_back();
    q.id = check.reserved_id;
    q.sender_id = peer.account_id;
    q.sender_name = peer.username;
    q.recipient_id = to->id;
    q.recipient_name = to->name;
    q.client_msg_id = send.client_msg_ids[i];
    q.body = send.bodies[i];
    q.sent_at_ms = ctx.now_ms;
    q.recipient_online = online;
    Result<int64_t> id = ctx.store.Enqueue(q);
    if (!id.ok()) return id.status();
    q.id = *id;
    reply.message_ids.push_back(static_cast<uint64_t>(*id));
  }
  req.Reply(std::move(reply));
  for (QueuedMessage& q : stored) {
    const size_t pushed = PushMessageToAccount(
        ctx, req.out, q.recipient_id,
        DistributeMessage{static_cast<uint64_t>(q.id), q.sender_name,
                          std::move(q.body),
                          static_cast<uint64_t>(q.sent_at_ms)});
    if (ctx.store.Shared()) {
      NotifyOtherBrokers(ctx, q.recipient_id, "m " + std::to_string(q.id));
    }
    req.out.Count(MessageEvent::kAccepted);
    req.out.Count(pushed > 0 ? MessageEvent::kDeliveredLive
                             : MessageEvent::kQueued);
  }
  return Verdict::Accepted();
}

}  // namespace

Verdict HandleSendMessage(Context& ctx, Request& req, const Message& m) {
  const auto& send = std::get<SendMessage>(m.body);
  if (!send.client_msg_ids.empty()) return SendBatch(ctx, req, send);
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
