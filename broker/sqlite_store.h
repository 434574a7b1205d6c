// SqliteStore: the Store in one SQLite database file (WAL), the embedded
// default. See store.h for the contract (transactions, ids); what is
// particular to SQLite:
//
// The only writer of its file while open. A transaction also ends without
// its writes when SQLite drops it by itself after a failed statement (disk
// full, I/O error); the store notices that at its next call.
//
// Caches. The store keeps in memory, and serves reads from:
//   - accounts by key (FindAccount), bounded (cleared when full);
//   - each account's count of queued messages (CountPending), loaded by
//     counting on first use and then kept exact by Enqueue, ConfirmDelivery
//     and DeleteAccount;
//   - each account's count of stored notices (CountNotices), likewise kept
//     exact by AddNotice, AckNotice and DeleteAccount;
//   - each sender's highest client_msg_id with a dedup record (as SQLite
//     orders them: signed), loaded from the sender's last run on first
//     use and raised by Enqueue; never too low, since deletes (Prune,
//     DeleteAccount) only lower the true one. FindSend answers "not a retry"
//     without a lookup for an id above it, which is every send of a client that
//     counts its ids up (the C++, Python and terminal clients do), and, with
//     the last run below (cached), for an id above every run that is not
//     among the records waiting in memory (such a client's sends to several
//     recipients, a request each);
//   - the dedup records waiting in send_batches, whole (below);
//   - each sender's last run (bounded), for the merge to append to.
// They reflect the writes of the open transaction. When a transaction ends
// without its writes, the caches are dropped whole.
//
// Ids. Account ids come from AUTOINCREMENT, with a floor kept in memory so
// that an id of a rolled-back transaction is not handed out again. Message
// ids come from blocks of kMessageIdBlock reserved in the `meta` table
// (schema v3): the next id starts above the highest reserved one, after a
// rollback (the block is dropped) or a restart. ConfirmDelivery reads an id
// below the next one to hand out as kAlreadyConfirmed, one at or above it
// as kUnknown.
//
// Dedup records (schema v6). Enqueue keeps a send's record in memory until
// Commit, which writes the transaction's records as one row of
// send_batches (a blob, record_blobs.h): one insert on that table's last
// page per commit. The store mirrors those records in memory, the open
// transaction's with them from Enqueue on (FindSend looks there before the
// runs), and moves them into `send_runs` when there are kRecentSendsMax of
// them, at every Prune and before an account's deletion (a merge inside a
// transaction takes the transaction's records too, which then get no row
// of send_batches). A row of `send_runs` is a
// run of one sender's records in client_msg_id order (at most
// kRunRecordsMax records and kRunBytesMax bytes of them, recorded within
// kRunSpanMs of the run's oldest): its first id is in the row's key, the
// records in a blob, and a sender's runs cover ranges of ids that do not
// overlap, so that one key lookup finds the only run that can hold an id.
// A merge appends each sender's new records to the sender's last run while
// it has room (SQLite appends to the blob), then starts new runs: about one
// row written per sender and merge, instead of a b-tree insert per record.
// The mirror is loaded from the table on first use and dropped with the
// other caches.
//
// Notices (schema v7). A sender acknowledges most notices within moments
// of their adding, so the store does not put them in `notices` (a b-tree
// insert, then a delete) but logs them: AddNotice and an AckNotice of a
// logged notice change a map in memory (log_notices_, the live logged
// notices) and append an operation for Commit, which writes the
// transaction's operations as one row of notice_log (record_blobs.h).
// When the log holds kNoticeLogMax operations, and at least twice as many
// as there are live notices, it is compacted: its rows are replaced by one
// row of the live notices, or, when more than kNoticeCarryMax are live
// (senders away), those are moved into `notices`.
// Reads (CountNotices, ListNotices) see both places; a notice is in one of
// them only. Loaded by replaying the log on first use; dropped with the
// other caches. An account over its cap (a sender that does not acknowledge
// while its messages are confirmed) is trimmed once per transaction, before
// the commit or a read of its notices: its oldest notices leave the log and
// the table (one range there), instead of an insert into the table and a
// delete of the oldest per notice.
//
// Messages (schema v8). A message whose recipient is online
// (QueuedMessage::recipient_online) is likely confirmed within moments, so
// it is logged the same way: kept in memory (log_messages_, a ring of
// reused slots per recipient, owned_log.h) and written
// with the transaction's other message operations as one row of
// message_log; its receipt is an operation too. At kMessageLogMax
// operations (or kMessageLogBytesMax of live text) the log is rewritten as
// one row of the live messages, or,
// when they hold more than kMessageCarryBytes (or number over
// kMessageCarryMax), they move into `messages`. A message for a recipient
// who is away goes into `messages` at once. Reads (CountPending,
// FetchPending, ConfirmDelivery, DeleteAccount) see both places, in message
// id order.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "broker/owned_log.h"
#include "broker/record_blobs.h"
#include "broker/store.h"

