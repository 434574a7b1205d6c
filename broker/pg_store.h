// PgStore: the Store in a PostgreSQL database (libpq), which several
// brokers may share. See store.h for the contract; what is particular here:
//
//   - No caches across transactions: another broker may change any row at
//     any time, so reads go to the database (inside the batch's
//     transaction, READ COMMITTED). Within one, what was read ahead and
//     what the transaction wrote are remembered (below).
//   - Counts are rows, not count(*)s: queue_lengths (a recipient's queue,
//     for queue_full) and notice_counts (for the notice cap), changed at
//     commit, all notice_counts rows by account, then all queue_lengths rows
//     by account, so that brokers committing at once wait for each other
//     instead of deadlocking. Notice writes and a deleted account's counter
//     rows wait for the commit for the same reason. What takes those rows
//     earlier runs in a transaction of its own (RequestInfo::alone): a
//     login's BeginSession, and a read of an account's notices, which sends
//     the transaction's notice writes for it first.
//   - Ids come from sequences (BIGSERIAL), which never hand out a value
//     twice, even to transactions that roll back.
//   - A transaction runs in libpq's pipeline mode: a write whose answer the
//     broker does not need (enqueue with a reserved id, notices, tokens,
//     presence, leases) is sent without waiting, and its result is read with
//     the next read's or at COMMIT. So a round trip is a read the handler
//     needs plus one for the commit, with every write since. The reads of
//     SEND_MESSAGE (CheckSend) and MESSAGE_RECEIPT (ConfirmDelivery) are
//     announced for the whole batch (Prefetch) and made in one round trip;
//     the answers are then corrected for the writes the transaction made
//     since (its own sends, confirmations, queue lengths). A receipt's read
//     ahead locks the message's row (in message id order), so its DELETE,
//     which runs in its turn, finds it; another broker's session confirming
//     the same message at once waits at its read, then finds it gone
//     (already confirmed). A DELETE that still finds no row (a receipt not
//     read ahead) fails the commit.
//   - A failed statement aborts the whole transaction in PostgreSQL, so
//     expected conflicts are written so as not to fail: a taken name is an
//     INSERT ... ON CONFLICT DO NOTHING that inserts nothing. After a real
//     failure InTransaction() is false (the batch fails, as with SQLite); a
//     deferred write's failure shows at the next read or at Commit().
//   - Notifications to other brokers are addressed by account: at commit one
//     statement looks up which live brokers hold sessions of those accounts
//     and sends each broker one pg_notify with all its items.
//   - A lost connection is replaced at the next Begin(); until then,
//     and while the server is down, writes are refused with kStorage.
//   - Migrations run under an advisory lock, so brokers starting together
//     migrate once.
//   - StoreOptions: `sync` normal sets synchronous_commit off (a server crash
//     may lose the last commits); `read_only` makes every transaction read
//     only; `max_pages` does not apply.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "broker/store.h"

struct pg_conn;
struct pg_result;

namespace zchat {

class PgStore final : public Store {
 public:
  static constexpr int kSchemaVersion = 3;

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
  bool WantsLookahead() const override { return true; }
  void Prefetch(const std::vector<Lookahead>& reads) override;

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
  Result<SendCheck> CheckSend(int64_t sender_id, uint64_t client_msg_id,
                              std::string_view recipient_key) override;
  // CheckSend itself: its one round trip (or prefetched answer) also
  // reserves the message's id.
  Result<SendCheck> CheckSendTo(int64_t sender_id, uint64_t client_msg_id,
                                std::string_view recipient_key,
                                const Account& recipient) override;
  Result<int64_t> Enqueue(const QueuedMessage& message) override;
  Result<int64_t> CountPending(int64_t recipient_id) override;
  Result<std::vector<QueuedMessage>> FetchPending(int64_t recipient_id,
                                                  int64_t limit) override;
  Result<ReceiptResult> ConfirmDelivery(int64_t recipient_id,
                                        int64_t message_id) override;

  Status AddNotice(int64_t account_id, const Notice& notice,
                   int64_t cap) override;
  Result<int64_t> CountNotices(int64_t account_id) override;
  Result<std::vector<Notice>> ListNotices(int64_t account_id,
                                          int64_t limit) override;
  Status AckNotice(int64_t account_id, int64_t message_id) override;

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
  Status BeginSession(int64_t account_id) override;
  Status PrepareSessions(const std::vector<std::string>& keys) override;
  void NotifyBrokersOf(int64_t account_id, const std::string& item,
                       int64_t now_ms) override;
  int NotificationFd() const override;
  std::vector<std::string> TakeNotifications() override;
  bool HasNotifications() override;
  Result<std::vector<QueuedMessage>> FindMessages(
      const std::vector<int64_t>& ids) override;
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

  // A statement sent in the pipeline whose result is not read yet.
  struct Pending {
    const char* what = nullptr;      // for the error message
    const char* prepared = nullptr;  // a PREPARE of this sql, or null
    bool sync = false;               // a pipeline sync point
    std::function<void(const pg_result*)> on_result;  // when it succeeded
  };

