// Store: the broker's durable state: accounts, the queue of undelivered
// messages, send dedup ids, sender notices kept until acknowledged, and
// session token hashes. Two implementations: SqliteStore (sqlite_store.h),
// one SQLite file, the embedded default; PgStore (pg_store.h), a PostgreSQL
// database that several brokers may share. Not thread-safe: owned and used
// by the broker loop only.
//
// Transactions. Writes happen inside a transaction that the caller opens with
// Begin() and ends with Commit() (group commit of a whole batch); outside
// one, reads work and writes are refused with kStorage. A transaction ends
// without its writes when the caller calls Rollback(), when Commit() fails,
// or when the database drops it by itself after a failed statement
// (InTransaction() turns false).
//
// Ids. Account and message ids are never handed out twice, whether or not
// the transaction that assigned them committed. ConfirmDelivery tells an id
// that was handed out (kAlreadyConfirmed once gone) from one never handed
// out (kUnknown).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "messages/status.h"

namespace zchat {

enum class SyncMode { kFull, kNormal };

struct StoreOptions {
  SyncMode sync = SyncMode::kFull;  // see docs/semantics.md
  // SQLite's max_page_count, 0 = unlimited (tests use it to simulate a full
  // disk).
  int64_t max_pages = 0;
  // Open the database read-only (a read-only file system or file): reads
  // are served, every write is refused with kStorage.
  bool read_only = false;
  // SQLite: the files a new database is spread over (partitioned_store.h);
  // 0 opens a database as it was created (a new one with one file). A
  // database's partitions cannot change: another number is refused.
  int partitions = 0;
  // SQLite: the page cache of each open database file, in KiB (PRAGMA
  // cache_size; 0 leaves SQLite's default, 2 MiB). It fills as pages are
  // read. SQLite's default holds too little of a deep queue: a drain
  // re-read its pages from the operating system (docs/performance.md,
  // section 19).
  int64_t cache_kib = 16 * 1024;
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
  // For Enqueue, a hint: the recipient has a session here, so its receipt
  // should come soon (SqliteStore logs such a message rather than inserting
  // a row it would delete moments later). Not stored.
  bool recipient_online = false;
};

enum class NoticeKind : int { kDelivered = 1, kUndeliverable = 2 };

// A MESSAGE_SUCCESS or MESSAGE_UNDELIVERABLE kept until its sender
// acknowledges it (NOTICE_RECEIPT).
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

// What a send needs to know before it is stored (Store::CheckSend).
struct SendCheck {
  // The message id of an earlier send with this client_msg_id (a retry).
  std::optional<int64_t> prior;
  // The recipient, when prior is unset (nullopt: no such account).
  std::optional<Account> recipient;
  int64_t queued = 0;  // the recipient's undelivered messages
  // An id reserved for this send (0: none), to pass to Enqueue.
  int64_t reserved_id = 0;
};

// A read that a request of the coming batch will make (Store::Prefetch).
struct Lookahead {
  enum class Kind { kSend, kReceipt };
  Kind kind = Kind::kSend;
  int64_t account_id = 0;     // the sender (kSend) or the recipient (kReceipt)
  uint64_t id = 0;            // client_msg_id (kSend) or message id (kReceipt)
  std::string recipient_key;  // kSend
};

// Whole-database totals (for the metrics endpoint).
struct StoreTotals {
  int64_t accounts = 0;
  int64_t queued_messages = 0;  // not yet confirmed by their recipient
  int64_t notices = 0;          // not yet acknowledged by their sender
};

// Whether `spec` names a PostgreSQL database (a postgresql:// or
// postgres:// URI) rather than an SQLite file.
bool IsPostgresSpec(std::string_view spec);

// AddNotice's warning when it dropped notices over the cap: at once for an
// account's first drop, then at most one every 10 s, counting the drops since
// the last.
void LogDroppedNotices(int64_t account_id, int64_t cap, int64_t dropped);

class Store {
 public:
  // Opens the store `spec` names: a PostgreSQL connection URI
  // (postgresql://... or postgres://...), else an SQLite database file.
  static Result<std::unique_ptr<Store>> Open(const std::string& spec,
                                             const StoreOptions& options);
  virtual ~Store() = default;
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Transactions (see the top of this file). Commit failing (disk full,
  // lost connection) rolls everything back.
  virtual Status Begin() = 0;
  virtual Status Commit() = 0;
  virtual void Rollback() = 0;
  virtual bool InTransaction() const = 0;

  // Whether Prefetch saves anything: a store that pays a round trip per read
  // (PgStore) wants to hear of the batch's reads before they are made.
  virtual bool WantsLookahead() const { return false; }
  // Announces the CheckSend and ConfirmDelivery calls (Lookahead) that the
  // next requests of the transaction will make, so that PgStore reads what
  // they need in one round trip. The calls then answer exactly as they
  // would have without it (corrected for the transaction's writes since);
  // a call that was not announced, or one after CreateAccount, DeleteAccount
  // or Prune, reads as usual. ConfirmDelivery's delete still runs in its
  // turn. Inside a transaction.
  virtual void Prefetch(const std::vector<Lookahead>& /*reads*/) {}

  // Counts writes since the database was opened: a request that leaves it
  // unchanged wrote nothing. (PgStore counts each write statement it sends,
  // whether or not it then changes a row.)
  virtual int64_t TotalChanges() const = 0;

  // Accounts. `key` is the case-folded username.
  virtual Result<int64_t> CreateAccount(std::string_view name,
                                        std::string_view key,
                                        std::string_view password_hash,
                                        int64_t now_ms) = 0;
  virtual Result<std::optional<Account>> FindAccount(std::string_view key) = 0;
  virtual Result<std::optional<Account>> FindAccountById(int64_t id) = 0;
  // FindAccount's id alone (nullopt: no such account). A store with a cache
  // of accounts answers it without copying the account's name and hash.
  virtual Result<std::optional<int64_t>> FindAccountId(std::string_view key);
  // Removes the account, its queue, notices and tokens. Returns the purged
  // messages (bodies cleared) so their senders can be told.
  virtual Result<std::vector<QueuedMessage>> DeleteAccount(int64_t id) = 0;

  // Walks keys in order from max(`from`, just after `after`) while they start
  // with `prefix`; calls `visit(key, name)` for each until it returns false
  // or `max_rows` keys were examined. Returns the last key examined, or ""
  // when no key after it can be in range (the scan reached the end).
  virtual Result<std::string> ScanAccounts(
      std::string_view prefix, std::string_view after, int64_t max_rows,
      const std::function<bool(std::string_view, std::string_view)>& visit) = 0;

  // Messages.
  virtual Result<std::optional<int64_t>> FindSend(int64_t sender_id,
                                                  uint64_t client_msg_id) = 0;
  // FindSend, then (no prior send) FindAccount(recipient_key), then (it
  // exists) CountPending, all at once: one round trip for PgStore, which
  // also reserves the new message's id.
  virtual Result<SendCheck> CheckSend(int64_t sender_id, uint64_t client_msg_id,
                                      std::string_view recipient_key);
  // CheckSend where `recipient` is the account an earlier CheckSend of the
  // same request found for `recipient_key`: not looked up again (nor its
  // password hash copied again: the result's `recipient` has the id and
  // name). SEND_MESSAGE's batch form checks its later messages so.
  virtual Result<SendCheck> CheckSendTo(int64_t sender_id,
                                        uint64_t client_msg_id,
                                        std::string_view recipient_key,
                                        const Account& recipient);
  // Stores `message` under message.id when it is an id CheckSend reserved,
  // else under a new id. Returns the id. The caller checked with FindSend
  // or CheckSend that the send is new; should another broker store the same
  // send meanwhile, the commit fails (and the retry finds the other's).
  virtual Result<int64_t> Enqueue(const QueuedMessage& message) = 0;
  virtual Result<int64_t> CountPending(int64_t recipient_id) = 0;
  virtual Result<std::vector<QueuedMessage>> FetchPending(int64_t recipient_id,
                                                          int64_t limit) = 0;
  virtual Result<ReceiptResult> ConfirmDelivery(int64_t recipient_id,
                                                int64_t message_id) = 0;

  // Sender notices, kept until the sender acknowledges them. AddNotice
  // stores one (a second notice for the same message is ignored) and, if the
  // account then holds more than `cap`, deletes the notices of its oldest
  // messages down to `cap` (and logs a warning). ListNotices reads the
  // oldest `limit` (ascending message id). AckNotice removes one if it is
  // there. Neither write waits for an answer from the database: a failure
  // shows at the latest when the transaction commits.
  virtual Status AddNotice(int64_t account_id, const Notice& notice,
                           int64_t cap) = 0;
  virtual Result<int64_t> CountNotices(int64_t account_id) = 0;
  virtual Result<std::vector<Notice>> ListNotices(int64_t account_id,
                                                  int64_t limit) = 0;
  virtual Status AckNotice(int64_t account_id, int64_t message_id) = 0;

  // Session tokens, stored as hashes.
  virtual Status AddToken(std::string_view token_hash, int64_t account_id,
                          int64_t now_ms) = 0;
  virtual Result<std::optional<int64_t>> FindToken(std::string_view token_hash,
                                                   int64_t not_before_ms) = 0;
  virtual Status RevokeToken(std::string_view token_hash) = 0;

  // Counts every table's rows: a scan, meant for a second, read-only store
  // (the metrics server's), which sees what is committed.
  virtual Result<StoreTotals> Totals() = 0;

  // Housekeeping: drops dedup ids and tokens older than the cut-offs.
  virtual Status Prune(int64_t sends_before_ms, int64_t tokens_before_ms) = 0;

  // --- Several brokers on one store (PgStore). A store of one broker
  // (SqliteStore) has no other brokers: these do nothing. ---

  // Whether other brokers may share this store.
  virtual bool Shared() const { return false; }
  // Registers this broker with a lease until now + lease_ms, renews it, and
  // forgets brokers whose lease ran out (with the sessions they held).
  // Inside a transaction.
  virtual Status RenewLease(int64_t /*now_ms*/, int64_t /*lease_ms*/) {
    return Status::Ok();
  }
  // This broker holds (or no longer holds) sessions of `account_id`.
  virtual Status SetPresence(int64_t /*account_id*/, bool /*present*/) {
    return Status::Ok();
  }
  // A login of `account_id` starts: its presence, set before the login
  // reads the account's pending messages and notices, so that whatever
  // another broker commits for the account at the same moment is either
  // read by those reads or notified to this broker. It may lock rows that
  // other brokers' commits lock: the login runs in a transaction of its own
  // (RequestInfo::alone), which holds no other lock.
  virtual Status BeginSession(int64_t /*account_id*/) { return Status::Ok(); }
  // Several logins, of the accounts named by these keys (unknown names are
  // skipped), will run in one transaction (Batch::BeginGroup): takes the
  // rows their BeginSession calls take, for all of them at once, in the
  // order commits take them, so that the transaction then waits for no
  // other row.
  virtual Status PrepareSessions(const std::vector<std::string>& /*keys*/) {
    return Status::Ok();
  }
  // Queues `item` for the other brokers that hold sessions of `account_id`
  // with a live lease (as of `now_ms`): resolved and sent when the
  // transaction commits, one notification per broker (nothing if it does
  // not commit).
  virtual void NotifyBrokersOf(int64_t /*account_id*/,
                               const std::string& /*item*/,
                               int64_t /*now_ms*/) {}
  // A descriptor that turns readable when notifications arrive (-1: none),
  // and the items received since the last call.
  virtual int NotificationFd() const { return -1; }
  virtual std::vector<std::string> TakeNotifications() { return {}; }
  // Whether notifications were already read off the descriptor (while the
  // store waited for a statement's result) and wait to be taken: the
  // descriptor will not turn readable for them.
  virtual bool HasNotifications() { return false; }
  // The messages of `ids` still queued (not confirmed, purged or never
  // there), in id order: one read for a notification's messages.
  virtual Result<std::vector<QueuedMessage>> FindMessages(
      const std::vector<int64_t>& /*ids*/) {
    return std::vector<QueuedMessage>();
  }

 protected:
  Store() = default;
};

}  // namespace zchat
