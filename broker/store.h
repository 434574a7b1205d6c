// Store: the broker's durable state in SQLite (WAL). Accounts, the queue of
// undelivered messages, send dedup ids, stored notices for offline senders,
// and session token hashes. Not thread-safe: owned and used by the broker
// loop only. Writes happen inside a transaction that the caller opens with
// Begin() and ends with Commit() (group commit of a whole batch); outside
// one, reads work and writes are refused with kStorage.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "messages/status.h"

namespace zchat {

enum class SyncMode { kFull, kNormal };

struct StoreOptions {
  SyncMode sync = SyncMode::kNormal;  // see docs/semantics.md
  // SQLite's max_page_count, 0 = unlimited (tests use it to simulate a full
  // disk).
  int64_t max_pages = 0;
  // Open the database read-only (a read-only file system or file): reads
  // are served, every write is refused with kStorage.
  bool read_only = false;
};

struct Account {
  int64_t id = 0;
  std::string name;  // as registered
  std::string password_hash;
};

struct QueuedMessage {
  int64_t id = 0;
  int64_t sender_id = 0;
  std::string sender_name;
  int64_t recipient_id = 0;
  std::string recipient_name;
  uint64_t client_msg_id = 0;
  std::string body;
  int64_t sent_at_ms = 0;
};

enum class NoticeKind : int { kDelivered = 1, kUndeliverable = 2 };

// A MESSAGE_SUCCESS or MESSAGE_UNDELIVERABLE waiting for its (offline) sender.
struct Notice {
  NoticeKind kind = NoticeKind::kDelivered;
  int64_t message_id = 0;
  std::string peer_name;  // the recipient of the original message
  uint64_t client_msg_id = 0;
};

enum class ReceiptOutcome {
  kConfirmed,
  kAlreadyConfirmed,
  kNotYours,
  kUnknown
};

struct ReceiptResult {
  ReceiptOutcome outcome = ReceiptOutcome::kUnknown;
  QueuedMessage message;  // set when kConfirmed (body cleared)
};

class Store {
 public:
  static Result<std::unique_ptr<Store>> Open(const std::string& path,
                                             const StoreOptions& options);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  static constexpr int kSchemaVersion = 1;

  // Transactions. Commit failing (disk full) rolls everything back.
  Status Begin();
  Status Commit();
  void Rollback();
  bool InTransaction() const;

  // Rows changed since the database was opened: a request that leaves it
  // unchanged wrote nothing.
  int64_t TotalChanges() const;

  // Accounts. `key` is the case-folded username.
  Result<int64_t> CreateAccount(std::string_view name, std::string_view key,
                                std::string_view password_hash, int64_t now_ms);
  Result<std::optional<Account>> FindAccount(std::string_view key);
  Result<std::optional<Account>> FindAccountById(int64_t id);
  // Removes the account, its queue, notices and tokens. Returns the purged
  // messages (bodies cleared) so their senders can be told.
  Result<std::vector<QueuedMessage>> DeleteAccount(int64_t id);

  // Walks keys in order from max(`from`, just after `after`) while they start
  // with `prefix`; calls `visit(key, name)` for each until it returns false
  // or `max_rows` keys were examined. Returns the last key examined, or ""
  // when no key after it can be in range (the scan reached the end).
  Result<std::string> ScanAccounts(
      std::string_view prefix, std::string_view after, int64_t max_rows,
      const std::function<bool(std::string_view, std::string_view)>& visit);

  // Messages.
  Result<std::optional<int64_t>> FindSend(int64_t sender_id,
                                          uint64_t client_msg_id);
  Result<int64_t> Enqueue(const QueuedMessage& message);
  Result<int64_t> CountPending(int64_t recipient_id);
  Result<std::vector<QueuedMessage>> FetchPending(int64_t recipient_id,
                                                  int64_t limit);
  Result<ReceiptResult> ConfirmDelivery(int64_t recipient_id,
                                        int64_t message_id);

  // Notices for senders who were offline.
  Status AddNotice(int64_t account_id, const Notice& notice);
  Result<std::vector<Notice>> TakeNotices(int64_t account_id);

  // Session tokens, stored as hashes.
  Status AddToken(std::string_view token_hash, int64_t account_id,
                  int64_t now_ms);
  Result<std::optional<int64_t>> FindToken(std::string_view token_hash,
                                           int64_t not_before_ms);
  Status RevokeToken(std::string_view token_hash);

  // Housekeeping: drops dedup ids and tokens older than the cut-offs.
  Status Prune(int64_t sends_before_ms, int64_t tokens_before_ms);

 private:
  class Statement;
  explicit Store(sqlite3* db);
  Status Exec(const char* sql);
  Status RequireTransaction() const;
  Status Migrate();
  Statement& Prepare(const char* sql);
  // The single account row a prepared, bound statement selects, if any.
  Result<std::optional<Account>> ReadAccount(Statement& st);
  static QueuedMessage ReadQueued(const Statement& st, int64_t recipient_id,
                                  bool with_body);
  Status Error(std::string_view what) const;

  sqlite3* db_;
  // Prepared once per SQL text (string literals, keyed by address).
  std::unordered_map<const char*, std::unique_ptr<Statement>> statements_;
};

}  // namespace zchat
