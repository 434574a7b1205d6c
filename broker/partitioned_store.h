// PartitionedStore: the Store over P SQLite files, the partitions (P > 1,
// `--partitions`). The data of the hot path is laid out so that each request
// of it writes to one partition only, which is what lets partitions commit
// in parallel (issue 13); this class is the store seen whole, for the
// requests that read or write across partitions.
//
// Layout. Partition 0 is the database file itself (the `--db` path);
// partition p > 0 is the file "<path>.p<p>". An account belongs to partition
// AccountPartition(id): a hash of its id, mod P.
//   - Partition 0 also holds every account and every session token (names
//     are unique in one table; listing pages through one index).
//   - A message lives in its sender's partition, with its dedup record, and
//     so does the sender's notice once it is confirmed or purged: message ids
//     are handed out so that (id mod P) is that partition (SqliteStore's id
//     space, MessagePartition). A send, a receipt and a notice's
//     acknowledgement each write to one partition.
//   - A recipient's queue is spread over the partitions of its senders:
//     counting and fetching it reads every partition (fetch merges them in
//     id order, which keeps each sender's messages in the order they were
//     sent).
// P is recorded in every file's `meta` table when the database is created,
// and cannot change afterwards: a database of one file stays one file.
//
// Transactions. Begin() opens none at once: a partition's transaction is
// begun by the first write to it. Commit() commits the partitions written
// to, partition 0 last, and stops at the first that fails (rolling back the
// rest). So a failed commit may leave earlier partitions committed: each
// request writes to one partition, except DeleteAccount, whose account row
// (partition 0) goes last: if the broker stops in between, the account is
// still there, its queue gone and its senders told (their notices
// committed), and the deletion can be asked for again.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "broker/sqlite_store.h"

namespace zchat {

class PartitionedStore final : public Store {
 public:
  // `first` is partition 0, already open; `partitions` the count asked for
  // (0: as the database was created). Opens the others.
  static Result<std::unique_ptr<Store>> Open(std::unique_ptr<SqliteStore> first,
                                             const std::string& path,
                                             const StoreOptions& options);

  // The file of partition `p` of the database at `path`.
  static std::string PartitionPath(const std::string& path, int p);

  ~PartitionedStore() override;

  int partitions() const { return static_cast<int>(parts_.size()); }

  // --- A batch's requests run partition by partition, on several threads
  // (BrokerCore). Between PrepareParallel and the end of the run, the
  // caller's thread leaves this store alone and each partition's View is
  // used by one thread. ---

  // The partition of an account (its messages, dedup records and notices),
  // and of a message id (its sender's).
  static int AccountPartition(int64_t account_id, int partitions);
  static int MessagePartition(int64_t message_id, int partitions);
  int OfAccountId(int64_t id) const { return static_cast<int>(OfAccount(id)); }
  int OfMessageId(int64_t id) const { return static_cast<int>(OfMessage(id)); }
  // Whether the batch has begun no partition's transaction: only then may
  // the views begin and commit their own.
  bool Untouched() const;
  // Opens the views (below): each a read-only connection to partition 0's
  // file, so the database must be in files, not in memory.
  Status OpenViews();
  // Before a run: the queue counts of `recipients`, summed over the
  // partitions, become counters that the views share and keep up (a send
  // checks the whole queue against its limit); views forget accounts that
  // were deleted since their last run.
  Status PrepareParallel(const std::vector<int64_t>& recipients);
  // Partition p for one thread: its own file for messages, dedup records,
  // notices and its transaction; accounts read from partition 0's file
  // through a read-only connection of its own (what is committed), a
  // recipient's queue count from the shared counters. What the hot requests
  // (SEND_MESSAGE, MESSAGE_RECEIPT, NOTICE_RECEIPT) call, and Prune (this
  // partition's); anything else is refused with kStorage.
  // After OpenViews.
  Store& View(int p);

  Status Begin() override;
  Status Commit() override;
  void Rollback() override;
  bool InTransaction() const override;
  int64_t TotalChanges() const override;

  Result<int64_t> CreateAccount(std::string_view name, std::string_view key,
                                std::string_view password_hash,
                                int64_t now_ms) override;
  Result<std::optional<Account>> FindAccount(std::string_view key) override;
  Result<std::optional<Account>> FindAccountById(int64_t id) override;
  Result<std::optional<int64_t>> FindAccountId(std::string_view key) override;
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
  // Prune for partition `p` alone, in the batch's transaction. (A View
  // prunes its partition on its own thread, in its own transaction.)
  Status PrunePartition(int p, int64_t sends_before_ms,
                        int64_t tokens_before_ms);

 private:
  PartitionedStore(std::vector<std::unique_ptr<SqliteStore>> parts,
                   std::string path, const StoreOptions& options);
  size_t OfAccount(int64_t id) const;
  size_t OfMessage(int64_t id) const;
  // Partition `p`, in the batch's transaction (begun on first use); nullptr
  // after Begin failed, with the status in *status.
  SqliteStore* Writing(size_t p, Status* status);

  class Partition;

  std::vector<std::unique_ptr<SqliteStore>> parts_;
  bool open_ = false;          // between Begin() and Commit()/Rollback()
  std::vector<bool> writing_;  // by partition: its transaction is begun
  std::string path_;           // partition 0's file
  StoreOptions options_;
  // For runs on several threads (PrepareParallel).
  std::vector<std::unique_ptr<Partition>> views_;
  std::unordered_map<int64_t, std::atomic<int64_t>> queued_;  // by recipient
  uint64_t deletions_ = 0;  // DeleteAccount calls, for the views' caches
};

}  // namespace zchat