  PgStore(pg_conn* conn, std::string uri, const StoreOptions& options);
  // Runs `sql` (a string literal, prepared once per connection) with
  // `params` and returns its result; a failure is kStorage naming `what`
  // and the server's message. Counts the rows an INSERT, UPDATE or DELETE
  // changed. In a transaction, it sends the statement after the deferred
  // ones and reads every result up to its own.
  Result<ResultPtr> Run(const char* what, const char* sql,
                        const std::vector<Param>& params);
  // In a transaction: sends a write without waiting for its result
  // (`on_result` sees it when read). Counts as a change.
  Status Defer(const char* what, const char* sql,
               const std::vector<Param>& params,
               std::function<void(const pg_result*)> on_result = {});
  // Sends `sql` in the pipeline (preparing it first if need be).
  bool SendPrepared(const char* what, const char* sql,
                    const std::vector<Param>& params,
                    std::function<void(const pg_result*)> on_result);
  // Reads the results of every pending statement; returns the last one's
  // (null if it failed or there was none). A failure marks the transaction
  // failed.
  ResultPtr Drain();
  void Fail(std::string message);
  // Ends pipeline mode after a sync, reading what is left.
  void EndPipeline();
  Status RequireTransaction();
  Status Error(std::string_view what) const;
  // Sets the session up after a connect: settings, then the schema.
  Status Setup();
  Status Migrate();
  // Sends outgoing_ (pg_notify, inside the transaction: delivered when it
  // commits) and empties it.
  void SendNotifications();
  // Adds queue_delta_ to queue_lengths, in account order.
  void SendQueueLengths();
  // Sends the notice writes of `account` (all accounts, in order, when -1):
  // its deletions and insertions and its notice_counts row in one
  // statement, then the trim to the cap if it gained notices.
  void SendNoticeWrites(int64_t account = -1);
  void CollectNotifications();

  pg_conn* conn_;
  const std::string uri_;
  const StoreOptions options_;
  // The current transaction, in pipeline mode: statements sent and not yet
  // read, and the first failure (the transaction is then lost).
  bool in_transaction_ = false;
  std::deque<Pending> pending_;
  std::string failure_;
  std::unordered_map<const char*, std::string> prepared_;  // sql -> name
  int64_t changes_ = 0;
  const std::string broker_id_;
  // What Prefetch read, by call, until the transaction ends or a write makes
  // it stale (CreateAccount, DeleteAccount, Prune).
  struct SendAhead {
    SendCheck check;
    int64_t queued_base = 0;  // the committed queue length, when read
  };
  struct ReceiptAhead {
    bool found = false;
    QueuedMessage message;  // when found (no body)
    int64_t last_id = 0;    // the sequence's last value
  };
  struct MessageSummary {
    int64_t sender_id = 0;
    std::string sender_name;
    int64_t recipient_id = 0;
    std::string recipient_name;
    uint64_t client_msg_id = 0;
  };
  std::map<std::tuple<int64_t, uint64_t, std::string>, std::deque<SendAhead>>
      send_ahead_;
  std::unordered_map<int64_t, ReceiptAhead> receipt_ahead_;
  std::unordered_map<int64_t, Account> accounts_ahead_;  // senders, by id
  void ForgetAhead();
  // The transaction's own writes, to correct what was read ahead: sends
  // stored (sender, client_msg_id) -> id, messages stored and confirmed,
  // and each recipient's queue length change (written to queue_lengths at
  // commit, in account order).
  std::map<std::pair<int64_t, uint64_t>, int64_t> sent_in_tx_;
  std::unordered_map<int64_t, MessageSummary> enqueued_in_tx_;
  std::unordered_set<int64_t> confirmed_in_tx_;
  std::unordered_map<int64_t, int64_t> queue_delta_;
  // Accounts deleted: their queue_lengths rows go at commit, in order.
  std::set<int64_t> deleted_in_tx_;
  // Accounts whose counter rows PrepareSessions took in this transaction.
  std::unordered_set<int64_t> sessions_prepared_;
  // Notice writes are kept until commit (or a read of that account's
  // notices), then sent by account, in account order: each touches the
  // account's notice_counts row, and rows locked in one order cannot
  // deadlock.
  struct NoticeWrites {
    std::vector<Notice> added;
    std::vector<int64_t> acknowledged;
    int64_t cap = 0;
    bool deleted = false;  // the account was: its notice_counts row goes
  };
  std::map<int64_t, NoticeWrites> notice_writes_;
  void ForgetTransaction();

  // Items for the other brokers holding sessions of an account, sent at
  // commit: (account id, item), and the time their leases are checked at.
  std::vector<std::pair<int64_t, std::string>> outgoing_;
  int64_t outgoing_now_ms_ = 0;
  std::vector<std::string> incoming_;
};

}  // namespace zchat
