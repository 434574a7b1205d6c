// PartitionedStore (partitioned_store.h): where each part of the data lives,
// how a queue spread over partitions reads, and what opening a database
// with partitions accepts and refuses. The whole Store contract runs over
// it too (store_contract_test, "partitioned"), and the handler tests
// (broker_test_partitioned).
#include "broker/partitioned_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <filesystem>
#include <string>
#include <vector>

#include "tests/support/sqlite_rows.h"
#include "tests/support/temp_dir.h"

namespace zchat {
namespace {

namespace fs = std::filesystem;
using testing::RawBatchRecords;
using testing::RawCount;
using testing::RawRunRecords;
using testing::RawStoredNotices;
using testing::TempDir;

class PartitionedStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(3); }

  void Open(int partitions) {
    store_.reset();
    StoreOptions options;
    options.partitions = partitions;
    auto opened = Store::Open(path_, options);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    store_ = std::move(*opened);
  }
  Status TryOpen(int partitions) {
    store_.reset();
    StoreOptions options;
    options.partitions = partitions;
    auto opened = Store::Open(path_, options);
    if (opened.ok()) store_ = std::move(*opened);
    return opened.ok() ? Status::Ok() : opened.status();
  }
  std::string Part(int p) const {
    return PartitionedStore::PartitionPath(path_, p);
  }
  void Begin() { ASSERT_TRUE(store_->Begin().ok()); }
  void Commit() { ASSERT_TRUE(store_->Commit().ok()); }
  int64_t Create(const std::string& name) {
    Result<int64_t> id = store_->CreateAccount(name, name, "hash", 1);
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    return id.ok() ? *id : 0;
  }
  int64_t Send(int64_t from, int64_t to, uint64_t client_msg_id,
               const std::string& body) {
    QueuedMessage m;
    m.sender_id = from;
    m.sender_name = "s" + std::to_string(from);
    m.recipient_id = to;
    m.recipient_name = "r";
    m.client_msg_id = client_msg_id;
    m.body = body;
    m.sent_at_ms = 1;
    Result<int64_t> id = store_->Enqueue(m);
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    return id.ok() ? *id : 0;
  }

  TempDir dir_;
  std::string path_ = dir_.File("zchat.db");
  std::unique_ptr<Store> store_;
};

TEST_F(PartitionedStoreTest, AMessageLivesInItsSendersPartition) {
  Begin();
  const int64_t a = Create("a"), b = Create("b"), c = Create("c");
  const int64_t to = Create("to");
  std::vector<int64_t> ids;
  for (int64_t from : {a, b, c}) ids.push_back(Send(from, to, 1, "héllo ✉"));
  Commit();
  for (size_t i = 0; i < ids.size(); ++i) {
    const int64_t from = std::vector<int64_t>{a, b, c}[i];
    EXPECT_EQ(ids[i] % 3, PartitionedStore::AccountPartition(from, 3))
        << "message " << ids[i];
  }
  // Accounts only in partition 0; each message with its dedup record in its
  // sender's partition.
  EXPECT_EQ(RawCount(Part(0), "accounts"), 4);
  EXPECT_EQ(RawCount(Part(1), "accounts"), 0);
  int in_partition[3] = {0, 0, 0};
  for (int64_t from : {a, b, c}) {
    ++in_partition[PartitionedStore::AccountPartition(from, 3)];
  }
  for (int p = 0; p < 3; ++p) {
    EXPECT_EQ(RawCount(Part(p), "messages"), in_partition[p])
        << "partition " << p;
    // (A record waits in a batch until a merge moves it to a run.)
    EXPECT_EQ(RawRunRecords(Part(p)) +
                  static_cast<int64_t>(RawBatchRecords(Part(p)).size()),
              in_partition[p])
        << "partition " << p;
  }
  // The first three accounts happen to land in three partitions: the test
  // covers all of them.
  EXPECT_EQ(in_partition[0] * in_partition[1] * in_partition[2], 1);
}

TEST_F(PartitionedStoreTest, AQueueSpreadOverPartitionsReadsInIdOrder) {
  Begin();
  const int64_t to = Create("to");
  const std::vector<int64_t> senders = {Create("x"), Create("y"), Create("z")};
  std::vector<int64_t> sent;
  const std::vector<std::string> bodies = {"مرحبا", "日本語", "🎉", "Ünïcödé"};
  for (int round = 0; round < 4; ++round) {
    for (int64_t from : senders) {
      sent.push_back(Send(from, to, static_cast<uint64_t>(round + 1),
                          bodies[static_cast<size_t>(round)]));
    }
  }
  Commit();
  Result<int64_t> count = store_->CountPending(to);
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, 12);
  Result<std::vector<QueuedMessage>> page = store_->FetchPending(to, 5);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->size(), 5u);
  for (size_t i = 1; i < page->size(); ++i) {
    EXPECT_LT((*page)[i - 1].id, (*page)[i].id);
  }
  Result<std::vector<QueuedMessage>> all = store_->FetchPending(to, 100);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 12u);
  // Each sender's messages come in the order they were sent.
  for (int64_t from : senders) {
    uint64_t last = 0;
    for (const QueuedMessage& m : *all) {
      if (m.sender_id != from) continue;
      EXPECT_GT(m.client_msg_id, last);
      EXPECT_EQ(m.body, bodies[m.client_msg_id - 1]);
      last = m.client_msg_id;
    }
    EXPECT_EQ(last, 4u);
  }
}