namespace zchat {

class SqliteStore final : public Store {
 public:
  static Result<std::unique_ptr<SqliteStore>> Open(const std::string& path,
                                                   const StoreOptions& options);
  ~SqliteStore() override;

  static constexpr int kSchemaVersion = 8;
  // With --sync full, the WAL is checkpointed when it holds this many pages
  // (4 KiB each; PRAGMA wal_autocheckpoint, docs/performance.md section
  // 19); with --sync normal at SQLite's 1,000.
  static constexpr int kCheckpointPages = 10'000;

  // Transactions (see the top of this file). Commit failing (disk full)
  // rolls everything back. Rollback outside a transaction only drops the
  // caches.
  Status Begin() override;
  Status Commit() override;
  void Rollback() override;
  bool InTransaction() const override;

  // Rows changed since the database was opened: a request that leaves it
  // unchanged wrote nothing.
  int64_t TotalChanges() const override;

  // Accounts. `key` is the case-folded username.
  Result<int64_t> CreateAccount(std::string_view name, std::string_view key,
                                std::string_view password_hash,
                                int64_t now_ms) override;
  Result<std::optional<Account>> FindAccount(std::string_view key) override;
  Result<std::optional<Account>> FindAccountById(int64_t id) override;
  Result<std::optional<int64_t>> FindAccountId(std::string_view key) override;
  // Removes the account, its queue, notices and tokens. Returns the purged
  // messages (bodies cleared) so their senders can be told.
  Result<std::vector<QueuedMessage>> DeleteAccount(int64_t id) override;

  // Walks keys in order from max(`from`, just after `after`) while they start
  // with `prefix`; calls `visit(key, name)` for each until it returns false
  // or `max_rows` keys were examined. Returns the last key examined, or ""
  // when no key after it can be in range (the scan reached the end).
  Result<std::string> ScanAccounts(
      std::string_view prefix, std::string_view after, int64_t max_rows,
      const std::function<bool(std::string_view, std::string_view)>& visit)
      override;

  // Messages.
  Result<std::optional<int64_t>> FindSend(int64_t sender_id,
                                          uint64_t client_msg_id) override;
  Result<int64_t> Enqueue(const QueuedMessage& message) override;
  Result<int64_t> CountPending(int64_t recipient_id) override;
  Result<std::vector<QueuedMessage>> FetchPending(int64_t recipient_id,
                                                  int64_t limit) override;
  Result<ReceiptResult> ConfirmDelivery(int64_t recipient_id,
                                        int64_t message_id) override;

  // Sender notices (see store.h). CountNotices is served from a cache.
  Status AddNotice(int64_t account_id, const Notice& notice,
                   int64_t cap) override;
  Result<int64_t> CountNotices(int64_t account_id) override;
  Result<std::vector<Notice>> ListNotices(int64_t account_id,
                                          int64_t limit) override;
  Status AckNotice(int64_t account_id, int64_t message_id) override;

  // Session tokens, stored as hashes.
  Status AddToken(std::string_view token_hash, int64_t account_id,
                  int64_t now_ms) override;
  Result<std::optional<int64_t>> FindToken(std::string_view token_hash,
                                           int64_t not_before_ms) override;
  Status RevokeToken(std::string_view token_hash) override;

  // Counts every table's rows: a scan, meant for a second, read-only store
  // (the metrics server's), which sees what is committed.
  Result<StoreTotals> Totals() override;

  // Housekeeping: drops dedup ids and tokens older than the cut-offs.
  Status Prune(int64_t sends_before_ms, int64_t tokens_before_ms) override;

  // Bytes of pages SQLite's page cache holds now (at most
  // StoreOptions::cache_kib KiB, or SQLite's default, and some overhead).
  int64_t CacheBytes() const;

  // --- For PartitionedStore (partitioned_store.h) ---

