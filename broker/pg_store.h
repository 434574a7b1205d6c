// PgStore: the Store in a PostgreSQL database (libpq), which several
// brokers may share. See store.h for the contract; what is particular here:
//
//   - No caches: another broker may change any row at any time, so every
//     read goes to the database (inside the batch's transaction, READ
//     COMMITTED).
//   - Ids come from sequences (BIGSERIAL), which never hand out a value
//     twice, even to transactions that roll back.
//   - A failed statement aborts the whole transaction in PostgreSQL, so
//     expected conflicts are written so as not to fail: a taken name is an
//     INSERT ... ON CONFLICT DO NOTHING that inserts nothing. After a real
//     failure InTransaction() is false (the batch fails, as with SQLite).
//   - A lost connection is re-established at the next Begin(); until then,
//     and while the server is down, writes are refused with kStorage.
//   - Migrations run under an advisory lock, so brokers starting together
//     migrate once.
//   - StoreOptions: `sync` normal sets synchronous_commit off (a server crash
//     may lose the last commits); `read_only` makes every transaction read
//     only; `max_pages` does not apply.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "broker/store.h"

struct pg_conn;
struct pg_result;

namespace zchat {

class PgStore final : public Store {
 public:
  static constexpr int kSchemaVersion = 2;

  // `uri`: a libpq connection URI (postgresql://user@host:port/db, or with
  // ?host=/socket/dir for a Unix socket).
  static Result<std::unique_ptr<PgStore>> Open(const std::string& uri,
                                               const StoreOptions& options);
  ~PgStore() override;

  Status Begin() override;
  Status Commit() override;
  void Rollback() override;
  bool InTransaction() const override;
  int64_t TotalChanges() const override { return changes_; }

  Result<int64_t> CreateAccount(std::string_view name, std::string_view key,
                                std::string_view password_hash,
                                int64_t now_ms) override;
  Result<std::optional<Account>> FindAccount(std::string_view key) override;
  Result<std::optional<Account>> FindAccountById(int64_t id) override;
  Result<std::vector<QueuedMessage>> DeleteAccount(int64_t id) override;
  Result<std::string> ScanAccounts(
      std::string_view prefix, std::string_view after, int64_t max_rows,
      const std::function<bool(std::string_view, std::string_view)>& visit)
      override;

  Result<std::optional<int64_t>> FindSend(int64_t sender_id,
                                          uint64_t client_msg_id) override;
  Result<int64_t> Enqueue(const QueuedMessage& message) override;
  Result<int64_t> CountPending(int64_t recipient_id) override;
  Result<std::vector<QueuedMessage>> FetchPending(int64_t recipient_id,
                                                  int64_t limit) override;
  Result<ReceiptResult> ConfirmDelivery(int64_t recipient_id,
                                        int64_t message_id) override;

  Result<int64_t> AddNotice(int64_t account_id, const Notice& notice,
                            int64_t cap) override;
  Result<int64_t> CountNotices(int64_t account_id) override;
  Result<std::vector<Notice>> ListNotices(int64_t account_id,
                                          int64_t limit) override;
  Result<bool> AckNotice(int64_t account_id, int64_t message_id) override;

  Status AddToken(std::string_view token_hash, int64_t account_id,
                  int64_t now_ms) override;
  Result<std::optional<int64_t>> FindToken(std::string_view token_hash,
                                           int64_t not_before_ms) override;
  Status RevokeToken(std::string_view token_hash) override;

  Result<StoreTotals> Totals() override;
  Status Prune(int64_t sends_before_ms, int64_t tokens_before_ms) override;

  // A read-only store serves reads and takes no part in presence.
  bool Shared() const override { return !options_.read_only; }
  Status RenewLease(int64_t now_ms, int64_t lease_ms) override;
  Status SetPresence(int64_t account_id, bool present) override;
  Result<std::vector<std::string>> OtherBrokersOf(int64_t account_id,
                                                  int64_t now_ms) override;
  void Notify(const std::string& to, const std::string& item) override;
  int NotificationFd() const override;
  std::vector<std::string> TakeNotifications() override;
  Result<std::optional<QueuedMessage>> FindMessage(int64_t id) override;
  // This broker's id among the brokers of the store (random, per process).
  const std::string& broker_id() const { return broker_id_; }

  // One statement parameter, in libpq's text format (bytea in binary).
  struct Param {
    std::string value;
    bool binary = false;
  };

 private:
  struct ClearResult {
    void operator()(pg_result* r) const;
  };
  using ResultPtr = std::unique_ptr<pg_result, ClearResult>;

  PgStore(pg_conn* conn, const StoreOptions& options);
  // Runs `sql` (a string literal, prepared once per connection) with
  // `params`; a failure is kStorage naming `what` and the server's message.
  // Counts the rows an INSERT, UPDATE or DELETE changed.
  Result<ResultPtr> Run(const char* what, const char* sql,
                        const std::vector<Param>& params);
  Status RequireTransaction();
  Status Error(std::string_view what) const;
  // Sets the session up after a connect: settings, then the schema.
  Status Setup();
  Status Migrate();
  // Sends outgoing_ (pg_notify, inside the transaction: delivered when it
  // commits) and empties it.
  Status SendNotifications();
  void CollectNotifications();

  pg_conn* conn_;
  const StoreOptions options_;
  std::unordered_map<const char*, std::string> prepared_;  // sql -> name
  int64_t changes_ = 0;
  const std::string broker_id_;
  // Items for other brokers, sent at commit: broker id -> items.
  std::unordered_map<std::string, std::vector<std::string>> outgoing_;
  std::vector<std::string> incoming_;
};

}  // namespace zchat
