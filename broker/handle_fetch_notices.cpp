// FETCH_NOTICES: pushes up to `limit` unacknowledged notices, oldest message
// first, to the fetching session, then FETCH_RESULT with how many remain.
// Notices stay stored until acknowledged.
#include "broker/handlers.h"

namespace zchat {

Verdict HandleFetchNotices(Context& ctx, Request& req, const Message& m) {
  const auto& fetch = std::get<FetchNotices>(m.body);
  const auto limit = static_cast<int64_t>(fetch.limit.value_or(kMaxFetchLimit));
  Result<Notices::Resent> resent = ctx.notices.Resend(
      req.out, req.peer.routing_id, req.peer.account_id, limit);
  if (!resent.ok()) return resent.status();
  req.Reply(FetchResult{static_cast<uint64_t>(resent->count),
                        static_cast<uint64_t>(resent->remaining)});
  return Verdict::Accepted();
}

}  // namespace zchat