TEST_F(PartitionedStoreTest, AReceiptAndItsNoticeWriteOnePartition) {
  Begin();
  const int64_t from = Create("from"), to = Create("to");
  const int64_t id = Send(from, to, 7, "שלום");
  Commit();
  const auto notices = [&](int p) { return RawStoredNotices(Part(p)); };
  Begin();
  Result<ReceiptResult> r = store_->ConfirmDelivery(to, id);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->outcome, ReceiptOutcome::kConfirmed);
  ASSERT_TRUE(
      store_->AddNotice(from, Notice{NoticeKind::kDelivered, id, "to", 7}, 10)
          .ok());
  Commit();
  for (int p = 0; p < 3; ++p) {
    EXPECT_EQ(notices(p),
              p == PartitionedStore::AccountPartition(from, 3) ? 1 : 0)
        << "partition " << p;
  }
  // The receipt of a message another account holds, and of an id never
  // handed out, answer as on one file.
  Begin();
  Result<ReceiptResult> again = store_->ConfirmDelivery(to, id);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->outcome, ReceiptOutcome::kAlreadyConfirmed);
  Result<ReceiptResult> unknown = store_->ConfirmDelivery(to, id + 3000000);
  ASSERT_TRUE(unknown.ok());
  EXPECT_EQ(unknown->outcome, ReceiptOutcome::kUnknown);
  Commit();
}

TEST_F(PartitionedStoreTest, DeletingAnAccountPurgesItsQueueInEveryPartition) {
  Begin();
  const int64_t to = Create("to");
  const int64_t a = Create("a"), b = Create("b");
  const int64_t first = Send(a, to, 1, "1");
  const int64_t second = Send(b, to, 1, "2");
  Send(to, a, 1, "stays with a");
  Commit();
  Begin();
  Result<std::vector<QueuedMessage>> purged = store_->DeleteAccount(to);
  ASSERT_TRUE(purged.ok());
  Commit();
  ASSERT_EQ(purged->size(), 2u);
  EXPECT_EQ((*purged)[0].id, std::min(first, second));
  EXPECT_EQ((*purged)[1].id, std::max(first, second));
  Result<StoreTotals> totals = store_->Totals();
  ASSERT_TRUE(totals.ok());
  EXPECT_EQ(totals->accounts, 2);
  EXPECT_EQ(totals->queued_messages, 1);  // the deleted account's own send
  Result<std::optional<Account>> gone = store_->FindAccount("to");
  ASSERT_TRUE(gone.ok());
  EXPECT_FALSE(gone->has_value());
}

TEST_F(PartitionedStoreTest, ARolledBackBatchLeavesNoPartitionWritten) {
  Begin();
  const int64_t a = Create("a"), b = Create("b"), c = Create("c");
  Commit();
  Begin();
  Send(a, c, 1, "x");
  Send(b, c, 1, "y");
  EXPECT_TRUE(store_->InTransaction());
  store_->Rollback();
  EXPECT_FALSE(store_->InTransaction());
  Result<int64_t> n = store_->CountPending(c);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 0);
  // Writes outside a transaction are refused, as on one file.
  EXPECT_FALSE(store_->CreateAccount("d", "d", "h", 1).ok());
}

TEST_F(PartitionedStoreTest, ReopensAsCreatedAndRefusesAnotherCount) {
  Begin();
  const int64_t a = Create("a"), b = Create("b");
  Send(a, b, 1, "kept ✓");
  Commit();
  Open(0);  // as created
  Result<int64_t> n = store_->CountPending(b);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 1);
  Status other = TryOpen(2);
  EXPECT_FALSE(other.ok());
  EXPECT_NE(other.detail().find("created with 3 partitions"), std::string::npos)
      << other.detail();
  // A read-only store (the metrics server's) sees every partition.
  StoreOptions read_only;
  read_only.read_only = true;
  auto reader = Store::Open(path_, read_only);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  Result<StoreTotals> totals = (*reader)->Totals();
  ASSERT_TRUE(totals.ok());
  EXPECT_EQ(totals->accounts, 2);
  EXPECT_EQ(totals->queued_messages, 1);
}

TEST_F(PartitionedStoreTest, RefusesAMissingPartitionFile) {
  Begin();
  const int64_t a = Create("a"), b = Create("b");
  Send(b, a, 1, "in partition 2");
  Commit();
  store_.reset();
  fs::remove(Part(2));
  Status s = TryOpen(0);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.detail().find("missing"), std::string::npos) << s.detail();
}

TEST(PartitionedStoreOpenTest, AOneFileDatabaseWithDataCannotBePartitioned) {
  TempDir dir;
  const std::string path = dir.File("one.db");
  {
    auto store = Store::Open(path, StoreOptions{});
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Begin().ok());
    ASSERT_TRUE((*store)->CreateAccount("a", "a", "h", 1).ok());
    ASSERT_TRUE((*store)->Commit().ok());
  }
  StoreOptions three;
  three.partitions = 3;
  auto refused = Store::Open(path, three);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().detail().find("created with one partition"),
            std::string::npos)
      << refused.status().detail();
  EXPECT_FALSE(fs::exists(PartitionedStore::PartitionPath(path, 1)));
  // Opened as it was created, it is still one file.
  auto again = Store::Open(path, StoreOptions{});
  ASSERT_TRUE(again.ok());
  Result<std::optional<Account>> a = (*again)->FindAccount("a");
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(a->has_value());
}

TEST(PartitionedStoreOpenTest, PartitionsAreForSqliteOnly) {
  StoreOptions two;
  two.partitions = 2;
  // Refused before any connection is tried.
  auto refused = Store::Open("postgresql://127.0.0.1:1/none", two);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().detail().find("partitions are for SQLite"),
            std::string::npos)
      << refused.status().detail();
}

}  // namespace
}  // namespace zchat