  // Hands out only message ids congruent to `index` modulo `count` (the
  // partition's share of the id space); by default, index 0 of 1: every id.
  // Before the first Enqueue.
  void UseIdSpace(int index, int count);
  // An integer of the `meta` table (nullopt: not set), and setting one in a
  // transaction of its own (outside any other).
  Result<std::optional<int64_t>> ReadMeta(const char* key);
  Status WriteMeta(const char* key, int64_t value);

 private:
  class Statement;
  struct CloseDb {
    void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
  };
  // Ids of one AUTOINCREMENT table handed out by this store.
  struct IdFloor {
    int64_t assigned = 0;  // the highest id handed out, 0 = none yet
    // A transaction that may have assigned ids ended without them, so the
    // table's sqlite_sequence may be below `assigned`: the next insert
    // gives its id explicitly.
    bool behind = false;
    // The id to bind for the next insert (nullopt: let SQLite choose).
    std::optional<int64_t> Next() const;
    void Assigned(int64_t id);
  };
  static constexpr size_t kAccountCacheSize = 100'000;
  static constexpr size_t kPendingCacheSize = 100'000;
  static constexpr size_t kNoticeCountCacheSize = 100'000;

  explicit SqliteStore(sqlite3* db);
  sqlite3* db() const { return db_.get(); }
  Status Exec(const char* sql);
  // Runs a fixed statement that returns no rows (BEGIN, COMMIT...),
  // prepared once.
  Status RunFixed(const char* sql);
  Status RequireTransaction();
  // The database's PRAGMA user_version (0 for a new, empty file).
  Result<int64_t> SchemaVersion();
  // Refuses a version newer than kSchemaVersion with a message naming both.
  static Status CheckNotNewer(int64_t version);
  // Brings the schema up to kSchemaVersion.
  Status Migrate();
  // A prepared, reset statement for `sql` (a string literal), prepared once.
  Statement& Prepare(const char* sql);
  // The single account row a prepared, bound statement selects, if any.
  Result<std::optional<Account>> ReadAccount(Statement& st);
  static QueuedMessage ReadQueued(const Statement& st, int64_t recipient_id,
                                  bool with_body);
  // A kStorage status naming `what` and SQLite's last error. Also notices a
  // transaction SQLite dropped because of that error.
  Status Error(std::string_view what);
  // If a transaction this store began is gone without Commit or Rollback
  // (SQLite rolled it back after an error), does what Rollback does.
  void NoticeLostTransaction();
  // What every end of a transaction without its writes does: drops the
  // caches and marks the id floors behind.
  void ForgetTransaction();

