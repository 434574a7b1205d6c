#include "broker/partitioned_store.h"

#include <algorithm>
#include <utility>

namespace zchat {
namespace {

constexpr const char* kPartitionsKey = "partitions";
constexpr const char* kIndexKey = "partition";
constexpr int kMaxPartitions = 64;

// Messages read from several partitions, in id order.
void SortById(std::vector<QueuedMessage>& messages) {
  std::sort(messages.begin(), messages.end(),
            [](const QueuedMessage& a, const QueuedMessage& b) {
              return a.id < b.id;
            });
}

Status Refuse(const std::string& path, std::string why) {
  return Status(ErrorCode::kStorage, "open " + path + ": " + std::move(why));
}

}  // namespace

std::string PartitionedStore::PartitionPath(const std::string& path, int p) {
  if (p == 0 || path == ":memory:") return path;
  return path + ".p" + std::to_string(p);
}

Result<std::unique_ptr<Store>> PartitionedStore::Open(
    std::unique_ptr<SqliteStore> first, const std::string& path,
    const StoreOptions& options) {
  Result<std::optional<int64_t>> recorded = first->ReadMeta(kPartitionsKey);
  if (!recorded.ok()) return Refuse(path, recorded.status().detail());
  int64_t count = 1;
  if (*recorded) {
    count = **recorded;
    if (options.partitions > 0 && options.partitions != count) {
      return Refuse(path,
                    "the database was created with " + std::to_string(count) +
                        " partitions; their number cannot change (" +
                        std::to_string(options.partitions) + " asked for)");
    }
  } else if (options.partitions > 1) {
    count = options.partitions;
    // A database of one file keeps its messages where partitions would not
    // look for them.
    Result<StoreTotals> totals = first->Totals();
    if (!totals.ok()) return Refuse(path, totals.status().detail());
    if (totals->accounts > 0 || totals->queued_messages > 0 ||
        totals->notices > 0) {
      return Refuse(path,
                    "the database was created with one partition and holds " +
                        std::to_string(totals->accounts) +
                        " accounts; partitions are chosen when a database "
                        "is created");
    }
  }
  if (count < 1 || count > kMaxPartitions) {
    return Refuse(path, "partitions must be 1 to " +
                            std::to_string(kMaxPartitions) + ", not " +
                            std::to_string(count));
  }
  if (count == 1) return std::unique_ptr<Store>(std::move(first));

  const int n = static_cast<int>(count);
  std::vector<std::unique_ptr<SqliteStore>> parts;
  first->UseIdSpace(0, n);
  parts.push_back(std::move(first));
  for (int p = 1; p < n; ++p) {
    const std::string file = PartitionPath(path, p);
    Result<std::unique_ptr<SqliteStore>> part =
        SqliteStore::Open(file, options);
    if (!part.ok()) return part.status();
    Result<std::optional<int64_t>> index = (*part)->ReadMeta(kIndexKey);
    Result<std::optional<int64_t>> of = (*part)->ReadMeta(kPartitionsKey);
    if (!index.ok()) return Refuse(file, index.status().detail());
    if (!of.ok()) return Refuse(file, of.status().detail());
    if (*index || *of) {
      if (*index != std::optional<int64_t>(p) ||
          *of != std::optional<int64_t>(count)) {
        return Refuse(file, "it is partition " +
                                std::to_string(index->value_or(-1)) + " of " +
                                std::to_string(of->value_or(-1)) +
                                ", not partition " + std::to_string(p) +
                                " of " + std::to_string(count));
      }
    } else if (*recorded) {
      // The database says it has this partition: a new, empty file here
      // means the partition's file was lost, with its messages.
      return Refuse(file, "partition " + std::to_string(p) + " of " +
                              std::to_string(count) +
                              " is missing (a new, empty file)");
    } else {
      // A new database: each partition records itself before partition 0
      // records the count, so a database whose count is recorded has them
      // all.
      if (Status s = (*part)->WriteMeta(kPartitionsKey, count); !s.ok()) {
        return Refuse(file, s.detail());
      }
      if (Status s = (*part)->WriteMeta(kIndexKey, p); !s.ok()) {
        return Refuse(file, s.detail());
      }
    }
    (*part)->UseIdSpace(p, n);
    parts.push_back(std::move(*part));
  }
  if (!*recorded) {
    if (Status s = parts[0]->WriteMeta(kPartitionsKey, count); !s.ok()) {
      return Refuse(path, s.detail());
    }
  }
  return std::unique_ptr<Store>(
      new PartitionedStore(std::move(parts), path, options));
}

PartitionedStore::PartitionedStore(
    std::vector<std::unique_ptr<SqliteStore>> parts, std::string path,
    const StoreOptions& options)
    : parts_(std::move(parts)),
      writing_(parts_.size(), false),
      path_(std::move(path)),
      options_(options) {}

PartitionedStore::~PartitionedStore() = default;

// --- One partition for one thread (View) ---

class PartitionedStore::Partition final : public Store {
 public:
  Partition(PartitionedStore& whole, SqliteStore& own,
            std::unique_ptr<SqliteStore> accounts)
      : whole_(whole), own_(own), accounts_(std::move(accounts)) {}

