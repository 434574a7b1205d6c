// LIST_ACCOUNTS: wildcard listing, paged, with a bounded scan per request.
#include "broker/handlers.h"
#include "broker/usernames.h"
#include "broker/wildcard.h"

namespace zchat {

Verdict HandleListAccounts(Context& ctx, Request& req, const Message& m) {
  const auto& list = std::get<ListAccounts>(m.body);
  const std::string pattern = UsernameKey(list.pattern.value_or("*"));
  const uint64_t limit = list.limit.value_or(kDefaultListLimit);
  // Keys are sorted; only those starting with the pattern's literal prefix
  // can match, so the scan starts there and stops past it.
  const std::string prefix = WildcardPrefix(pattern);
  AccountList page;
  Result<std::string> last =
      ctx.store.ScanAccounts(prefix, list.cursor.value_or(""), kListScanBudget,
                             [&](std::string_view key, std::string_view name) {
                               if (WildcardMatch(pattern, key))
                                 page.accounts.emplace_back(name);
                               return page.accounts.size() < limit;
                             });
  if (!last.ok()) return last.status();
  page.cursor = std::move(*last);
  req.Reply(std::move(page));
  return Verdict::Accepted();
}

}  // namespace zchat
