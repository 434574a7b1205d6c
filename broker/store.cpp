#include "broker/store.h"

#include <chrono>
#include <mutex>
#include <unordered_map>

#include "broker/log.h"
#include "broker/partitioned_store.h"
#include "broker/pg_store.h"
#include "broker/sqlite_store.h"

namespace zchat {

bool IsPostgresSpec(std::string_view spec) {
  return spec.starts_with("postgresql://") || spec.starts_with("postgres://");
}

Result<std::unique_ptr<Store>> Store::Open(const std::string& spec,
                                           const StoreOptions& options) {
  if (IsPostgresSpec(spec)) {
    if (options.partitions > 1) {
      return Status(ErrorCode::kStorage,
                    "partitions are for SQLite databases; on PostgreSQL, run "
                    "several brokers (docs/scaling.md)");
    }
    Result<std::unique_ptr<PgStore>> pg = PgStore::Open(spec, options);
    if (!pg.ok()) return pg.status();
    return std::unique_ptr<Store>(std::move(*pg));
  }
  Result<std::unique_ptr<SqliteStore>> lite = SqliteStore::Open(spec, options);
  if (!lite.ok()) return lite.status();
  // One file, or the first of a partitioned database's.
  return PartitionedStore::Open(std::move(*lite), spec, options);
}

void LogDroppedNotices(int64_t account_id, int64_t cap, int64_t dropped) {
  if (dropped <= 0) return;
  // A sender that never acknowledges drops one notice per receipt of its
  // messages: a line each would be a line per message. The first drop of an
  // account is logged at once; later ones are counted into the account's next
  // warning, at most one every 10 s.
  constexpr auto kWindow = std::chrono::seconds(10);
  struct Pending {
    std::chrono::steady_clock::time_point logged;
    int64_t unlogged = 0;
  };
  static std::mutex mu;  // brokers in one process (tests) share it
  static std::unordered_map<int64_t, Pending> accounts;
  const auto now = std::chrono::steady_clock::now();
  std::string line;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (accounts.size() > 4096) {
      std::erase_if(accounts, [&](const auto& e) {
        return now - e.second.logged > kWindow && e.second.unlogged == 0;
      });
    }
    auto [it, first] = accounts.try_emplace(account_id);
    Pending& p = it->second;
    p.unlogged += dropped;
    if (!first && now - p.logged < kWindow) return;
    line = "account " + std::to_string(account_id) + " has " +
           std::to_string(cap) +
           " unacknowledged notices; dropped the oldest " +
           std::to_string(p.unlogged) +
           (first ? " (later drops for it are counted into its next warning, "
                    "at most one every 10 s)"
                  : " since the last warning");
    p.logged = now;
    p.unlogged = 0;
  }
  Log(LogLevel::kWarn, line);
}

namespace {

// FindSend, then (no prior send) the recipient, which `set_recipient`
// puts in place (nullopt: no such account), then (it exists) CountPending:
// CheckSend and CheckSendTo differ only in how they know the recipient.
template <class SetRecipient>
Result<SendCheck> CheckWith(Store& store, int64_t sender_id,
                            uint64_t client_msg_id,
                            SetRecipient set_recipient) {
  SendCheck check;
  Result<std::optional<int64_t>> prior =
      store.FindSend(sender_id, client_msg_id);
  if (!prior.ok()) return prior.status();
  check.prior = *prior;
  if (check.prior) return check;
  if (Status s = set_recipient(check.recipient); !s.ok()) return s;
  if (!check.recipient) return check;
  Result<int64_t> queued = store.CountPending(check.recipient->id);
  if (!queued.ok()) return queued.status();
  check.queued = *queued;
  return check;
}

}  // namespace

Result<std::optional<int64_t>> Store::FindAccountId(std::string_view key) {
  Result<std::optional<Account>> found = FindAccount(key);
  if (!found.ok()) return found.status();
  if (!found->has_value()) return std::optional<int64_t>();
  return std::optional<int64_t>((*found)->id);
}

Result<SendCheck> Store::CheckSend(int64_t sender_id, uint64_t client_msg_id,
                                   std::string_view recipient_key) {
  return CheckWith(
      *this, sender_id, client_msg_id, [&](std::optional<Account>& recipient) {
        Result<std::optional<Account>> found = FindAccount(recipient_key);
        if (!found.ok()) return found.status();
        recipient = std::move(*found);
        return Status::Ok();
      });
}

Result<SendCheck> Store::CheckSendTo(int64_t sender_id, uint64_t client_msg_id,
                                     std::string_view /*recipient_key*/,
                                     const Account& recipient) {
  return CheckWith(*this, sender_id, client_msg_id,
                   [&](std::optional<Account>& found) {
                     found.emplace(Account{recipient.id, recipient.name, {}});
                     return Status::Ok();
                   });
}

}  // namespace zchat
