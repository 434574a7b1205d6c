// FETCH_MESSAGES: pushes up to `limit` queued messages, oldest first, to the
// fetching session, then FETCH_RESULT with how many remain. Messages stay
// queued until confirmed.
#include <algorithm>
#include <vector>

#include "broker/handlers.h"

namespace zchat {
namespace {

// Text a batch-form DISTRIBUTE_MESSAGE carries at most, besides its first
// message: half the frame limit, whatever the bodies' sizes.
constexpr size_t kBatchTextBytes = kMaxFrameBytes / 2;

// The fetched messages to a session that logged in with batch_pushes: as
// few DISTRIBUTE_MESSAGE frames as the frame limit allows, in order; a
// frame of one message takes the single form.
void PushInBatches(Request& req, std::vector<QueuedMessage>& messages) {
  size_t i = 0;
  while (i < messages.size()) {
    size_t end = i + 1;
    size_t text = messages[i].sender_name.size() + messages[i].body.size();
    while (end < messages.size()) {
      const size_t more =
          messages[end].sender_name.size() + messages[end].body.size();
      if (text + more > kBatchTextBytes) break;
      text += more;
      ++end;
    }
    if (end - i == 1) {
      QueuedMessage& q = messages[i];
      req.out.Push(req.peer.routing_id,
                   DistributeMessage{
                       static_cast<uint64_t>(q.id), std::move(q.sender_name),
                       std::move(q.body), static_cast<uint64_t>(q.sent_at_ms)});
    } else {
      DistributeMessage d;
      d.message_ids.reserve(end - i);
      d.senders.reserve(end - i);
      d.bodies.reserve(end - i);
      d.sent_ats_ms.reserve(end - i);
      for (size_t k = i; k < end; ++k) {
        QueuedMessage& q = messages[k];
        d.message_ids.push_back(static_cast<uint64_t>(q.id));
        d.senders.push_back(std::move(q.sender_name));
        d.bodies.push_back(std::move(q.body));
        d.sent_ats_ms.push_back(static_cast<uint64_t>(q.sent_at_ms));
      }
      req.out.Push(req.peer.routing_id, d);
    }
    i = end;
  }
}

}  // namespace

Verdict HandleFetchMessages(Context& ctx, Request& req, const Message& m) {
  const auto& fetch = std::get<FetchMessages>(m.body);
  const int64_t account = req.peer.account_id;
  const auto limit = static_cast<int64_t>(fetch.limit.value_or(kMaxFetchLimit));
  Result<int64_t> total = ctx.store.CountPending(account);
  if (!total.ok()) return total.status();
  Result<std::vector<QueuedMessage>> batch =
      ctx.store.FetchPending(account, limit);
  if (!batch.ok()) return batch.status();
  if (req.peer.batch_pushes) {
    PushInBatches(req, *batch);
  } else {
    for (QueuedMessage& q : *batch) {
      req.out.Push(req.peer.routing_id,
                   DistributeMessage{
                       static_cast<uint64_t>(q.id), std::move(q.sender_name),
                       std::move(q.body), static_cast<uint64_t>(q.sent_at_ms)});
    }
  }
  const auto count = static_cast<int64_t>(batch->size());
  req.out.Count(MessageEvent::kFetched, static_cast<uint32_t>(count));
  req.Reply(
      FetchResult{static_cast<uint64_t>(count),
                  static_cast<uint64_t>(std::max<int64_t>(0, *total - count))});
  return Verdict::Accepted();
}

}  // namespace zchat
