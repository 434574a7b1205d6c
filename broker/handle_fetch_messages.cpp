// FETCH_MESSAGES: pushes up to `limit` queued messages, oldest first, to the
// fetching session, then FETCH_RESULT with how many remain. Messages stay
// queued until confirmed.
#include <algorithm>

#include "broker/handlers.h"

namespace zchat {

Verdict HandleFetchMessages(Context& ctx, Request& req, const Message& m) {
  const auto& fetch = std::get<FetchMessages>(m.body);
  const int64_t account = req.peer.account_id;
  const auto limit = static_cast<int64_t>(fetch.limit.value_or(kMaxFetchLimit));
  Result<int64_t> total = ctx.store.CountPending(account);
  if (!total.ok()) return total.status();
  Result<std::vector<QueuedMessage>> batch =
      ctx.store.FetchPending(account, limit);
  if (!batch.ok()) return batch.status();
  for (QueuedMessage& q : *batch) {
    DistributeMessage d{static_cast<uint64_t>(q.id), std::move(q.sender_name),
                        std::move(q.body), static_cast<uint64_t>(q.sent_at_ms)};
    if (req.peer.batch_pushes) {
      // Gathered into as few frames as the frame limit allows (Batch).
      req.out.PushMessage(req.peer.routing_id, std::move(d));
    } else {
      req.out.Push(req.peer.routing_id, d);
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
