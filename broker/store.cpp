#include "broker/store.h"

#include "broker/log.h"
#include "broker/pg_store.h"
#include "broker/sqlite_store.h"

namespace zchat {

bool IsPostgresSpec(std::string_view spec) {
  return spec.starts_with("postgresql://") || spec.starts_with("postgres://");
}

Result<std::unique_ptr<Store>> Store::Open(const std::string& spec,
                                           const StoreOptions& options) {
  if (IsPostgresSpec(spec)) {
    Result<std::unique_ptr<PgStore>> pg = PgStore::Open(spec, options);
    if (!pg.ok()) return pg.status();
    return std::unique_ptr<Store>(std::move(*pg));
  }
  Result<std::unique_ptr<SqliteStore>> lite = SqliteStore::Open(spec, options);
  if (!lite.ok()) return lite.status();
  return std::unique_ptr<Store>(std::move(*lite));
}

void LogDroppedNotices(int64_t account_id, int64_t cap, int64_t dropped) {
  if (dropped <= 0) return;
  Log(LogLevel::kWarn, "account " + std::to_string(account_id) + " has " +
                           std::to_string(cap) +
                           " unacknowledged notices; dropped the oldest " +
                           std::to_string(dropped));
}

Result<SendCheck> Store::CheckSend(int64_t sender_id, uint64_t client_msg_id,
                                   std::string_view recipient_key) {
  SendCheck check;
  Result<std::optional<int64_t>> prior = FindSend(sender_id, client_msg_id);
  if (!prior.ok()) return prior.status();
  check.prior = *prior;
  if (check.prior) return check;
  Result<std::optional<Account>> recipient = FindAccount(recipient_key);
  if (!recipient.ok()) return recipient.status();
  check.recipient = std::move(*recipient);
  if (!check.recipient) return check;
  Result<int64_t> queued = CountPending(check.recipient->id);
  if (!queued.ok()) return queued.status();
  check.queued = *queued;
  return check;
}

}  // namespace zchat
