// LIST_ACCOUNTS: wildcard listing, paged, with a bounded scan per request.
#include "broker/broker_core.h"

namespace zchat {

Status BrokerCore::HandleListAccounts(Peer& peer, const Message& m) {
  const auto& req = std::get<ListAccounts>(m.body);
  const std::string pattern = UsernameKey(req.pattern.value_or("*"));
  const uint64_t limit = req.limit.value_or(kDefaultListLimit);
  // Keys are sorted; only those starting with the pattern's literal prefix
  // can match, so the scan starts there and stops past it.
  const std::string prefix = WildcardPrefix(pattern);
  AccountList page;
  Result<std::string> last =
      store_.ScanAccounts(prefix, req.cursor.value_or(""), kListScanBudget,
                          [&](std::string_view key, std::string_view name) {
                            if (WildcardMatch(pattern, key))
                              page.accounts.emplace_back(name);
                            return page.accounts.size() < limit;
                          });
  if (!last.ok()) return last.status();
  page.cursor = std::move(*last);
  Reply(peer, m.request_id, std::move(page));
  return Status::Ok();
}

}  // namespace zchat