  uint64_t deletions_seen = 0;
  // Forgets the accounts read so far (some may have been deleted).
  void ForgetAccounts() { accounts_->Rollback(); }

  Status Begin() override { return own_.Begin(); }
  Status Commit() override { return own_.Commit(); }
  void Rollback() override { own_.Rollback(); }
  bool InTransaction() const override { return own_.InTransaction(); }
  int64_t TotalChanges() const override { return own_.TotalChanges(); }

  Result<std::optional<Account>> FindAccount(std::string_view key) override {
    return accounts_->FindAccount(key);
  }
  Result<std::optional<Account>> FindAccountById(int64_t id) override {
    return accounts_->FindAccountById(id);
  }
  Result<std::optional<int64_t>> FindAccountId(std::string_view key) override {
    return accounts_->FindAccountId(key);
  }
  Result<std::optional<int64_t>> FindSend(int64_t sender_id,
                                          uint64_t client_msg_id) override {
    return own_.FindSend(sender_id, client_msg_id);
  }
  Result<int64_t> Enqueue(const QueuedMessage& message) override {
    return own_.Enqueue(message);  // its place was taken by CountPending
  }
  // Called by a new send (CheckSend) just before it is refused for a full
  // queue or stored: takes a place in the shared count at once, so that
  // sends on other threads see it and the limit holds exactly. A send
  // refused or rolled back leaves its place taken until the run ends: the
  // count errs high, never low.
  Result<int64_t> CountPending(int64_t recipient_id) override {
    auto it = whole_.queued_.find(recipient_id);
    if (it != whole_.queued_.end()) {
      return it->second.fetch_add(1, std::memory_order_relaxed);
    }
    return own_.CountPending(recipient_id);  // not prepared: this part's
  }
  Result<ReceiptResult> ConfirmDelivery(int64_t recipient_id,
                                        int64_t message_id) override {
    Result<ReceiptResult> r = own_.ConfirmDelivery(recipient_id, message_id);
    if (r.ok() && r->outcome == ReceiptOutcome::kConfirmed) {
      Adjust(recipient_id, -1);
    }
    return r;
  }
  Status AddNotice(int64_t account_id, const Notice& notice,
                   int64_t cap) override {
    return own_.AddNotice(account_id, notice, cap);
  }
  Result<int64_t> CountNotices(int64_t account_id) override {
    return own_.CountNotices(account_id);
  }
  Result<std::vector<Notice>> ListNotices(int64_t account_id,
                                          int64_t limit) override {
    return own_.ListNotices(account_id, limit);
  }
  Status AckNotice(int64_t account_id, int64_t message_id) override {
    return own_.AckNotice(account_id, message_id);
  }