  // Declared first, destroyed last: statements are finalized before close.
  std::unique_ptr<sqlite3, CloseDb> db_;
  // Prepared once per SQL text (string literals, keyed by address).
  std::unordered_map<const char*, std::unique_ptr<Statement>> statements_;
  // True from a successful Begin() to Commit()/Rollback(); differs from
  // InTransaction() when SQLite dropped the transaction by itself.
  bool transaction_open_ = false;
  IdFloor account_ids_;
  // Message ids come from blocks reserved in the meta table (schema v3):
  // one write per block instead of AUTOINCREMENT's sqlite_sequence update
  // per message. A block reserved in a transaction that is lost is dropped.
  static constexpr int64_t kMessageIdBlock = 4096;
  int64_t next_message_id_ = 1;    // no id below it is handed out
  int id_index_ = 0;               // ids handed out are id_index_ modulo
  int id_count_ = 1;               // id_count_ (UseIdSpace)
  int64_t message_block_end_ = 0;  // the reserved block's last id (0: none)
  Result<int64_t> NextMessageId();
  // Caches (see the top of this file).
  // Looked up by string_view, without a string made for the key.
  struct KeyHash {
    using is_transparent = void;
    size_t operator()(std::string_view key) const {
      return std::hash<std::string_view>()(key);
    }
  };
  std::unordered_map<std::string, Account, KeyHash, std::equal_to<>>
      accounts_by_key_;
  std::unordered_map<int64_t, int64_t> pending_counts_;
  std::unordered_map<int64_t, int64_t> notice_counts_;
  // What a receipt needs of a message this store handed out (FetchPending)
  // or moved from the message log into the table while its recipient was
  // online (not of one queued for a recipient who is away, which will be
  // fetched first): the message less its body, so that
  // ConfirmDelivery deletes the row by its key without reading it first.
  // Dropped with the other caches, and an account's when DeleteAccount
  // purges its queue, so that an entry's row is in `messages`.
  static constexpr size_t kDeliveryCacheSize = 65'536;  // over all partitions
  std::unordered_map<int64_t, QueuedMessage> deliveries_;
  void ExpectReceipt(int64_t id, const QueuedMessage& m);
  // The rows of the transaction's receipts that were found in deliveries_:
  // deleted together by DeleteConfirmed, which Commit and every read of
  // `messages` call first, and which runs when kConfirmedMax wait (a
  // statement per row cost a drained message 0.8k instructions more,
  // docs/performance.md section 19). A recipient's rows that are next to
  // each other in its queue go as a range of the recipient's index (see
  // ConfirmedRuns), the others up to kDeleteChunk ids a statement. Counted
  // in TotalChanges meanwhile; a statement that deletes other than the
  // rows it names fails the batch.
  struct ConfirmedRow {
    int64_t recipient_id;
    int64_t id;
    auto operator<=>(const ConfirmedRow&) const = default;
  };
  static constexpr size_t kConfirmedMax = 1024;
  static constexpr size_t kDeleteChunk = 64;
  std::vector<ConfirmedRow> confirmed_rows_;
  Status DeleteConfirmed();
  // Sorts `rows` (one recipient's, in id order) into runs, each of rows
  // with no other row of the recipient's queue between them: a run of two
  // or more goes to `runs` as its first and last index in `rows`, a row
  // alone to `singles`. When every row is among the recipient's `fetched_`
  // ids, those say it; otherwise it reads the queue between the first and
  // the last id, up to twice as many rows as `rows` holds, and rows past
  // that are singles.
  Status ConfirmedRuns(std::span<const ConfirmedRow> rows,
                       std::vector<std::pair<size_t, size_t>>& runs,
                       std::vector<int64_t>& singles);
  // Runs of `rows` by a recipient's fetched ids (above): false, and
  // nothing added, if a row is not among them.
  bool RunsOfFetched(std::span<const ConfirmedRow> rows,
                     std::span<const int64_t> fetched,
                     std::vector<std::pair<size_t, size_t>>& runs,
                     std::vector<int64_t>& singles) const;
  // The ids of the rows of `messages` that a recipient's last FetchPending
  // read, in id order: then a stretch of its queue in the table with no
  // other row between them (the logged messages are not in the table). A
  // row inserted since for that recipient below the last of them drops
  // the entry (FlushInserts, which every insert into `messages` goes
  // through), and so does a lost transaction; rows deleted since only
  // leave gaps, which end runs. So a recipient confirming what it fetched
  // needs no read of its queue to find the runs (0.9k instructions a
  // drained message, docs/performance.md section 30). At most
  // kFetchedIdsMax ids over all partitions (512 KiB; a full map is
  // emptied).
  static constexpr size_t kFetchedIdsMax = 65'536;
  std::unordered_map<int64_t, std::vector<int64_t>> fetched_;
  size_t fetched_ids_ = 0;  // the ids fetched_ holds
  void Unfetch(int64_t recipient_id);
  Status DeleteSingles(std::span<const int64_t> ids);
  // A confirmed message leaves its recipient's cached queue size.
  void Confirmed(int64_t recipient_id);
  static constexpr size_t kHighestSendCacheSize = 100'000;
  std::unordered_map<int64_t, int64_t> highest_sends_;
  // Prune's walk over the runs' primary key (sender_id, first_id): the key
  // it goes on after, and the runs written since its last step (schema v4
  // dropped the records' index by age).
  static constexpr int64_t kPruneStep = 4096;
  static constexpr int64_t kPruneAhead = 2;
  static constexpr std::pair<int64_t, int64_t> kPruneFirst = {INT64_MIN,
                                                              INT64_MIN};
  static constexpr std::pair<int64_t, int64_t> kPruneLast = {INT64_MAX,
                                                             INT64_MAX};
  std::pair<int64_t, int64_t> prune_from_ = kPruneFirst;
  int64_t runs_since_prune_ = 0;
  // The records of send_batches and of the open transaction (see the top of
  // this file): (sender_id, client_msg_id) -> (message_id, created_at), and
  // each sender's highest client_msg_id among them. Valid while
  // recent_loaded_; a lost transaction drops it whole.
  static constexpr size_t kRecentSendsMax = 4096;
  struct SendKey {
    int64_t sender_id;
    int64_t client_msg_id;
    bool operator==(const SendKey&) const = default;
  };
  struct SendKeyHash {
    size_t operator()(const SendKey& k) const {
      return std::hash<uint64_t>()(static_cast<uint64_t>(k.sender_id) *
                                       0x9e3779b97f4a7c15ULL ^
                                   static_cast<uint64_t>(k.client_msg_id));
    }
  };
  struct RecentSend {
    int64_t message_id;
    int64_t created_at;
  };
  using SendRow = std::pair<SendKey, RecentSend>;
  std::unordered_map<SendKey, RecentSend, SendKeyHash> recent_sends_;
  std::unordered_map<int64_t, int64_t> recent_highest_;
  bool recent_loaded_ = false;
  // The dedup records of the open transaction's sends, in message id order:
  // in the mirror (recent_sends_) from Enqueue on, written by Commit
  // (WriteBatchSends) as a row of send_batches, or, if a merge comes first,
  // into runs with the others (and dropped from here).
  std::vector<SendRecord> batch_records_;
  // Runs `sql`, which selects one blob column, handing each row's blob to
  // `take`; a blob `take` refuses fails the read as a damaged row (`what`
  // names the read).
  Status ForEachBlob(const char* sql, std::string_view what,
                     const std::function<bool(std::string_view)>& take);
  // Reads send_batches into the mirror unless it is loaded.
  Status LoadRecentSends();
  // Adds a record of send_batches to the mirror.
  void RememberRecent(const SendKey& key, const RecentSend& send);
  // Moves every record of send_batches into runs (in a transaction).
  Status MergeRecentSends();
  // Writes batch_records_ as a row of send_batches; merges them when the
  // mirror is full.
  Status WriteBatchSends();

