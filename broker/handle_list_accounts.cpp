// LIST_ACCOUNTS: wildcard listing, paged, with a bounded scan per request.
// Each request's own `limit` applies (absent: 100), page after page; the
// cursor is bound to the pattern (list_cursor.h).
#include "broker/handlers.h"
#include "broker/list_cursor.h"
#include "broker/usernames.h"
#include "broker/wildcard.h"

namespace zchat {

Verdict HandleListAccounts(Context& ctx, Request& req, const Message& m) {
  const auto& list = std::get<ListAccounts>(m.body);
  // Absent (or nil) is "*"; "" is a pattern like any other, matching only
  // the empty name, so no account.
  const std::string pattern = UsernameKey(list.pattern.value_or("*"));
  const uint64_t limit = list.limit.value_or(kDefaultListLimit);
  // An empty cursor is no cursor: the first page.
  std::string after;
  if (list.cursor && !list.cursor->empty()) {
    Result<std::string> position = DecodeListCursor(pattern, *list.cursor);
    if (!position.ok()) return position.status();
    after = std::move(*position);
  }
  AccountList page;
  if (pattern.empty()) {
    req.Reply(std::move(page));  // nothing can match: the end at once
    return Verdict::Accepted();
  }
  // Keys are sorted; only those starting with the pattern's literal prefix
  // can match, so the scan starts there and stops past it.
  const std::string prefix = WildcardPrefix(pattern);
  Result<std::string> last =
      ctx.store.ScanAccounts(prefix, after, kListScanBudget,
                             [&](std::string_view key, std::string_view name) {
                               if (WildcardMatch(pattern, key))
                                 page.accounts.emplace_back(name);
                               return page.accounts.size() < limit;
                             });
  if (!last.ok()) return last.status();
  if (!last->empty()) page.cursor = EncodeListCursor(pattern, *last);
  req.Reply(std::move(page));
  return Verdict::Accepted();
}

}  // namespace zchat