  // Not the hot requests': refused.
  Result<int64_t> CreateAccount(std::string_view, std::string_view,
                                std::string_view, int64_t) override {
    return NotHere();
  }
  Result<std::vector<QueuedMessage>> DeleteAccount(int64_t) override {
    return NotHere();
  }
  Result<std::string> ScanAccounts(
      std::string_view, std::string_view, int64_t,
      const std::function<bool(std::string_view, std::string_view)>&) override {
    return NotHere();
  }
  Result<std::vector<QueuedMessage>> FetchPending(int64_t, int64_t) override {
    return NotHere();
  }
  Status AddToken(std::string_view, int64_t, int64_t) override {
    return NotHere();
  }
  Result<std::optional<int64_t>> FindToken(std::string_view, int64_t) override {
    return NotHere();
  }
  Status RevokeToken(std::string_view) override { return NotHere(); }
  Result<StoreTotals> Totals() override { return NotHere(); }
  // This partition's dedup records (and, in partition 0, the tokens), in
  // its own transaction: a tick's pruning runs on the partition's thread.
  Status Prune(int64_t sends_before_ms, int64_t tokens_before_ms) override {
    return own_.Prune(sends_before_ms, tokens_before_ms);
  }

 private:
  static Status NotHere() {
    return Status(ErrorCode::kStorage,
                  "not served by one partition's store (a request that "
                  "spans partitions)");
  }
  void Adjust(int64_t recipient_id, int64_t by) {
    auto it = whole_.queued_.find(recipient_id);
    if (it != whole_.queued_.end()) {
      it->second.fetch_add(by, std::memory_order_relaxed);
    }
  }