  // Runs (see the top of this file). A run takes a record while it holds
  // fewer than kRunRecordsMax, its blob stays within kRunBytesMax (rows
  // stay on their b-tree page: SQLite keeps about 1,000 bytes of a row of
  // an index b-tree on 4 KiB pages) and the record was made within
  // kRunSpanMs of the run's oldest (a record outlives its 7 days by at most
  // that, waiting for the newest of its run).
  static constexpr int64_t kRunRecordsMax = 128;
  static constexpr int64_t kRunBytesMax = 768;
  static constexpr int64_t kRunSpanMs = 3'600'000;
  // What appending to a run needs of it.
  struct RunTail {
    int64_t first_id;
    RunRecord last;
    int64_t count;
    int64_t bytes;
    int64_t oldest_at;
  };
  // Each sender's last run (nullopt: the sender has none), as stored.
  static constexpr size_t kRunTailCacheSize = 100'000;
  std::unordered_map<int64_t, std::optional<RunTail>> run_tails_;
  std::vector<RunRecord> run_scratch_;
  // The sender's last run, from the cache or read.
  Result<std::optional<RunTail>> LastRun(int64_t sender_id);
  // Adds a sender's new records, in client_msg_id order, to its runs.
  Status AddToRuns(int64_t sender_id, const SendRow* rows, size_t count);
  // Adds records, in client_msg_id order, none above the sender's last
  // run's last id: those a run's range holds go into it together (a read
  // and a rewrite a run, split when that makes it too big), those between
  // two runs or below the first into runs of their own.
  Status InsertIntoRuns(int64_t sender_id, const SendRow* rows, size_t count);
  // Writes a whole run row (replacing one with the same first id).
  Status WriteRun(int64_t sender_id, const std::vector<RunRecord>& records,
                  int64_t oldest_at, int64_t newest_at);
  // Writes records as one run, or as runs of equal size when one would be
  // too big (kRunRecordsMax, kRunBytesMax); with replaces_run the first
  // replaces the run with its first id. Counts the rows it adds in
  // runs_since_prune_.
  Status WriteRuns(int64_t sender_id, const std::vector<RunRecord>& records,
                   int64_t oldest_at, int64_t newest_at, bool replaces_run);
  // Migration to schema v6: the records of `sends` become runs.
  Status MoveSendsIntoRuns();