  PartitionedStore& whole_;
  SqliteStore& own_;
  std::unique_ptr<SqliteStore> accounts_;  // partition 0's file, read-only
};

bool PartitionedStore::Untouched() const {
  return std::none_of(writing_.begin(), writing_.end(),
                      [](bool w) { return w; });
}

Status PartitionedStore::OpenViews() {
  if (!views_.empty()) return Status::Ok();
  if (path_ == ":memory:") {
    return Status(ErrorCode::kStorage,
                  "an in-memory database cannot be read from other "
                  "connections");
  }
  StoreOptions reading = options_;
  reading.read_only = true;
  reading.partitions = 0;
  std::vector<std::unique_ptr<Partition>> views;
  for (size_t p = 0; p < parts_.size(); ++p) {
    Result<std::unique_ptr<SqliteStore>> reader =
        SqliteStore::Open(path_, reading);
    if (!reader.ok()) return reader.status();
    views.push_back(
        std::make_unique<Partition>(*this, *parts_[p], std::move(*reader)));
  }
  views_ = std::move(views);
  return Status::Ok();
}

Store& PartitionedStore::View(int p) { return *views_[static_cast<size_t>(p)]; }

Status PartitionedStore::PrepareParallel(
    const std::vector<int64_t>& recipients) {
  for (auto& view : views_) {
    if (view->deletions_seen != deletions_) {
      view->ForgetAccounts();
      view->deletions_seen = deletions_;
    }
  }
  queued_.clear();
  for (int64_t r : recipients) {
    if (queued_.count(r)) continue;
    Result<int64_t> n = CountPending(r);
    if (!n.ok()) return n.status();
    queued_.try_emplace(r, *n);
  }
  return Status::Ok();
}

int PartitionedStore::AccountPartition(int64_t account_id, int partitions) {
  // Account ids are handed out in order, and a workload may well use every
  // other one (senders and recipients created in pairs): the id is mixed
  // first (splitmix64's finalizer), which spreads any such pattern. Fixed
  // for good: it places stored data.
  uint64_t z = static_cast<uint64_t>(account_id) + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<int>(z % static_cast<uint64_t>(partitions));
}

int PartitionedStore::MessagePartition(int64_t message_id, int partitions) {
  // Ids are handed out so (SqliteStore::UseIdSpace); 0 and below: none.
  if (message_id <= 0) return 0;
  return static_cast<int>(message_id % partitions);
}

size_t PartitionedStore::OfAccount(int64_t id) const {
  return static_cast<size_t>(AccountPartition(id, partitions()));
}

size_t PartitionedStore::OfMessage(int64_t id) const {
  return static_cast<size_t>(MessagePartition(id, partitions()));
}

SqliteStore* PartitionedStore::Writing(size_t p, Status* status) {
  // Outside Begin/Commit nothing is begun: the partition refuses the write
  // itself, as SqliteStore does.
  if (open_ && !writing_[p]) {
    if (Status s = parts_[p]->Begin(); !s.ok()) {
      *status = s;
      return nullptr;
    }
    writing_[p] = true;
  }
  return parts_[p].get();
}

Status PartitionedStore::Begin() {
  if (open_) {
    return Status(ErrorCode::kStorage,
                  "cannot start a transaction within a transaction");
  }
  open_ = true;
  std::fill(writing_.begin(), writing_.end(), false);
  return Status::Ok();
}

Status PartitionedStore::Commit() {
  if (!open_) {
    return Status(ErrorCode::kStorage,
                  "cannot commit - no transaction is active");
  }
  open_ = false;
  // Partition 0 (accounts) last: see the top of partitioned_store.h.
  const size_t n = parts_.size();
  for (size_t i = 1; i <= n; ++i) {
    const size_t p = i % n;
    if (!writing_[p]) continue;
    writing_[p] = false;
    if (Status s = parts_[p]->Commit(); !s.ok()) {
      for (size_t q = 0; q < n; ++q) {
        if (writing_[q]) parts_[q]->Rollback();
        writing_[q] = false;
      }
      return s;
    }
  }
  return Status::Ok();
}

void PartitionedStore::Rollback() {
  for (size_t p = 0; p < parts_.size(); ++p) {
    if (writing_[p]) parts_[p]->Rollback();
    writing_[p] = false;
  }
  open_ = false;
}

bool PartitionedStore::InTransaction() const {
  if (!open_) return false;
  for (size_t p = 0; p < parts_.size(); ++p) {
    if (writing_[p] && !parts_[p]->InTransaction()) return false;
  }
  return true;
}

int64_t PartitionedStore::TotalChanges() const {
  int64_t total = 0;
  for (const auto& part : parts_) total += part->TotalChanges();
  return total;
}

// --- Accounts and tokens: partition 0 ---

Result<int64_t> PartitionedStore::CreateAccount(std::string_view name,
                                                std::string_view key,
                                                std::string_view password_hash,
                                                int64_t now_ms) {
  Status s;
  SqliteStore* store = Writing(0, &s);
  if (!store) return s;
  return store->CreateAccount(name, key, password_hash, now_ms);
}

Result<std::optional<Account>> PartitionedStore::FindAccount(
    std::string_view key) {
  return parts_[0]->FindAccount(key);
}

Result<std::optional<int64_t>> PartitionedStore::FindAccountId(
    std::string_view key) {
  return parts_[0]->FindAccountId(key);
}

Result<std::optional<Account>> PartitionedStore::FindAccountById(int64_t id) {
  return parts_[0]->FindAccountById(id);
}

Result<std::vector<QueuedMessage>> PartitionedStore::DeleteAccount(int64_t id) {
  // Every partition may hold messages to the account; its own holds its
  // sends and notices, partition 0 the account and its tokens.
  ++deletions_;
  std::vector<QueuedMessage> purged;
  for (size_t p = 0; p < parts_.size(); ++p) {
    Status s;
    SqliteStore* store = Writing(p, &s);
    if (!store) return s;
    Result<std::vector<QueuedMessage>> some = store->DeleteAccount(id);
    if (!some.ok()) return some.status();
    std::move(some->begin(), some->end(), std::back_inserter(purged));
  }
  SortById(purged);
  return purged;
}

Result<std::string> PartitionedStore::ScanAccounts(
    std::string_view prefix, std::string_view after, int64_t max_rows,
    const std::function<bool(std::string_view, std::string_view)>& visit) {
  return parts_[0]->ScanAccounts(prefix, after, max_rows, visit);
}

Status PartitionedStore::AddToken(std::string_view token_hash,
                                  int64_t account_id, int64_t now_ms) {
  Status s;
  SqliteStore* store = Writing(0, &s);
  if (!store) return s;
  return store->AddToken(token_hash, account_id, now_ms);
}

Result<std::optional<int64_t>> PartitionedStore::FindToken(
    std::string_view token_hash, int64_t not_before_ms) {
  return parts_[0]->FindToken(token_hash, not_before_ms);
}

Status PartitionedStore::RevokeToken(std::string_view token_hash) {
  Status s;
  SqliteStore* store = Writing(0, &s);
  if (!store) return s;
  return store->RevokeToken(token_hash);
}

// --- Messages: the sender's partition; a queue spans them all ---

Result<std::optional<int64_t>> PartitionedStore::FindSend(
    int64_t sender_id, uint64_t client_msg_id) {
  return parts_[OfAccount(sender_id)]->FindSend(sender_id, client_msg_id);
}

Result<int64_t> PartitionedStore::Enqueue(const QueuedMessage& message) {
  Status s;
  SqliteStore* store = Writing(OfAccount(message.sender_id), &s);
  if (!store) return s;
  return store->Enqueue(message);
}

Result<int64_t> PartitionedStore::CountPending(int64_t recipient_id) {
  int64_t total = 0;
  for (auto& part : parts_) {
    Result<int64_t> n = part->CountPending(recipient_id);
    if (!n.ok()) return n.status();
    total += *n;
  }
  return total;
}

Result<std::vector<QueuedMessage>> PartitionedStore::FetchPending(
    int64_t recipient_id, int64_t limit) {
  std::vector<QueuedMessage> all;
  for (auto& part : parts_) {
    Result<std::vector<QueuedMessage>> some =
        part->FetchPending(recipient_id, limit);
    if (!some.ok()) return some.status();
    std::move(some->begin(), some->end(), std::back_inserter(all));
  }
  SortById(all);
  if (limit >= 0 && all.size() > static_cast<size_t>(limit)) {
    all.resize(static_cast<size_t>(limit));
  }
  return all;
}

Result<ReceiptResult> PartitionedStore::ConfirmDelivery(int64_t recipient_id,
                                                        int64_t message_id) {
  Status s;
  SqliteStore* store = Writing(OfMessage(message_id), &s);
  if (!store) return s;
  return store->ConfirmDelivery(recipient_id, message_id);
}

// --- Notices: the sender's partition, where its messages are ---

Status PartitionedStore::AddNotice(int64_t account_id, const Notice& notice,
                                   int64_t cap) {
  Status s;
  SqliteStore* store = Writing(OfAccount(account_id), &s);
  if (!store) return s;
  return store->AddNotice(account_id, notice, cap);
}

Result<int64_t> PartitionedStore::CountNotices(int64_t account_id) {
  return parts_[OfAccount(account_id)]->CountNotices(account_id);
}

Result<std::vector<Notice>> PartitionedStore::ListNotices(int64_t account_id,
                                                          int64_t limit) {
  return parts_[OfAccount(account_id)]->ListNotices(account_id, limit);
}

Status PartitionedStore::AckNotice(int64_t account_id, int64_t message_id) {
  Status s;
  SqliteStore* store = Writing(OfAccount(account_id), &s);
  if (!store) return s;
  return store->AckNotice(account_id, message_id);
}

// --- The whole store ---

Result<StoreTotals> PartitionedStore::Totals() {
  StoreTotals sum;
  for (auto& part : parts_) {
    Result<StoreTotals> t = part->Totals();
    if (!t.ok()) return t.status();
    sum.accounts += t->accounts;
    sum.queued_messages += t->queued_messages;
    sum.notices += t->notices;
  }
  return sum;
}

Status PartitionedStore::Prune(int64_t sends_before_ms,
                               int64_t tokens_before_ms) {
  for (int p = 0; p < partitions(); ++p) {
    if (Status s = PrunePartition(p, sends_before_ms, tokens_before_ms);
        !s.ok()) {
      return s;
    }
  }
  return Status::Ok();
}

Status PartitionedStore::PrunePartition(int p, int64_t sends_before_ms,
                                        int64_t tokens_before_ms) {
  Status s;
  SqliteStore* store = Writing(static_cast<size_t>(p), &s);
  if (!store) return s;
  return store->Prune(sends_before_ms, tokens_before_ms);
}

}  // namespace zchat