  // Operations logged (notices, messages) since the store was opened: rows
  // the commit will write, counted by TotalChanges.
  int64_t logged_changes_ = 0;
  // The notice log (see the top of this file).
  static constexpr int64_t kNoticeLogMax = 4096;
  // Live notices carried in the log at most (in memory: about 150 bytes
  // each). A sender that lags behind its recipients' receipts holds up to
  // its cap live, and carrying them costs less than a b-tree insert and
  // delete each.
  static constexpr int64_t kNoticeCarryMax = 16'384;
  // (A std::map: a sender's notices come in the order of its recipients'
  // receipts, not of its message ids, which OwnedLog would pay for.)
  using NoticeKey = std::pair<int64_t, int64_t>;  // account, message id
  std::map<NoticeKey, Notice> log_notices_;
  bool notice_log_loaded_ = false;
  // Operations in notice_log's rows and in notice_ops_.
  int64_t notice_log_ops_ = 0;
  // The open transaction's operations, encoded (written by Commit), and how
  // many add.
  std::string notice_ops_;
  int64_t notice_op_count_ = 0;
  int64_t notice_op_adds_ = 0;
  // Replays notice_log into log_notices_ unless it is loaded.
  Status LoadNoticeLog();
  // Logs an operation of the open transaction.
  void LogNoticeOp(bool add, int64_t account_id, const Notice& notice);
  // Writes notice_ops_ as a row of notice_log; compacts the log when it is
  // full.
  Status WriteNoticeOps();
  // Replaces the log's rows with its live notices: as one row, or, when
  // there are more than kNoticeCarryMax of them, in `notices`.
  Status CompactNoticeLog();
  // The account's live logged notices.
  int64_t LoggedNotices(int64_t account_id) const;
  // Accounts that went over their cap in the open transaction, and the cap:
  // TrimNotices drops their oldest notices down to it, before Commit and
  // before a read of the notices.
  std::map<int64_t, int64_t> notice_trims_;
  Status TrimNotices();
  // CountNotices without the trim: what the table and the log hold.
  Result<int64_t> CountStoredNotices(int64_t account_id);

  // The message log (see the top of this file).
  static constexpr int64_t kMessageLogMax = 4096;
  static constexpr size_t kMessageCarryMax = 1024;
  static constexpr int64_t kMessageCarryBytes = 256 * 1024;
  // Live logged text past which a commit compacts the log whatever its
  // operations (bounds the memory of messages that wait).
  static constexpr int64_t kMessageLogBytesMax = 4 * 1024 * 1024;
  // By recipient, then message id.
  OwnedLog<QueuedMessage> log_messages_;
  // The ids logged since the log was last loaded or compacted, with their
  // recipients, in id order (removed ones too): what tells a receipt for
  // another account's logged message ("not yours") from an unknown id.
  std::vector<std::pair<int64_t, int64_t>> log_message_index_;
  int64_t log_message_bytes_ = 0;  // the live logged messages' text
  // A body's buffer up to this size stays in the log's slot when its message
  // leaves, for the next message's body.
  static constexpr size_t kKeptBodyBytes = 1024;
  bool message_log_loaded_ = false;
  // Operations in message_log's rows and in message_ops_.
  int64_t message_log_ops_ = 0;
  // The open transaction's operations, encoded, and how many add and remove.
  std::string message_ops_;
  int64_t message_op_adds_ = 0;
  int64_t message_op_removes_ = 0;
  // Replays message_log unless it is loaded.
  Status LoadMessageLog();
  // Adds a logged message, as message `id`, to the log's memory (returning
  // it there), or takes one out: returned, valid until the next KeepLogged,
  // or null if there is none. Its body's buffer stays for the next message,
  // so the caller does not take the body.
  const QueuedMessage& KeepLogged(const QueuedMessage& m, int64_t id);
  QueuedMessage* DropLogged(int64_t recipient_id, int64_t id);
  // The recipient of a live logged message, if `id` is one.
  std::optional<int64_t> LoggedRecipient(int64_t id) const;
  // Rebuilds log_message_index_ from the live logged messages.
  void IndexLoggedMessages();
  // Forgets the log's memory (it is reloaded when needed).
  void ForgetMessageLog();
  // Logs the removal of a logged message (a receipt, a purge).
  void LogRemoval(int64_t id);
  // Writes message_ops_ as a row of message_log; compacts the log when it
  // is full.
  Status WriteMessageOps();
  // Replaces the log's rows with its live messages: one row, or the rows of
  // `messages` when they are too many or too large.
  Status CompactMessageLog();
  // Inserts message `id` (the rest from `m`) into `messages`: kept, and
  // written kInsertChunk rows a statement (one program run, one pair of
  // cursors opened, for that many rows), the rest by FlushInserts, which
  // runs before anything reads or deletes from `messages` (DeleteConfirmed
  // calls it) and at the commit.
  Status InsertMessage(int64_t id, const QueuedMessage& m);
  Status FlushInserts();
  static constexpr size_t kInsertChunk = 32;
  // The rows waiting: the first insert_count_ of insert_rows_ (kept, so
  // that their strings' buffers are reused).
  std::vector<QueuedMessage> insert_rows_;
  size_t insert_count_ = 0;
};

}  // namespace zchat
