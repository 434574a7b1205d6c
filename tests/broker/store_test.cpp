// Store: transactions, the caches it owns, ids, and opening databases
// (migration, newer schemas, files that are not databases).
#include "broker/store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "broker/sqlite_store.h"
#include "tests/support/sqlite_rows.h"
#include "tests/support/temp_dir.h"

namespace zchat {
namespace {

namespace fs = std::filesystem;
using testing::RawBatchRecords;
using testing::RawCount;
using testing::RawRunRecords;
using testing::RawStoredNotices;
using testing::RawValue;
using testing::TempDir;

std::string ReadWhole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Runs `sql` on the file at `path` with SQLite directly (not the store).
void RawExec(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  std::string message = err ? err : "";
  sqlite3_free(err);
  sqlite3_close(db);
  ASSERT_EQ(rc, SQLITE_OK) << message;
}

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  void Reopen(StoreOptions options = {}) {
    store_.reset();
    auto opened = Store::Open(path_, options);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    store_ = std::move(*opened);
  }
  void Begin() { ASSERT_TRUE(store_->Begin().ok()); }
  void Commit() { ASSERT_TRUE(store_->Commit().ok()); }
  // Puts a copy of tests/data/db/`name` (a database an older broker wrote)
  // where the store's file is, the store closed.
  void CopyFixture(const std::string& name) {
    store_.reset();
    const fs::path source = fs::path(ZCHAT_SOURCE_DIR) / "tests/data/db" / name;
    ASSERT_TRUE(fs::exists(source)) << source;
    fs::copy_file(source, path_, fs::copy_options::overwrite_existing);
    fs::permissions(path_, fs::perms::owner_read | fs::perms::owner_write);
  }
  // Runs `sql` on the file with SQLite directly, the store closed, then
  // opens the store again.
  void RawWrite(const std::string& sql) {
    store_.reset();
    RawExec(path_, sql);
    Reopen();
  }
  // A storage error that says a stored blob is damaged.
  static void ExpectDamaged(const Status& s) {
    EXPECT_EQ(s.code(), ErrorCode::kStorage) << s.ToString();
    EXPECT_NE(s.detail().find("damaged"), std::string::npos) << s.ToString();
  }
  // Moves the committed dedup records into runs (Prune merges them first),
  // pruning nothing.
  void Merge() {
    Begin();
    ASSERT_TRUE(store_->Prune(0, 0).ok());
    Commit();
  }

  // In the open transaction.
  int64_t Create(const std::string& name) {
    Result<int64_t> id = store_->CreateAccount(name, name, "hash-" + name, 1);
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    return id.ok() ? *id : 0;
  }
  int64_t Enqueue(int64_t from, int64_t to, uint64_t client_msg_id,
                  int64_t sent_at_ms = 1) {
    QueuedMessage m;
    m.sender_id = from;
    m.sender_name = "sender";
    m.recipient_id = to;
    m.recipient_name = "recipient";
    m.client_msg_id = client_msg_id;
    m.body = "body";
    m.sent_at_ms = sent_at_ms;
    Result<int64_t> id = store_->Enqueue(m);
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    return id.ok() ? *id : 0;
  }
  // A message from alice (`from`) to bob (`to`) of about `bytes` bytes of
  // text in several scripts, for the tests that need many pages.
  static QueuedMessage Long(int64_t from, int64_t to, size_t bytes) {
    QueuedMessage m;
    m.sender_id = from;
    m.sender_name = "alice";
    m.recipient_id = to;
    m.recipient_name = "bob";
    while (m.body.size() < bytes) {
      m.body += "h\xc3\xa9llo \xe4\xb8\x96 \xf0\x9f\x8c\x8d \xd7\xa9 ";
    }
    return m;
  }
  int64_t Pending(int64_t account) {
    Result<int64_t> n = store_->CountPending(account);
    EXPECT_TRUE(n.ok()) << n.status().ToString();
    return n.ok() ? *n : -1;
  }
  // The queue as the database has it (FetchPending is not cached).
  int64_t Queued(int64_t account) {
    auto rows = store_->FetchPending(account, 1000);
    EXPECT_TRUE(rows.ok()) << rows.status().ToString();
    return rows.ok() ? static_cast<int64_t>(rows->size()) : -1;
  }
  bool Exists(const std::string& key) {
    auto found = store_->FindAccount(key);
    EXPECT_TRUE(found.ok()) << found.status().ToString();
    return found.ok() && found->has_value();
  }
  ReceiptOutcome Confirm(int64_t recipient, int64_t message) {
    auto r = store_->ConfirmDelivery(recipient, message);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? r->outcome : ReceiptOutcome::kUnknown;
  }

  // Sends `ids` from `from` to itself in one transaction, then merges the
  // dedup records into runs; `sent` gets each id's message id.
  void SendAndMerge(int64_t from, const std::vector<int64_t>& ids,
                    std::map<int64_t, int64_t>& sent) {
    Begin();
    for (int64_t id : ids) {
      sent[id] = Enqueue(from, from, static_cast<uint64_t>(id));
    }
    Commit();
    Merge();
  }
  // Every id of `sent` is found as a retry of its message, and the runs'
  // ranges do not overlap.
  void ExpectRunsHold(int64_t from, const std::map<int64_t, int64_t>& sent) {
    for (const auto& [id, message_id] : sent) {
      auto f = store_->FindSend(from, static_cast<uint64_t>(id));
      ASSERT_TRUE(f.ok() && f->has_value()) << id;
      EXPECT_EQ(**f, message_id) << id;
    }
    EXPECT_EQ(RawRunRecords(path_), static_cast<int64_t>(sent.size()));
    EXPECT_EQ(
        RawValue(path_,
                 "SELECT count(*) FROM send_runs r JOIN send_runs s "
                 "ON r.sender_id = s.sender_id AND r.first_id < s.first_id "
                 "AND r.last_id >= s.first_id"),
        0)
        << "overlapping runs";
  }

  TempDir dir_;
  const std::string path_ = dir_.File("store.db");
  std::unique_ptr<Store> store_;
};

// --- Transactions ------------------------------------------------------------

TEST_F(StoreTest, NoticesStayUntilAcknowledged) {
  Begin();
  int64_t alice = Create("alice");
  int64_t bob = Create("bob");
  for (int64_t m : {7, 3, 5}) {
    Status added = store_->AddNotice(
        alice, Notice{NoticeKind::kDelivered, m, "bob", uint64_t(m) + 40}, 10);
    ASSERT_TRUE(added.ok()) << added.ToString();
  }
  // A second notice for one message is ignored.
  ASSERT_TRUE(store_
                  ->AddNotice(alice,
                              Notice{NoticeKind::kUndeliverable, 5, "bob", 45},
                              10)
                  .ok());
  Commit();

  Status ack = store_->AckNotice(alice, 3);
  ASSERT_FALSE(ack.ok()) << "a write outside a transaction";
  EXPECT_EQ(ack.code(), ErrorCode::kStorage);

  auto listed = store_->ListNotices(alice, 10);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 3u);
  EXPECT_EQ((*listed)[0].message_id, 3);  // oldest message first
  EXPECT_EQ((*listed)[1].message_id, 5);
  EXPECT_EQ((*listed)[1].kind, NoticeKind::kDelivered);
  EXPECT_EQ((*listed)[2].message_id, 7);
  EXPECT_EQ((*listed)[2].client_msg_id, 47u);
  EXPECT_EQ((*listed)[2].peer_name, "bob");
  EXPECT_EQ(*store_->CountNotices(alice), 3);

  Begin();
  ASSERT_TRUE(store_->AckNotice(alice, 3).ok());
  EXPECT_EQ(*store_->CountNotices(alice), 2);
  EXPECT_TRUE(store_->AckNotice(alice, 3).ok()) << "already acknowledged";
  EXPECT_TRUE(store_->AckNotice(bob, 5).ok()) << "not bob's";
  EXPECT_EQ(*store_->CountNotices(alice), 2);
  EXPECT_EQ(*store_->CountNotices(bob), 0);
  Commit();
  Reopen();
  EXPECT_EQ(*store_->CountNotices(alice), 2);
  listed = store_->ListNotices(alice, 1);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].message_id, 5);
}

TEST_F(StoreTest, NoticesOverTheCapDropTheOldest) {
  Begin();
  int64_t alice = Create("alice");
  for (int64_t m = 1; m <= 4; ++m) {
    ASSERT_TRUE(
        store_->AddNotice(alice, Notice{NoticeKind::kDelivered, m, "b", 1}, 4)
            .ok());
  }
  EXPECT_EQ(*store_->CountNotices(alice), 4);
  ASSERT_TRUE(
      store_->AddNotice(alice, Notice{NoticeKind::kDelivered, 9, "b", 1}, 4)
          .ok());
  EXPECT_EQ(*store_->CountNotices(alice), 4);
  Commit();
  auto listed = store_->ListNotices(alice, 10);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 4u);
  EXPECT_EQ((*listed)[0].message_id, 2);
  EXPECT_EQ((*listed)[3].message_id, 9);
}

// A notice added again for the same message is the one already there, below
// the cap and at it: nothing counted twice, nothing older dropped for it.
TEST_F(StoreTest, ANoticeAddedAgainChangesNothing) {
  Begin();
  const int64_t alice = Create("alice");
  auto add = [&](int64_t message, NoticeKind kind, const char* peer) {
    ASSERT_TRUE(
        store_->AddNotice(alice, Notice{kind, message, peer, 1}, 3).ok());
  };
  add(1, NoticeKind::kDelivered,
      "b\xc3\xa9"
      "b");
  add(1, NoticeKind::kUndeliverable, "\xe5\xb0\x8f\xe6\x98\x8e");
  EXPECT_EQ(*store_->CountNotices(alice), 1);
  add(2, NoticeKind::kDelivered, "\xd7\xa9\xd7\xa8\xd7\x94");
  add(3, NoticeKind::kDelivered, "\xf0\x9f\x98\x80");
  EXPECT_EQ(*store_->CountNotices(alice), 3);  // the cap
  add(2, NoticeKind::kUndeliverable, "x");
  EXPECT_EQ(*store_->CountNotices(alice), 3);
  Commit();
  auto listed = store_->ListNotices(alice, 10);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 3u);
  EXPECT_EQ((*listed)[0].message_id, 1);
  EXPECT_EQ((*listed)[0].kind, NoticeKind::kDelivered);
  EXPECT_EQ((*listed)[0].peer_name,
            "b\xc3\xa9"
            "b");
  EXPECT_EQ((*listed)[1].message_id, 2);
  EXPECT_EQ((*listed)[1].kind, NoticeKind::kDelivered);
}

TEST_F(StoreTest, RollbackDropsNoticeCounts) {
  Begin();
  int64_t alice = Create("alice");
  Commit();
  EXPECT_EQ(*store_->CountNotices(alice), 0);
  Begin();
  ASSERT_TRUE(
      store_->AddNotice(alice, Notice{NoticeKind::kDelivered, 1, "b", 1}, 10)
          .ok());
  EXPECT_EQ(*store_->CountNotices(alice), 1);
  store_->Rollback();
  EXPECT_EQ(*store_->CountNotices(alice), 0);
}

// A receipt for a message the store queued or fetched deletes it by its key
// from what the store remembers; the answers are the same as when the row
// is read first (after a reopen), and a row purged meanwhile is noticed.
TEST_F(StoreTest, ReceiptsAnswerTheSameFromMemoryAndFromTheRow) {
  Begin();
  const int64_t a = Create("alice"), b = Create("bob"), c = Create("carol");
  const int64_t kept = Enqueue(a, b, 11);    // confirmed after a reopen
  const int64_t cached = Enqueue(a, b, 12);  // confirmed from memory
  const int64_t purged = Enqueue(a, c, 13);  // purged, then confirmed
  Commit();

  auto expect_confirmed = [&](int64_t recipient, int64_t id, uint64_t cid,
                              const char* recipient_name) {
    Result<ReceiptResult> r = store_->ConfirmDelivery(recipient, id);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->outcome, ReceiptOutcome::kConfirmed);
    EXPECT_EQ(r->message.id, id);
    EXPECT_EQ(r->message.sender_id, a);
    EXPECT_EQ(r->message.sender_name, "sender");
    EXPECT_EQ(r->message.recipient_id, recipient);
    EXPECT_EQ(r->message.recipient_name, recipient_name);
    EXPECT_EQ(r->message.client_msg_id, cid);
  };
  Begin();
  EXPECT_EQ(Confirm(c, cached), ReceiptOutcome::kNotYours);
  expect_confirmed(b, cached, 12, "recipient");
  EXPECT_EQ(Confirm(b, cached), ReceiptOutcome::kAlreadyConfirmed);
  EXPECT_EQ(Pending(b), 1);
  // c's queue goes with c's forced deletion while the store still
  // remembers handing the message out.
  ASSERT_TRUE(store_->DeleteAccount(c).ok());
  EXPECT_EQ(Confirm(c, purged), ReceiptOutcome::kAlreadyConfirmed);
  Commit();

  Reopen();  // nothing remembered: the row is read
  Begin();
  EXPECT_EQ(Confirm(c, kept), ReceiptOutcome::kNotYours);
  expect_confirmed(b, kept, 11, "recipient");
  EXPECT_EQ(Confirm(b, kept), ReceiptOutcome::kAlreadyConfirmed);
  Commit();
  EXPECT_EQ(Pending(b), 0);
  EXPECT_EQ(Queued(b), 0);
}

// Receipts of rows the store knows are in the queue delete them together,
// at the commit or before the queue is next read: whatever reads it in the
// same transaction sees them gone, a rollback keeps them, and the store
// counts each receipt as a change at once (the batch relies on that).
TEST_F(StoreTest, ConfirmedRowsGoTogetherAndAreGoneForEveryRead) {
  Begin();
  const int64_t a = Create("alice"), b = Create("bob"), c = Create("carol");
  std::vector<int64_t> to_b, to_c;
  for (uint64_t i = 1; i <= 150; ++i) to_b.push_back(Enqueue(a, b, i));
  for (uint64_t i = 151; i <= 180; ++i) to_c.push_back(Enqueue(a, c, i));
  Commit();
  // b's odd-numbered messages (75: a chunk of 64 and the rest), and a
  // third of c's.
  auto confirm_some = [&] {
    for (size_t i = 0; i < to_b.size(); i += 2) {
      const int64_t before = store_->TotalChanges();
      ASSERT_EQ(Confirm(b, to_b[i]), ReceiptOutcome::kConfirmed);
      EXPECT_NE(store_->TotalChanges(), before);
    }
    for (size_t i = 0; i < 10; ++i) {
      ASSERT_EQ(Confirm(c, to_c[i]), ReceiptOutcome::kConfirmed);
    }
  };

  Begin();
  confirm_some();
  store_->Rollback();
  EXPECT_EQ(RawCount(path_, "messages"), 180) << "the rollback keeps them";

  Begin();
  confirm_some();
  // Read in the same transaction: the queue without them.
  auto queue = store_->FetchPending(b, 1000);
  ASSERT_TRUE(queue.ok()) << queue.status().ToString();
  ASSERT_EQ(queue->size(), 75u);
  for (size_t i = 0; i < queue->size(); ++i) {
    EXPECT_EQ((*queue)[i].id, to_b[2 * i + 1]);
  }
  EXPECT_EQ(Confirm(b, to_b[0]), ReceiptOutcome::kAlreadyConfirmed);
  Result<std::vector<QueuedMessage>> purged = store_->DeleteAccount(c);
  ASSERT_TRUE(purged.ok()) << purged.status().ToString();
  ASSERT_EQ(purged->size(), 20u) << "only carol's unconfirmed messages";
  EXPECT_EQ(purged->front().id, to_c[10]);
  Commit();
  EXPECT_EQ(RawCount(path_, "messages"), 75);
  Reopen();
  EXPECT_EQ(Pending(b), 75);
  EXPECT_EQ(Pending(c), 0);
}

// Rows for recipients who are away are written in groups, a statement
// each: a transaction's rows (two groups and a few more, to two
// recipients), every field and text in several scripts, each one read back
// as sent; those confirmed in the same transaction before any read go; a
// rolled-back transaction's waiting rows are never written.
TEST_F(StoreTest, QueuedRowsWrittenInGroupsReadBackWhole) {
  Begin();
  const int64_t a = Create("a"), b = Create("b");
  Commit();
  const std::vector<std::string> texts = {"héllo", "世界", "🌍 ok", "שלום עולם",
                                          ""};
  std::map<int64_t, QueuedMessage> kept;
  std::vector<std::pair<int64_t, int64_t>> confirm;  // recipient, id
  Begin();
  for (uint64_t i = 1; i <= 70; ++i) {
    QueuedMessage m;
    m.sender_id = a;
    m.sender_name = "Zoë " + texts[i % texts.size()];
    m.recipient_id = i % 3 ? b : a;
    m.recipient_name = "Ⓑ " + texts[(i + 1) % texts.size()];
    m.client_msg_id = i;
    m.body = texts[i % texts.size()] + " #" + std::to_string(i);
    m.sent_at_ms = 1000 + static_cast<int64_t>(i);
    Result<int64_t> id = store_->Enqueue(m);
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    m.id = *id;
    if (i % 10 == 4) {
      confirm.emplace_back(m.recipient_id, m.id);
    } else {
      kept[m.id] = m;
    }
  }
  for (const auto& [recipient, id] : confirm) {
    Result<ReceiptResult> r = store_->ConfirmDelivery(recipient, id);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->outcome, ReceiptOutcome::kConfirmed) << id;
  }
  Commit();
  Begin();
  Enqueue(a, b, 500);  // waits, then is rolled back
  store_->Rollback();
  const auto check = [&](const std::string& when) {
    std::map<int64_t, QueuedMessage> read;
    for (int64_t r : {a, b}) {
      Result<std::vector<QueuedMessage>> got = store_->FetchPending(r, 1000);
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      for (const QueuedMessage& m : *got) read[m.id] = m;
    }
    ASSERT_EQ(read.size(), kept.size()) << when;
    for (const auto& [id, m] : kept) {
      const QueuedMessage& r = read[id];
      EXPECT_EQ(r.sender_id, m.sender_id) << id << ", " << when;
      EXPECT_EQ(r.sender_name, m.sender_name) << id << ", " << when;
      EXPECT_EQ(r.recipient_id, m.recipient_id) << id << ", " << when;
      EXPECT_EQ(r.recipient_name, m.recipient_name) << id << ", " << when;
      EXPECT_EQ(r.client_msg_id, m.client_msg_id) << id << ", " << when;
      EXPECT_EQ(r.body, m.body) << id << ", " << when;
      EXPECT_EQ(r.sent_at_ms, m.sent_at_ms) << id << ", " << when;
    }
  };
  check("committed");
  Reopen();
  check("after a restart");
  EXPECT_EQ(RawCount(path_, "messages"), static_cast<int64_t>(kept.size()));
}

// A recipient's confirmed rows that are next to each other in its queue go
// as one range; the range stops at every message left unconfirmed between
// them, whether it was queued in `messages` or logged (online), and at the
// end of what was read of the queue.
TEST_F(StoreTest, ConfirmedRunsStopAtEveryMessageLeftInTheQueue) {
  Begin();
  const int64_t a = Create("alice"), b = Create("bob"), c = Create("carol");
  std::vector<int64_t> to_b, to_c;
  // Two of bob's messages in the middle of a run came while he was online:
  // logged, not in `messages`.
  QueuedMessage online = Long(a, b, 10);
  online.recipient_online = true;
  Result<int64_t> logged_1 = 0, logged_2 = 0;
  for (uint64_t i = 1; i <= 300; ++i) {
    to_b.push_back(Enqueue(a, b, i));
    if (i % 3 == 0) to_c.push_back(Enqueue(a, c, 1000 + i));
    if (i == 120) {
      online.client_msg_id = 5000;
      logged_1 = store_->Enqueue(online);
      online.client_msg_id = 5001;
      logged_2 = store_->Enqueue(online);
    }
  }
  ASSERT_TRUE(logged_1.ok() && logged_2.ok());
  Commit();
  ASSERT_TRUE(store_->FetchPending(b, 1000).ok());
  ASSERT_TRUE(store_->FetchPending(c, 1000).ok());

  // Which of bob's to confirm, by index in to_b: runs of 100, 49 and 2,
  // single ones, and the last, far past what the read of the queue covers.
  std::vector<size_t> confirm;
  for (size_t i = 0; i < 100; ++i) confirm.push_back(i);
  for (size_t i = 101; i < 150; ++i) confirm.push_back(i);
  for (size_t i : {152, 154, 155, 157, 299}) confirm.push_back(i);
  Begin();
  const int64_t before = store_->TotalChanges();
  // Interleaved with carol's receipts (all of hers but the 20th), newest
  // first, so that the store sorts them.
  size_t next_c = to_c.size();
  for (size_t k = confirm.size(); k-- > 0;) {
    ASSERT_EQ(Confirm(b, to_b[confirm[k]]), ReceiptOutcome::kConfirmed);
    if (next_c > 0 && --next_c != 20) {
      ASSERT_EQ(Confirm(c, to_c[next_c]), ReceiptOutcome::kConfirmed);
    }
  }
  while (next_c > 0) {
    if (--next_c != 20) {
      ASSERT_EQ(Confirm(c, to_c[next_c]), ReceiptOutcome::kConfirmed);
    }
  }
  ASSERT_EQ(Confirm(b, *logged_1), ReceiptOutcome::kConfirmed);
  EXPECT_EQ(store_->TotalChanges() - before,
            static_cast<int64_t>(confirm.size() + to_c.size() - 1 + 1));
  Commit();

  std::vector<int64_t> left_b;
  for (size_t i = 0; i < to_b.size(); ++i) {
    if (std::find(confirm.begin(), confirm.end(), i) == confirm.end()) {
      left_b.push_back(to_b[i]);
    }
  }
  left_b.push_back(*logged_2);
  std::sort(left_b.begin(), left_b.end());
  for (int round = 0; round < 2; ++round) {
    auto queue_b = store_->FetchPending(b, 1000);
    ASSERT_TRUE(queue_b.ok()) << queue_b.status().ToString();
    std::vector<int64_t> ids_b;
    for (const QueuedMessage& m : *queue_b) ids_b.push_back(m.id);
    EXPECT_EQ(ids_b, left_b);
    auto queue_c = store_->FetchPending(c, 1000);
    ASSERT_TRUE(queue_c.ok()) << queue_c.status().ToString();
    ASSERT_EQ(queue_c->size(), 1u);
    EXPECT_EQ(queue_c->front().id, to_c[20]);
    Reopen();
  }
  // Bob's less the logged one, and carol's.
  EXPECT_EQ(RawCount(path_, "messages"), static_cast<int64_t>(left_b.size()));
}

// A recipient's fetch tells the store which of its rows of `messages` are
// next to each other; a message of the log carried into the table since,
// between two of them, is not part of that stretch any more.
// A confirmed message's text does not stay in the database file's pages
// that keep other rows (docs/semantics.md, "What stays on disk").
TEST_F(StoreTest, AConfirmedMessagesTextLeavesThePagesThatStay) {
  Begin();
  const int64_t a = Create("Jos\xc3\xa9"),
                b = Create("\xd7\xa0\xd7\x95\xd7\xa2\xd7\x94"),
                c = Create("\xe4\xbd\x90\xe8\x97\xa4");
  // Three messages to bob between three to carol, all on one page.
  const std::vector<std::string> to_b = {
      "\xe7\xa7\x98\xe5\xaf\x86 one \xf0\x9f\x94\x92 "
      "\xd8\xb4\xd9\x83\xd8\xb1\xd8\xa7",
      "\xe7\xa7\x98\xe5\xaf\x86 two \xf0\x9f\x94\x92 "
      "\xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d",
      "\xe7\xa7\x98\xe5\xaf\x86 three \xf0\x9f\x94\x92 Z\xc3\xbcrich"};
  const std::vector<std::string> to_c = {"carol keeps 1 \xe2\x9c\x93",
                                         "carol keeps 2 \xe2\x9c\x93",
                                         "carol keeps 3 \xe2\x9c\x93"};
  std::vector<int64_t> ids_b;
  for (size_t i = 0; i < 3; ++i) {
    QueuedMessage m = Long(a, b, 0);
    m.body = to_b[i];
    m.client_msg_id = i + 1;
    Result<int64_t> id = store_->Enqueue(m);
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    ids_b.push_back(*id);
    m = Long(a, c, 0);
    m.body = to_c[i];
    m.client_msg_id = i + 10;
    ASSERT_TRUE(store_->Enqueue(m).ok());
  }
  Commit();
  Reopen();  // checkpointed: the file has them all
  auto file_has = [&](const std::string& text) {
    std::ifstream in(path_, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)),
                            std::istreambuf_iterator<char>());
    return bytes.find(text) != std::string::npos;
  };
  for (const std::string& body : to_b) ASSERT_TRUE(file_has(body)) << body;
  ASSERT_EQ(Queued(b), 3);  // fetched, as a client does before confirming
  Begin();
  for (int64_t id : ids_b) {
    ASSERT_EQ(Confirm(b, id), ReceiptOutcome::kConfirmed);
  }
  Commit();
  store_.reset();  // checkpointed again, the WAL removed
  ASSERT_FALSE(fs::exists(path_ + "-wal"));
  for (const std::string& body : to_b) EXPECT_FALSE(file_has(body)) << body;
  for (const std::string& body : to_c) EXPECT_TRUE(file_has(body)) << body;
}

TEST_F(StoreTest, AFetchedStretchEndsAtAMessageCarriedInSince) {
  Begin();
  const int64_t a = Create("Zo\xc3\xab"),
                b = Create("\xe6\x9d\x8e\xe9\x9b\xb7"),
                d = Create("\xd8\xb9\xd9\x85\xd8\xb1");
  // Bob's queue: 20 rows in `messages`, and between them 10 logged
  // messages (sent while he was online).
  QueuedMessage online = Long(a, b, 10);
  online.recipient_online = true;
  std::vector<int64_t> in_table, logged;
  for (uint64_t i = 1; i <= 20; ++i) {
    in_table.push_back(Enqueue(a, b, i));
    if (i % 2 == 0) {
      online.client_msg_id = 100 + i;
      Result<int64_t> id = store_->Enqueue(online);
      ASSERT_TRUE(id.ok()) << id.status().ToString();
      logged.push_back(*id);
    }
  }
  Commit();
  auto fetched = store_->FetchPending(b, 1000);
  ASSERT_TRUE(fetched.ok()) << fetched.status().ToString();
  ASSERT_EQ(fetched->size(), 30u);
  // Enough logged messages for another recipient that the commit compacts
  // the log (at 4,096 operations) and carries every live one (over 1,024),
  // bob's ten too, into `messages`.
  constexpr int64_t kLogMax = 4096;
  Begin();
  QueuedMessage to_d = Long(a, d, 10);
  to_d.recipient_online = true;
  for (int64_t i = 1; i <= kLogMax; ++i) {
    to_d.client_msg_id = static_cast<uint64_t>(1000 + i);
    ASSERT_TRUE(store_->Enqueue(to_d).ok());
  }
  Commit();
  ASSERT_EQ(RawCount(path_, "messages"),
            static_cast<int64_t>(20 + 10 + kLogMax));
  // Bob confirms the rows he fetched from the table, not the others.
  Begin();
  for (int64_t id : in_table) {
    ASSERT_EQ(Confirm(b, id), ReceiptOutcome::kConfirmed);
  }
  Commit();
  auto left = store_->FetchPending(b, 1000);
  ASSERT_TRUE(left.ok()) << left.status().ToString();
  std::vector<int64_t> ids;
  for (const QueuedMessage& m : *left) ids.push_back(m.id);
  EXPECT_EQ(ids, logged);
  EXPECT_EQ(RawCount(path_, "messages"), static_cast<int64_t>(10 + kLogMax));
}

TEST_F(StoreTest, DeleteAccountDropsItsNotices) {
  Begin();
  int64_t alice = Create("alice");
  ASSERT_TRUE(
      store_->AddNotice(alice, Notice{NoticeKind::kDelivered, 1, "b", 1}, 10)
          .ok());
  ASSERT_TRUE(store_->DeleteAccount(alice).ok());
  EXPECT_EQ(*store_->CountNotices(alice), 0);
  Commit();
  Reopen();
  EXPECT_EQ(*store_->CountNotices(alice), 0);
}

TEST_F(StoreTest, EveryWriteRequiresTransaction) {
  Begin();
  int64_t alice = Create("alice");
  int64_t message = Enqueue(alice, alice, 1);
  Commit();
  ASSERT_FALSE(store_->InTransaction());

  QueuedMessage m;
  m.sender_id = m.recipient_id = alice;
  const std::vector<std::pair<const char*, Status>> writes = {
      {"CreateAccount", store_->CreateAccount("bob", "bob", "h", 1).status()},
      {"DeleteAccount", store_->DeleteAccount(alice).status()},
      {"Enqueue", store_->Enqueue(m).status()},
      {"ConfirmDelivery", store_->ConfirmDelivery(alice, message).status()},
      {"AddNotice", store_->AddNotice(alice, Notice{}, 10)},
      {"AckNotice", store_->AckNotice(alice, 1)},
      {"AddToken", store_->AddToken("hash", alice, 1)},
      {"RevokeToken", store_->RevokeToken("hash")},
      {"Prune", store_->Prune(100, 100)},
  };
  for (const auto& [name, status] : writes) {
    EXPECT_EQ(status.code(), ErrorCode::kStorage) << name;
  }
  EXPECT_TRUE(Exists("alice"));
  EXPECT_FALSE(Exists("bob"));
  EXPECT_EQ(Pending(alice), 1);
}

TEST_F(StoreTest, CreateAccountRefusesTakenKey) {
  Begin();
  Create("alice");
  auto taken = store_->CreateAccount("ALICE", "alice", "h", 1);
  ASSERT_FALSE(taken.ok());
  EXPECT_EQ(taken.status().code(), ErrorCode::kUsernameTaken);
  Commit();
  // Also when the id is given explicitly (after a rollback).
  Begin();
  store_->Rollback();
  Begin();
  taken = store_->CreateAccount("ALICE", "alice", "h", 1);
  ASSERT_FALSE(taken.ok());
  EXPECT_EQ(taken.status().code(), ErrorCode::kUsernameTaken);
  Commit();
}

// --- Caches ------------------------------------------------------------------

TEST_F(StoreTest, PendingCountFollowsEnqueueConfirmAndDelete) {
  Begin();
  int64_t alice = Create("alice");
  int64_t bob = Create("bob");
  EXPECT_EQ(Pending(bob), 0);  // loaded (and cached) before any message
  int64_t m1 = Enqueue(alice, bob, 1);
  int64_t m2 = Enqueue(alice, bob, 2);
  Enqueue(alice, bob, 3);
  EXPECT_EQ(Pending(bob), 3);
  EXPECT_EQ(Confirm(bob, m1), ReceiptOutcome::kConfirmed);
  EXPECT_EQ(Pending(bob), 2);
  // Receipts that confirm nothing change nothing.
  EXPECT_EQ(Confirm(bob, m1), ReceiptOutcome::kAlreadyConfirmed);
  EXPECT_EQ(Confirm(alice, m2), ReceiptOutcome::kNotYours);
  EXPECT_EQ(Pending(bob), 2);
  EXPECT_EQ(Queued(bob), 2);
  Commit();

  // The database agrees (a fresh store counts from scratch).
  Reopen();
  EXPECT_EQ(Pending(bob), 2);

  Begin();
  ASSERT_TRUE(store_->DeleteAccount(bob).ok());
  EXPECT_EQ(Pending(bob), 0);
  EXPECT_EQ(Pending(alice), 0);
  Commit();
}

TEST_F(StoreTest, PendingCountIsLoadedAfterEnqueues) {
  // Enqueues before the first CountPending are counted by the query.
  Begin();
  int64_t alice = Create("alice");
  Enqueue(alice, alice, 1);
  Enqueue(alice, alice, 2);
  EXPECT_EQ(Pending(alice), 2);
  Enqueue(alice, alice, 3);
  EXPECT_EQ(Pending(alice), 3);
  Commit();
}

TEST_F(StoreTest, DeleteAccountForgetsCachedAccount) {
  Begin();
  int64_t alice = Create("alice");
  Commit();
  auto found = store_->FindAccount("alice");
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->id, alice);
  EXPECT_EQ((*found)->name, "alice");
  EXPECT_EQ((*found)->password_hash, "hash-alice");

  Begin();
  ASSERT_TRUE(store_->DeleteAccount(alice).ok());
  EXPECT_FALSE(Exists("alice"));
  Commit();
  EXPECT_FALSE(Exists("alice"));
}

TEST_F(StoreTest, RollbackDropsPendingCounts) {
  Begin();
  int64_t alice = Create("alice");
  Enqueue(alice, alice, 1);
  Commit();
  EXPECT_EQ(Pending(alice), 1);

  Begin();
  Enqueue(alice, alice, 2);
  Enqueue(alice, alice, 3);
  EXPECT_EQ(Pending(alice), 3);
  store_->Rollback();
  EXPECT_EQ(Pending(alice), 1);
  EXPECT_EQ(Queued(alice), 1);
}

TEST_F(StoreTest, RollbackDropsCreatedAccount) {
  Begin();
  Create("dave");
  EXPECT_TRUE(Exists("dave"));
  store_->Rollback();
  EXPECT_FALSE(Exists("dave"));
}

TEST_F(StoreTest, RollbackRestoresDeletedAccount) {
  Begin();
  int64_t alice = Create("alice");
  Enqueue(alice, alice, 1);
  Commit();
  EXPECT_EQ(Pending(alice), 1);
  Begin();
  ASSERT_TRUE(store_->DeleteAccount(alice).ok());
  EXPECT_FALSE(Exists("alice"));
  EXPECT_EQ(Pending(alice), 0);
  store_->Rollback();
  EXPECT_TRUE(Exists("alice"));
  EXPECT_EQ(Pending(alice), 1);
}

// A transaction SQLite rolls back by itself (here: the database is full)
// is noticed at the store's next call, and the caches are dropped.
TEST_F(StoreTest, TransactionDroppedBySqliteDropsCaches) {
  Begin();
  int64_t alice = Create("alice");
  Commit();
  Reopen(StoreOptions{SyncMode::kNormal, /*max_pages=*/1});
  EXPECT_EQ(Pending(alice), 0);
  Begin();
  Create("dave");
  ASSERT_TRUE(Exists("dave"));
  QueuedMessage big;
  big.sender_id = big.recipient_id = alice;
  big.body.assign(64 * 1024, 'x');
  bool failed = false;
  for (uint64_t i = 1; i <= 100 && !failed; ++i) {
    big.client_msg_id = i;
    // (The store writes queued rows in groups, a statement each; a read of
    // the queue first writes those waiting, fewer than a group one row a
    // statement, where SQLITE_FULL ends the transaction.)
    failed = !store_->Enqueue(big).ok() || !store_->FetchPending(alice, 1).ok();
  }
  ASSERT_TRUE(failed) << "the capped database kept growing";
  // SQLite ends the whole transaction on SQLITE_FULL during an insert.
  ASSERT_FALSE(store_->InTransaction())
      << "this SQLite undid only the failing statement";
  // No Rollback() call: the store notices by itself.
  EXPECT_FALSE(Exists("dave"));
  EXPECT_EQ(Pending(alice), 0);
}

// SQLite's page cache holds what StoreOptions::cache_kib allows: a queue of
// about 10 MiB read whole stays in a 16 MiB cache, while SQLite's default
// (cache_kib 0: 2 MiB) keeps only its last pages.
TEST_F(StoreTest, ThePageCacheHoldsWhatItsOptionAllows) {
  Begin();
  const int64_t a = Create("alice");
  const int64_t b = Create("bob");
  QueuedMessage m = Long(a, b, 10 * 1024);
  for (uint64_t i = 1; i <= 1000; ++i) {
    m.client_msg_id = i;
    ASSERT_TRUE(store_->Enqueue(m).ok());
  }
  Commit();
  store_.reset();
  for (const int64_t kib : {int64_t{16 * 1024}, int64_t{0}}) {
    StoreOptions options;
    options.cache_kib = kib;
    auto opened = SqliteStore::Open(path_, options);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    auto queue = (*opened)->FetchPending(b, 1000);
    ASSERT_TRUE(queue.ok()) << queue.status().ToString();
    ASSERT_EQ(queue->size(), 1000u);
    const int64_t cached = (*opened)->CacheBytes();
    if (kib > 0) {
      EXPECT_GT(cached, 8 << 20) << "cache_kib " << kib;
      EXPECT_LT(cached, (kib + 1024) << 10);
    } else {
      EXPECT_LT(cached, 3 << 20) << "SQLite's default";
    }
  }
}

// With --sync full the WAL is copied into the database at kCheckpointPages
// pages, not at SQLite's 1,000: commits of about 100 pages each leave it
// growing past 1,000 pages (a checkpoint would have let the next commit
// start it over from its first page), and once past kCheckpointPages it
// starts over. --sync normal, whose commits are synced only at a
// checkpoint, keeps SQLite's 1,000 (docs/semantics.md).
TEST_F(StoreTest, TheWalIsCheckpointedAtItsPages) {
  constexpr int64_t kPage = 4096;
  for (const SyncMode sync : {SyncMode::kFull, SyncMode::kNormal}) {
    SCOPED_TRACE(sync == SyncMode::kFull ? "--sync full" : "--sync normal");
    store_.reset();
    for (const char* suffix : {"", "-wal", "-shm"}) {
      fs::remove(path_ + suffix);
    }
    StoreOptions options;
    options.sync = sync;
    Reopen(options);
    Begin();
    const int64_t a = Create("alice");
    const int64_t b = Create("bob");
    Commit();
    QueuedMessage m = Long(a, b, 10 * 1024);  // three pages
    uint64_t client_msg_id = 0;
    int64_t largest = 0;
    bool started_over = false;
    for (int commit = 0; commit < 150 && !started_over; ++commit) {
      Begin();
      for (int i = 0; i < 33; ++i) {
        m.client_msg_id = ++client_msg_id;
        ASSERT_TRUE(store_->Enqueue(m).ok());
      }
      Commit();
      const auto size = static_cast<int64_t>(fs::file_size(path_ + "-wal"));
      if (size > largest) {
        largest = size;
      } else {
        started_over =
            true;  // the file stopped growing: written from its start
      }
    }
    EXPECT_TRUE(started_over) << "never checkpointed";
    const int64_t pages =
        sync == SyncMode::kFull ? SqliteStore::kCheckpointPages : 1000;
    EXPECT_GT(largest, pages * kPage);
    EXPECT_LT(largest, (pages + 200) * kPage);
  }
}

// --- Ids ---------------------------------------------------------------------

TEST_F(StoreTest, MessageIdsAreNotReusedAfterRollback) {
  Begin();
  int64_t alice = Create("alice");
  int64_t committed = Enqueue(alice, alice, 1);
  Commit();

  Begin();
  Enqueue(alice, alice, 2);
  int64_t rolled_back = Enqueue(alice, alice, 3);
  store_->Rollback();
  // Twice in a row: the floor holds across a rollback of the explicit id.
  Begin();
  int64_t rolled_back_again = Enqueue(alice, alice, 2);
  EXPECT_GT(rolled_back_again, rolled_back);
  store_->Rollback();

  Begin();
  int64_t next = Enqueue(alice, alice, 2);
  int64_t after = Enqueue(alice, alice, 3);
  Commit();
  EXPECT_GT(next, rolled_back_again);
  EXPECT_EQ(after, next + 1);

  // Receipts still tell confirmed ids from ids never handed out.
  Begin();
  EXPECT_EQ(Confirm(alice, committed), ReceiptOutcome::kConfirmed);
  EXPECT_EQ(Confirm(alice, committed), ReceiptOutcome::kAlreadyConfirmed);
  EXPECT_EQ(Confirm(alice, after + 1), ReceiptOutcome::kUnknown);
  Commit();

  // Committed ids survive a restart.
  Reopen();
  Begin();
  EXPECT_GT(Enqueue(alice, alice, 4), after);
  Commit();
}

TEST_F(StoreTest, AccountIdsAreNotReusedAfterRollback) {
  Begin();
  int64_t alice = Create("alice");
  Commit();
  Begin();
  int64_t dave = Create("dave");
  EXPECT_GT(dave, alice);
  store_->Rollback();
  Begin();
  int64_t erin = Create("erin");
  Commit();
  EXPECT_GT(erin, dave);
  auto found = store_->FindAccountById(erin);
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->name, "erin");
}

TEST_F(StoreTest, IdsAreNotReusedAfterTransactionSqliteDropped) {
  Begin();
  int64_t alice = Create("alice");
  Commit();
  // A transaction SQLite drops by itself (see TransactionDroppedBySqlite...).
  Reopen(StoreOptions{SyncMode::kNormal, /*max_pages=*/1});
  Begin();
  int64_t lost = Enqueue(alice, alice, 1);
  QueuedMessage big;
  big.sender_id = big.recipient_id = alice;
  big.body.assign(64 * 1024, 'x');
  bool failed = false;
  for (uint64_t i = 2; i <= 100 && !failed; ++i) {
    big.client_msg_id = i;
    failed = !store_->Enqueue(big).ok() || !store_->FetchPending(alice, 1).ok();
  }
  ASSERT_TRUE(failed);
  // SQLite ends the whole transaction on SQLITE_FULL during an insert.
  ASSERT_FALSE(store_->InTransaction())
      << "this SQLite undid only the failing statement";
  // No Rollback() call: Begin() notices the transaction is gone.
  Begin();
  EXPECT_GT(Enqueue(alice, alice, 1), lost);
  Commit();
}

// --- Opening -----------------------------------------------------------------

// A database written by the schema-1 broker, checked in: it opens, and its
// data reads back (accounts, queue, dedup ids, notices, tokens, ids).
TEST_F(StoreTest, OpensSchemaVersion1Database) {
  CopyFixture("schema_v1.sqlite");
  Reopen();

  auto alice = store_->FindAccount("alice");
  ASSERT_TRUE(alice.ok() && alice->has_value());
  EXPECT_EQ((*alice)->id, 1);
  EXPECT_EQ((*alice)->name, "Alice");
  EXPECT_EQ((*alice)->password_hash, "hash-of-alice");
  EXPECT_FALSE(Exists("carol"));
  auto bob = store_->FindAccountById(2);
  ASSERT_TRUE(bob.ok() && bob->has_value());
  EXPECT_EQ((*bob)->name, "bob");

  EXPECT_EQ(Pending(2), 1);
  auto queue = store_->FetchPending(2, 10);
  ASSERT_TRUE(queue.ok());
  ASSERT_EQ(queue->size(), 1u);
  EXPECT_EQ((*queue)[0].id, 2);
  EXPECT_EQ((*queue)[0].sender_id, 1);
  EXPECT_EQ((*queue)[0].sender_name, "Alice");
  EXPECT_EQ((*queue)[0].client_msg_id, 8u);
  EXPECT_EQ((*queue)[0].body, "hello bob");
  EXPECT_EQ((*queue)[0].sent_at_ms, 1700000004000);

  auto send = store_->FindSend(1, 8);
  ASSERT_TRUE(send.ok() && send->has_value());
  EXPECT_EQ(**send, 2);
  auto token = store_->FindToken(
      std::string("\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd"
                  "\xee\xff",
                  16),
      0);
  ASSERT_TRUE(token.ok() && token->has_value());
  EXPECT_EQ(**token, 2);

  // Migrated to schema 2, the stored notice is kept.
  auto notices = store_->ListNotices(1, 10);
  ASSERT_TRUE(notices.ok());
  ASSERT_EQ(notices->size(), 1u);
  EXPECT_EQ((*notices)[0].kind, NoticeKind::kDelivered);
  EXPECT_EQ((*notices)[0].message_id, 1);
  EXPECT_EQ((*notices)[0].peer_name, "bob");
  EXPECT_EQ((*notices)[0].client_msg_id, 7u);
  EXPECT_EQ(*store_->CountNotices(1), 1);
  Begin();
  ASSERT_TRUE(store_->AckNotice(1, 1).ok());
  EXPECT_EQ(*store_->CountNotices(1), 0);
  EXPECT_EQ(Confirm(2, 1), ReceiptOutcome::kAlreadyConfirmed);
  // Ids continue after the file's (deleted rows included).
  EXPECT_EQ(Create("dave"), 4);
  EXPECT_EQ(Enqueue(1, 2, 9), 3);
  EXPECT_EQ(Confirm(2, 2), ReceiptOutcome::kConfirmed);
  Commit();
}

// Schema v4: the dedup records keep no index by age (Prune walks their key);
// schema v6: they move from `sends` into runs, and are found there.
TEST_F(StoreTest, MigrationMovesTheDedupRecordsIntoRuns) {
  CopyFixture("schema_v1.sqlite");
  Reopen();
  EXPECT_EQ(**store_->FindSend(1, 7), 1);
  EXPECT_EQ(**store_->FindSend(1, 8), 2);
  EXPECT_FALSE(store_->FindSend(1, 9)->has_value());
  store_.reset();
  EXPECT_EQ(RawValue(path_,
                     "SELECT count(*) FROM sqlite_schema WHERE name IN "
                     "('sends_by_age', 'sends')"),
            0)
      << "the index and the table are gone";
  EXPECT_EQ(RawCount(path_, "send_runs"), 1) << "one sender's run";
  EXPECT_EQ(RawRunRecords(path_), 2) << "the records stay";
}

// From schema v5, as its broker left a file: the records merged into `sends`
// and those waiting in sends_recent both become runs, every one found with
// its message; the queued messages stay, and ids go on above the reserved.
TEST_F(StoreTest, MigrationFromV5MovesBothTablesIntoRuns) {
  CopyFixture("schema_v5.sqlite");
  Reopen();
  const std::vector<std::tuple<int64_t, uint64_t, int64_t>> records = {
      {1, 7, 1},  {1, 8, 2}, {1, 9, 3}, {1, uint64_t{1} << 63, 6},
      {1, 10, 4}, {2, 3, 5}};
  for (const auto& [sender, id, message] : records) {
    auto f = store_->FindSend(sender, id);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    ASSERT_TRUE(f->has_value()) << id;
    EXPECT_EQ(**f, message) << id;
  }
  EXPECT_FALSE(store_->FindSend(1, 11)->has_value());
  EXPECT_FALSE(store_->FindSend(2, 7)->has_value());
  auto queue = store_->FetchPending(2, 10);
  ASSERT_TRUE(queue.ok());
  ASSERT_EQ(queue->size(), 1u);
  EXPECT_EQ((*queue)[0].body, "ça va? 你好 👋 שלום");
  Begin();
  EXPECT_GT(Enqueue(2, 1, 4), 4096) << "above the reserved ids";
  Commit();
  store_.reset();
  EXPECT_EQ(RawValue(path_,
                     "SELECT count(*) FROM sqlite_schema WHERE name IN "
                     "('sends', 'sends_recent')"),
            0);
  EXPECT_EQ(RawCount(path_, "send_runs"), 2) << "a run for each sender";
  EXPECT_EQ(RawRunRecords(path_), 6);
}

// A larger table of records moves into runs as a merge writes them: a
// sender's records in runs of at most 128, a new run where the records
// were made more than an hour apart; every record found with its message.
TEST_F(StoreTest, MigrationWritesBoundedRuns) {
  CopyFixture("schema_v1.sqlite");
  // Sender 2: 300 records made together (three runs: 128, 128, 44), then
  // 5 made two hours later (a fourth).
  std::string sql = "BEGIN;";
  for (int i = 0; i < 305; ++i) {
    const int64_t at = i < 300 ? 1700000000000 : 1700007200000;
    sql += "INSERT INTO sends VALUES(2, " + std::to_string(100 + 3 * i) + ", " +
           std::to_string(5000 + 7 * i) + ", " + std::to_string(at) + ");";
  }
  RawExec(path_, sql + "COMMIT;");
  Reopen();
  for (int i = 0; i < 305; ++i) {
    auto f = store_->FindSend(2, static_cast<uint64_t>(100 + 3 * i));
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    ASSERT_TRUE(f->has_value()) << i;
    EXPECT_EQ(**f, 5000 + 7 * i) << i;
    EXPECT_FALSE(
        store_->FindSend(2, static_cast<uint64_t>(101 + 3 * i))->has_value());
  }
  EXPECT_EQ(**store_->FindSend(1, 8), 2) << "the other sender's";
  store_.reset();
  EXPECT_EQ(
      RawValue(path_, "SELECT count(*) FROM send_runs WHERE sender_id = 2"), 4);
  EXPECT_EQ(RawValue(path_, "SELECT max(count) FROM send_runs"), 128);
  EXPECT_EQ(RawRunRecords(path_), 307);
}

// Prune walks the runs in stretches of at least 4,096 (more when many were
// written since its last call): a table larger than that is pruned over
// successive calls, old runs only, and the walk comes round again.
TEST_F(StoreTest, PruneWalksTheRunsInStretches) {
  constexpr int kOld = 10'000;  // two stretches and a part
  // Records made more than an hour apart: a run each.
  constexpr int64_t kApart = 3'600'001;
  Begin();
  const int64_t a = Create("a");
  const int64_t b = Create("b");
  // Ids well apart in key order: a's runs, then b's.
  for (int i = 1; i <= kOld; ++i) Enqueue(i % 2 ? a : b, a, i, i * kApart);
  Commit();
  Merge();  // nothing old: resets the pace
  ASSERT_EQ(RawCount(path_, "send_runs"), kOld);
  auto remaining = [&] {
    int n = 0;
    for (int i = 1; i <= kOld; ++i) {
      n += store_->FindSend(i % 2 ? a : b, static_cast<uint64_t>(i))
               ->has_value();
    }
    return n;
  };
  ASSERT_EQ(remaining(), kOld);

  // A newer record (a run of a's, after the others) that every cut-off
  // below spares.
  constexpr int64_t kCutOff = (kOld + 10) * kApart;
  Begin();
  QueuedMessage late;
  late.sender_id = a;
  late.sender_name = "a";
  late.recipient_id = b;
  late.recipient_name = "b";
  late.client_msg_id = 1'000'000;
  late.body = "née 新 🌱 חדש";
  late.sent_at_ms = kCutOff + 1;
  ASSERT_TRUE(store_->Enqueue(late).ok());
  Commit();

  std::vector<int> after;
  for (int call = 0; call < 4; ++call) {
    Begin();
    ASSERT_TRUE(store_->Prune(kCutOff, 0).ok());
    Commit();
    after.push_back(remaining());
  }
  EXPECT_EQ(after[0], kOld - 4096) << "one stretch of a's runs";
  EXPECT_EQ(after[1], kOld - 2 * 4096 + 1)
      << "a's last runs, the newer one walked over and kept, then b's";
  EXPECT_EQ(after[2], 0) << "the rest, to the end of the table";
  EXPECT_EQ(after[3], 0) << "round again";
  EXPECT_TRUE(store_->FindSend(a, 1'000'000)->has_value()) << "not old";
  EXPECT_EQ(RawCount(path_, "send_runs"), 1);
  EXPECT_EQ(*store_->CountPending(a), kOld) << "the messages stay";
}

// A run goes only when its newest record is old: records made together
// share a run, and an old record waits for the newest of its run.
TEST_F(StoreTest, ARunIsPrunedByItsNewestRecord) {
  Begin();
  const int64_t a = Create("a");
  Enqueue(a, a, 1, 1000);
  Enqueue(a, a, 2, 3000);  // same run: within an hour
  Commit();
  Merge();
  ASSERT_EQ(RawCount(path_, "send_runs"), 1);
  Begin();
  ASSERT_TRUE(store_->Prune(2000, 0).ok());
  Commit();
  EXPECT_TRUE(store_->FindSend(a, 1)->has_value()) << "kept with record 2";
  Begin();
  ASSERT_TRUE(store_->Prune(3001, 0).ok());
  Commit();
  EXPECT_FALSE(store_->FindSend(a, 1)->has_value());
  EXPECT_FALSE(store_->FindSend(a, 2)->has_value());
  EXPECT_EQ(RawCount(path_, "send_runs"), 0);
  // The sender's next records start a run again (its cached last run went
  // with the prune).
  Begin();
  const int64_t third = Enqueue(a, a, 3, 5000);
  Commit();
  Merge();
  EXPECT_EQ(**store_->FindSend(a, 3), third);
  EXPECT_EQ(RawRunRecords(path_), 1);
}

// --- Dedup records: batches, then runs (schema v6) ---------------------------

// A transaction's records go to a batch row; FindSend answers for them in
// the transaction, after it and after a restart (which reloads the store's
// copy of the batches), and Prune moves them into runs, one per sender.
TEST_F(StoreTest, DedupRecordsAreFoundBeforeAndAfterTheMerge) {
  Begin();
  const int64_t a = Create("a");
  const int64_t b = Create("b");
  const int64_t a1 = Enqueue(a, b, 1);
  const int64_t a2 = Enqueue(a, b, 2);
  const int64_t b9 = Enqueue(b, a, 9);
  auto found = [&](int64_t sender, uint64_t client_msg_id) -> int64_t {
    auto f = store_->FindSend(sender, client_msg_id);
    EXPECT_TRUE(f.ok()) << f.status().ToString();
    return f.ok() && f->has_value() ? **f : 0;
  };
  EXPECT_EQ(found(a, 1), a1) << "in the transaction";
  EXPECT_EQ(found(b, 9), b9) << "in the transaction";
  Commit();
  EXPECT_EQ(RawCount(path_, "send_batches"), 1) << "a row per commit";
  EXPECT_EQ(RawBatchRecords(path_).size(), 3u);
  EXPECT_EQ(RawCount(path_, "send_runs"), 0);
  EXPECT_EQ(found(a, 1), a1);
  EXPECT_EQ(found(a, 2), a2);
  EXPECT_EQ(found(b, 9), b9);
  EXPECT_EQ(found(a, 9), 0) << "another sender's id";
  EXPECT_EQ(found(b, 1), 0);

  Reopen();
  EXPECT_EQ(found(a, 1), a1) << "after a restart";
  EXPECT_EQ(found(b, 9), b9) << "after a restart";
  EXPECT_EQ(found(a, 3), 0);
  Begin();
  ASSERT_TRUE(store_->Prune(0, 0).ok());
  Commit();
  EXPECT_EQ(RawCount(path_, "send_batches"), 0);
  EXPECT_EQ(RawCount(path_, "send_runs"), 2) << "a run for each sender";
  EXPECT_EQ(RawRunRecords(path_), 3);
  EXPECT_EQ(found(a, 1), a1) << "after the merge";
  EXPECT_EQ(found(a, 2), a2);
  EXPECT_EQ(found(b, 9), b9);
  EXPECT_EQ(found(b, 1), 0);
  Reopen();
  EXPECT_EQ(found(a, 2), a2) << "merged, after a restart";
  EXPECT_EQ(found(b, 9), b9);
}

// A merge in the middle of a transaction (a Prune, an account's deletion)
// takes the records of the transaction's sends so far with the others:
// each record is stored once, in runs, and the commit writes no batch for
// them; the sends after the merge make the commit's batch.
TEST_F(StoreTest, AMergeInATransactionTakesItsRecordsOnce) {
  Begin();
  const int64_t a = Create("Zoë");
  const int64_t b = Create("نور");
  const int64_t a1 = Enqueue(a, b, 1);
  Commit();
  Begin();
  const int64_t a2 = Enqueue(a, b, 2);
  const int64_t b7 = Enqueue(b, a, 7);
  ASSERT_TRUE(store_->Prune(0, 0).ok());
  const int64_t a3 = Enqueue(a, b, 3);
  Commit();
  EXPECT_EQ(RawRunRecords(path_), 3) << "a1, a2 and b7, merged";
  EXPECT_EQ(RawBatchRecords(path_).size(), 1u) << "a3 only";
  for (int round = 0; round < 2; ++round) {
    EXPECT_EQ(**store_->FindSend(a, 1), a1) << round;
    EXPECT_EQ(**store_->FindSend(a, 2), a2) << round;
    EXPECT_EQ(**store_->FindSend(a, 3), a3) << round;
    EXPECT_EQ(**store_->FindSend(b, 7), b7) << round;
    EXPECT_FALSE(store_->FindSend(b, 2)->has_value()) << round;
    Reopen();
  }
  Merge();
  EXPECT_EQ(RawRunRecords(path_), 4) << "each record once";
  EXPECT_EQ(RawCount(path_, "send_batches"), 0);
  EXPECT_EQ(**store_->FindSend(a, 3), a3);
}

// Merge after merge, a sender's records are appended to its last run until
// it holds 128, then fill new runs; every record is found, and a sender's
// highest id is read from its last run after a restart.
TEST_F(StoreTest, MergesAppendToTheLastRun) {
  constexpr int kMerges = 5;
  constexpr int kPerMerge = 60;  // 300 records: runs of 128, 128, 44
  Begin();
  const int64_t a = Create("a");
  const int64_t b = Create("b");
  Commit();
  std::map<uint64_t, int64_t> sent;
  for (int m = 0; m < kMerges; ++m) {
    Begin();
    for (int i = 0; i < kPerMerge; ++i) {
      const uint64_t id = 10 + 2 * static_cast<uint64_t>(m * kPerMerge + i);
      sent[id] = Enqueue(a, b, id, 1000 + m);
    }
    Enqueue(b, a, static_cast<uint64_t>(m) + 1, 1000 + m);  // another sender
    Commit();
    Merge();
  }
  EXPECT_EQ(
      RawValue(path_, "SELECT count(*) FROM send_runs WHERE sender_id = " +
                          std::to_string(a)),
      3);
  EXPECT_EQ(
      RawValue(path_, "SELECT count(*) FROM send_runs WHERE sender_id = " +
                          std::to_string(b)),
      1);
  EXPECT_EQ(RawValue(path_, "SELECT max(count) FROM send_runs"), 128);
  Reopen();
  for (const auto& [id, message_id] : sent) {
    auto f = store_->FindSend(a, id);
    ASSERT_TRUE(f.ok() && f->has_value()) << id;
    EXPECT_EQ(**f, message_id) << id;
    EXPECT_FALSE(store_->FindSend(a, id + 1)->has_value()) << id + 1;
  }
  // Above the highest: a new message, not a retry.
  Begin();
  QueuedMessage next;
  next.sender_id = a;
  next.recipient_id = b;
  next.sender_name = "a";
  next.recipient_name = "b";
  next.client_msg_id = sent.rbegin()->first;
  next.body = "¿de nuevo? 又 🔁 שוב";
  EXPECT_FALSE(store_->Enqueue(next).ok()) << "the highest is a retry";
  store_->Rollback();
}

// A client that does not count its ids up: ids below the sender's last run
// go into the run whose range holds them (split in two when full), or into
// runs of their own between and below the others (those of one gap
// together); the runs' ranges never overlap, and every record keeps its
// message id.
TEST_F(StoreTest, IdsOutOfOrderGoIntoTheRunThatHoldsThem) {
  Begin();
  const int64_t a = Create("a");
  Commit();
  std::map<int64_t, int64_t> sent;
  // Even ids 1,000..1,254: one full run; then 5,000: a second.
  std::vector<int64_t> evens;
  for (int64_t id = 1000; id < 1256; id += 2) evens.push_back(id);
  SendAndMerge(a, evens, sent);
  SendAndMerge(a, {5000}, sent);
  ASSERT_EQ(RawCount(path_, "send_runs"), 2);
  // Into the full run (which splits), into the gap between the runs, below
  // every run, and the largest negative id (the top bit of a uint64).
  SendAndMerge(a, {1001, 1003, 1253, 3000, 7, -9'000'000'000'000'000'000},
               sent);
  ExpectRunsHold(a, sent);
  for (int64_t id : {1005, 1255, 2999, 8, 4999, 5001}) {
    EXPECT_FALSE(store_->FindSend(a, static_cast<uint64_t>(id))->has_value())
        << id;
  }
  EXPECT_LE(RawValue(path_, "SELECT max(count) FROM send_runs"), 128);
  EXPECT_EQ(RawCount(path_, "send_runs"), 5)
      << "the full run split in two, 3000 alone, 7 and the negative id (both "
         "below every run) together";
  // New ids above every run still append to the last one.
  SendAndMerge(a, {5002, 5004}, sent);
  EXPECT_EQ(RawCount(path_, "send_runs"), 5);
  EXPECT_EQ(**store_->FindSend(a, 5004), sent[5004]);
}

// Ids that fall into runs merged before, many at once (a client sending to
// several recipients, a request each, whose requests straddle a merge):
// each run takes its share in one rewrite, split into as few runs of equal
// size as keep within 128 records, and ids between the runs become runs of
// their own, as few as fit.
TEST_F(StoreTest, ManyIdsIntoTheRunsThatHoldThemAreWrittenTogether) {
  Begin();
  const int64_t a = Create("a");
  Commit();
  std::map<int64_t, int64_t> sent;
  // Even ids 2..256 (one full run of 128), then 10,000 (a second run).
  std::vector<int64_t> evens;
  for (int64_t id = 2; id <= 256; id += 2) evens.push_back(id);
  SendAndMerge(a, evens, sent);
  SendAndMerge(a, {10'000}, sent);
  ASSERT_EQ(RawCount(path_, "send_runs"), 2);
  // The odd ids 1..255 and 300..599 in one merge: 1 lies below the first
  // run, 3..255 inside it (128 + 127 records: two runs), 300..599 between
  // the runs (300 records: three runs of 100).
  std::vector<int64_t> more;
  for (int64_t id = 1; id <= 255; id += 2) more.push_back(id);
  for (int64_t id = 300; id < 600; ++id) more.push_back(id);
  SendAndMerge(a, more, sent);
  ExpectRunsHold(a, sent);
  for (int64_t id : {0, 257, 299, 600, 9'999, 10'001}) {
    EXPECT_FALSE(store_->FindSend(a, static_cast<uint64_t>(id))->has_value())
        << id;
  }
  EXPECT_EQ(RawCount(path_, "send_runs"), 7)
      << "1 alone, 2..256 with 3..255 in two runs, 300..599 in three, 10,000";
  EXPECT_EQ(RawValue(path_, "SELECT max(count) FROM send_runs"), 128);
  EXPECT_EQ(RawValue(path_,
                     "SELECT min(count) FROM send_runs WHERE first_id "
                     "BETWEEN 2 AND 599"),
            100);
}

// A client sending to several recipients at once, each recipient's ids in
// a request of its own, sends ids below its highest that are new: above its
// last run they are answered from what waits in memory (the transaction's
// records, those not yet merged), and every one is told right, a retry from
// a new id, before and after the merge and a restart.
TEST_F(StoreTest, IdsBetweenTheLastRunAndTheHighestAreToldApart) {
  Begin();
  const int64_t a = Create("a");
  const int64_t b = Create("b");
  const int64_t c = Create("c");
  Commit();
  std::map<int64_t, int64_t> sent;
  Begin();
  for (int64_t id = 1; id <= 100; ++id) {
    sent[id] = Enqueue(a, b, static_cast<uint64_t>(id));
  }
  Commit();
  Merge();
  ASSERT_EQ(RawCount(path_, "send_runs"), 1);
  auto found = [&](int64_t id) -> int64_t {
    auto f = store_->FindSend(a, static_cast<uint64_t>(id));
    EXPECT_TRUE(f.ok()) << f.status().ToString();
    return f.ok() && f->has_value() ? **f : 0;
  };
  // 101..200 round robin over b and c (odd ids to b, even to c), b's
  // request first, skipping the ids that end in 5.
  Begin();
  for (int64_t first : {101, 102}) {
    for (int64_t id = first; id <= 200; id += 2) {
      if (id % 10 == 5) continue;
      EXPECT_EQ(found(id), 0) << id << " is new";
      sent[id] = Enqueue(a, first == 101 ? b : c, static_cast<uint64_t>(id));
    }
  }
  EXPECT_EQ(found(111), sent[111]) << "a retry in the transaction";
  EXPECT_EQ(found(105), 0);
  Commit();
  const auto check = [&](const std::string& when) {
    for (int64_t id = 1; id <= 210; ++id) {
      const auto it = sent.find(id);
      EXPECT_EQ(found(id), it == sent.end() ? 0 : it->second)
          << id << ", " << when;
    }
  };
  check("waiting in memory");
  Reopen();
  check("after a restart");
  Merge();
  check("merged");
  Reopen();
  check("merged, after a restart");
}

// A run whose blob is damaged in the file makes the lookups that need it
// fail with a storage error; nothing crashes, and other senders are served.
TEST_F(StoreTest, ADamagedRunIsAnError) {
  Begin();
  const int64_t a = Create("a");
  const int64_t b = Create("b");
  Enqueue(a, b, 1);
  Enqueue(a, b, 2);
  const int64_t b1 = Enqueue(b, a, 1);
  Commit();
  Merge();
  RawWrite("UPDATE send_runs SET records = x'ff' WHERE sender_id = " +
           std::to_string(a));
  auto f = store_->FindSend(a, 1);
  ASSERT_FALSE(f.ok());
  ExpectDamaged(f.status());
  EXPECT_EQ(**store_->FindSend(b, 1), b1);
}

// Deleting an account removes its dedup records wherever they wait: in the
// runs, in a committed batch, and in the open transaction; another
// sender's stay.
TEST_F(StoreTest, DeletingAnAccountRemovesItsDedupRecords) {
  Begin();
  const int64_t a = Create("a");
  const int64_t b = Create("b");
  Enqueue(a, b, 1);
  const int64_t b1 = Enqueue(b, a, 1);
  Commit();
  Merge();  // a's 1 and b's 1 in runs
  Begin();
  Enqueue(a, b, 2);
  const int64_t b2 = Enqueue(b, a, 2);
  Commit();  // a's 2 and b's 2 in a batch
  Begin();
  Enqueue(a, b, 3);  // in the transaction
  ASSERT_TRUE(store_->DeleteAccount(a).ok());
  Commit();
  for (uint64_t id : {1, 2, 3}) {
    EXPECT_FALSE(store_->FindSend(a, id)->has_value()) << id;
  }
  EXPECT_EQ(**store_->FindSend(b, 1), b1);
  EXPECT_EQ(**store_->FindSend(b, 2), b2);
  Reopen();
  for (uint64_t id : {1, 2, 3}) {
    EXPECT_FALSE(store_->FindSend(a, id)->has_value()) << id;
  }
  EXPECT_EQ(**store_->FindSend(b, 2), b2);
  EXPECT_EQ(RawRunRecords(path_) +
                static_cast<int64_t>(RawBatchRecords(path_).size()),
            2)
      << "b's two";
}

// A batch whose blob is damaged in the file makes the lookups that read
// the batches fail with a storage error, and nothing crashes.
TEST_F(StoreTest, ADamagedBatchIsAnError) {
  Begin();
  const int64_t a = Create("a");
  Enqueue(a, a, 1);
  Commit();
  RawWrite("UPDATE send_batches SET records = x'0102ff'");
  auto f = store_->FindSend(a, 1);
  ASSERT_FALSE(f.ok());
  ExpectDamaged(f.status());
}

// A commit writes its records, from many senders, as one batch: each is
// found with its own message id, before and after a restart and a merge (a
// run per loner, one for the hub's).
TEST_F(StoreTest, ManyRecordsOfOneCommitAreEachWritten) {
  constexpr int kLoners = 2 * 16 + 7;  // one send each
  constexpr int kMany = 16 + 5;        // one sender's sends
  Begin();
  const int64_t hub = Create("hub");
  std::vector<int64_t> loners;
  for (int i = 0; i < kLoners; ++i) {
    loners.push_back(Create("loner" + std::to_string(i)));
  }
  std::map<std::pair<int64_t, uint64_t>, int64_t> sent;
  for (int i = 0; i < kLoners; ++i) {
    const uint64_t id = 1000 + static_cast<uint64_t>(i);
    sent[{loners[i], id}] = Enqueue(loners[i], hub, id);
  }
  for (int i = 0; i < kMany; ++i) {
    const uint64_t id = 7 * static_cast<uint64_t>(i) + 3;
    sent[{hub, id}] = Enqueue(hub, loners[i % kLoners], id);
  }
  Commit();
  EXPECT_EQ(RawCount(path_, "send_batches"), 1);
  EXPECT_EQ(RawBatchRecords(path_).size(),
            static_cast<size_t>(kLoners + kMany));
  auto all_found = [&](const char* when) {
    for (const auto& [key, message_id] : sent) {
      auto f = store_->FindSend(key.first, key.second);
      ASSERT_TRUE(f.ok()) << f.status().ToString();
      ASSERT_TRUE(f->has_value()) << when << ": " << key.second;
      EXPECT_EQ(**f, message_id) << when << ": " << key.second;
    }
    EXPECT_FALSE(store_->FindSend(hub, 4)->has_value()) << when;
    EXPECT_FALSE(store_->FindSend(loners[0], 1001)->has_value()) << when;
  };
  all_found("committed");
  Reopen();
  all_found("after a restart");
  Begin();
  ASSERT_TRUE(store_->Prune(0, 0).ok());
  Commit();
  EXPECT_EQ(RawCount(path_, "send_batches"), 0);
  EXPECT_EQ(RawRunRecords(path_), kLoners + kMany);
  EXPECT_EQ(RawCount(path_, "send_runs"), kLoners + 1) << "the hub's in one";
  Reopen();
  all_found("merged");
}

// A send whose record waits in a batch is still refused a second time
// in a later transaction, and a retried id below the sender's highest is
// found there.
TEST_F(StoreTest, ARecordInSendsRecentRefusesASecondStore) {
  Begin();
  const int64_t a = Create("a");
  const int64_t first = Enqueue(a, a, 5);
  Commit();
  Begin();
  Enqueue(a, a, 6);
  QueuedMessage again;
  again.sender_id = again.recipient_id = a;
  again.sender_name = again.recipient_name = "a";
  again.client_msg_id = 5;
  again.body = "¿otra vez? 再一次 🔁";
  EXPECT_FALSE(store_->Enqueue(again).ok());
  store_->Rollback();
  auto f = store_->FindSend(a, 5);
  ASSERT_TRUE(f.ok() && f->has_value());
  EXPECT_EQ(**f, first);
  EXPECT_FALSE(store_->FindSend(a, 6)->has_value()) << "rolled back";
}

// What a rolled-back transaction put in a batch is forgotten: the same
// ids are new again, and stored once.
TEST_F(StoreTest, ARollbackForgetsTheRecentRecordsItWrote) {
  Begin();
  const int64_t a = Create("a");
  Commit();
  Begin();
  Enqueue(a, a, 1);
  Enqueue(a, a, 2);
  ASSERT_TRUE(store_->FindSend(a, 1)->has_value());
  store_->Rollback();
  EXPECT_FALSE(store_->FindSend(a, 1)->has_value());
  EXPECT_FALSE(store_->FindSend(a, 2)->has_value());
  Begin();
  const int64_t id = Enqueue(a, a, 1);
  Commit();
  EXPECT_EQ(**store_->FindSend(a, 1), id);
  EXPECT_EQ(
      RawBatchRecords(path_).size() + static_cast<size_t>(RawRunRecords(path_)),
      1u);
}

// The batches are merged when they hold 4,096 records, without a Prune:
// each transaction's one send is a batch, and there are never more.
TEST_F(StoreTest, SendsRecentIsMergedWhenFull) {
  constexpr int kSends = 5000;
  Reopen(StoreOptions{SyncMode::kNormal});
  Begin();
  const int64_t a = Create("a");
  Commit();
  std::vector<int64_t> ids;
  for (int i = 1; i <= kSends; ++i) {
    Begin();
    ids.push_back(Enqueue(a, a, static_cast<uint64_t>(i)));
    Commit();
  }
  EXPECT_EQ(RawCount(path_, "send_batches"), kSends - 4096);
  EXPECT_EQ(RawRunRecords(path_), 4096);
  EXPECT_EQ(RawCount(path_, "send_runs"), 4096 / 128);
  for (int i = 1; i <= kSends; i += 499) {
    EXPECT_EQ(**store_->FindSend(a, static_cast<uint64_t>(i)), ids[i - 1])
        << "send " << i;
  }
}

// --- Notices: the log (schema v7) --------------------------------------------

class NoticeLogTest : public StoreTest {
 protected:
  void Add(int64_t account, int64_t message_id, int64_t cap = 10'000) {
    Notice n{
        message_id % 2 ? NoticeKind::kDelivered : NoticeKind::kUndeliverable,
        message_id, "Zoë 🌍 " + std::to_string(message_id),
        static_cast<uint64_t>(message_id) + 1'000'000};
    ASSERT_TRUE(store_->AddNotice(account, n, cap).ok());
  }
  void Ack(int64_t account, int64_t message_id) {
    ASSERT_TRUE(store_->AckNotice(account, message_id).ok());
  }
  // The account's notices as listed: their message ids, each checked whole.
  std::vector<int64_t> Listed(int64_t account, int64_t limit = 100'000) {
    auto list = store_->ListNotices(account, limit);
    EXPECT_TRUE(list.ok()) << list.status().ToString();
    std::vector<int64_t> ids;
    if (!list.ok()) return ids;
    for (const Notice& n : *list) {
      ids.push_back(n.message_id);
      EXPECT_EQ(n.peer_name, "Zoë 🌍 " + std::to_string(n.message_id));
      EXPECT_EQ(n.client_msg_id,
                static_cast<uint64_t>(n.message_id) + 1'000'000);
      EXPECT_EQ(n.kind, n.message_id % 2 ? NoticeKind::kDelivered
                                         : NoticeKind::kUndeliverable);
    }
    return ids;
  }
};

// Notices acknowledged soon never reach `notices`: added and acknowledged
// in the log, a row per commit; what is live is counted, listed in message
// id order with those of the table, and found again after a restart (the
// log replayed).
TEST_F(NoticeLogTest, NoticesLiveInTheLogUntilAcknowledged) {
  Begin();
  const int64_t a = Create("a");
  for (int64_t id : {5, 3, 9}) Add(a, id);
  Add(a, 5);  // a second add of one notice changes nothing
  Commit();
  EXPECT_EQ(RawCount(path_, "notices"), 0);
  EXPECT_EQ(RawCount(path_, "notice_log"), 1) << "a row per commit";
  EXPECT_EQ(RawStoredNotices(path_), 3);
  Begin();
  Ack(a, 3);
  Ack(a, 4);  // none such: nothing
  Commit();
  EXPECT_EQ(RawStoredNotices(path_), 2);
  EXPECT_EQ(Listed(a), (std::vector<int64_t>{5, 9}));
  EXPECT_EQ(*store_->CountNotices(a), 2);
  Reopen();
  EXPECT_EQ(Listed(a), (std::vector<int64_t>{5, 9}));
  EXPECT_EQ(Listed(a, 1), (std::vector<int64_t>{5}));
  EXPECT_EQ(*store_->CountNotices(a), 2);
  EXPECT_EQ(store_->Totals()->notices, 2);
  Begin();
  Ack(a, 9);
  Commit();
  Reopen();
  EXPECT_EQ(Listed(a), (std::vector<int64_t>{5}));
}

// The log is compacted when it holds 4,096 operations (and twice as many
// as are live): live notices are carried over in one row; past 16,384
// (senders away) they move into `notices`.
// Either way every live notice is listed, in order, counted, and
// acknowledged, before and after a restart.
TEST_F(NoticeLogTest, TheLogIsCompacted) {
  Begin();
  const int64_t a = Create("a");
  const int64_t b = Create("b");
  Commit();
  // 30 transactions of 100 notices each, every one but 2 of a transaction
  // acknowledged in the next: over 5,000 operations, 60 left live.
  std::vector<int64_t> live;
  for (int round = 0; round < 30; ++round) {
    Begin();
    for (int i = 0; i < 100; ++i) Add(a, round * 100 + i + 1);
    if (round > 0) {
      for (int i = 0; i < 100; ++i) {
        const int64_t id = (round - 1) * 100 + i + 1;
        if (i % 50 == 7) {
          live.push_back(id);
        } else {
          Ack(a, id);
        }
      }
    }
    Commit();
  }
  Begin();
  for (int i = 0; i < 100; ++i) Ack(a, 29 * 100 + i + 1);
  Commit();
  EXPECT_EQ(RawCount(path_, "notices"), 0) << "carried over, not moved";
  EXPECT_LT(RawCount(path_, "notice_log"), 30) << "compacted";
  EXPECT_EQ(Listed(a), live);
  EXPECT_EQ(*store_->CountNotices(a), static_cast<int64_t>(live.size()));
  Reopen();
  EXPECT_EQ(Listed(a), live);
  EXPECT_EQ(*store_->CountNotices(a), static_cast<int64_t>(live.size()));

  // b's sender is away: 16,400 notices in one transaction, more live than
  // are carried over: they move into `notices`, a's with them.
  constexpr int64_t kAway = 16'400;
  Begin();
  for (int i = 1; i <= kAway; ++i) Add(b, 100'000 + i, /*cap=*/kAway);
  Commit();
  EXPECT_EQ(RawCount(path_, "notices"),
            kAway + static_cast<int64_t>(live.size()));
  EXPECT_EQ(RawStoredNotices(path_), kAway + static_cast<int64_t>(live.size()));
  Begin();
  Ack(b, 100'001);         // from the table
  Add(b, 200'000, kAway);  // into the log again
  Commit();
  std::vector<int64_t> bs = Listed(b);
  ASSERT_EQ(bs.size(), static_cast<size_t>(kAway));
  EXPECT_EQ(bs.front(), 100'002);
  EXPECT_EQ(bs.back(), 200'000);
  EXPECT_TRUE(std::is_sorted(bs.begin(), bs.end()));
  EXPECT_EQ(Listed(a), live);
  Reopen();
  EXPECT_EQ(*store_->CountNotices(b), kAway);
  EXPECT_EQ(Listed(b, 2), (std::vector<int64_t>{100'002, 100'003}));
  EXPECT_EQ(store_->Totals()->notices,
            kAway + static_cast<int64_t>(live.size()));
}

// At the cap the oldest notices go, whether they were logged or in the
// table.
TEST_F(NoticeLogTest, TheCapDropsTheOldestLoggedNotices) {
  Begin();
  const int64_t a = Create("a");
  for (int64_t id = 1; id <= 5; ++id) Add(a, id, 5);
  Commit();
  Begin();
  Add(a, 6, 5);
  Add(a, 7, 5);
  Commit();
  EXPECT_EQ(Listed(a), (std::vector<int64_t>{3, 4, 5, 6, 7}));
  Reopen();
  EXPECT_EQ(Listed(a), (std::vector<int64_t>{3, 4, 5, 6, 7}));
  EXPECT_EQ(*store_->CountNotices(a), 5);
}

// Deleting an account removes its logged notices (an acknowledgement in the
// log each), also after a restart; another account's stay. A rolled-back
// transaction's notice operations are forgotten.
TEST_F(NoticeLogTest, DeletionAndRollbackLeaveTheLogRight) {
  Begin();
  const int64_t a = Create("a");
  const int64_t b = Create("b");
  Add(a, 1);
  Add(b, 2);
  Commit();
  Begin();
  Add(a, 3);
  ASSERT_TRUE(store_->DeleteAccount(a).ok());
  Commit();
  EXPECT_TRUE(Listed(a).empty());
  EXPECT_EQ(RawStoredNotices(path_), 1);
  Reopen();
  EXPECT_TRUE(Listed(a).empty());
  EXPECT_EQ(Listed(b), (std::vector<int64_t>{2}));

  Begin();
  Add(b, 4);
  Ack(b, 2);
  EXPECT_EQ(Listed(b), (std::vector<int64_t>{4})) << "in the transaction";
  store_->Rollback();
  EXPECT_EQ(Listed(b), (std::vector<int64_t>{2}));
  EXPECT_EQ(*store_->CountNotices(b), 1);
  Reopen();
  EXPECT_EQ(Listed(b), (std::vector<int64_t>{2}));
}

// A damaged row of the log makes the reads of notices fail with a storage
// error; nothing crashes.
TEST_F(NoticeLogTest, ADamagedLogRowIsAnError) {
  Begin();
  const int64_t a = Create("a");
  Add(a, 1);
  Commit();
  RawWrite("UPDATE notice_log SET records = x'0901'");
  auto list = store_->ListNotices(a, 10);
  ASSERT_FALSE(list.ok());
  ExpectDamaged(list.status());
  EXPECT_FALSE(store_->CountNotices(a).ok());
}

// --- Messages for online recipients: the log (schema v8) ---------------------

class MessageLogTest : public StoreTest {
 protected:
  // Queues a message from `from` to `to`, logged when `online`.
  int64_t Queue(int64_t from, int64_t to, uint64_t client_msg_id, bool online,
                std::string body = "") {
    QueuedMessage m;
    m.sender_id = from;
    m.sender_name = "Zoë";
    m.recipient_id = to;
    m.recipient_name = "محمد";
    m.client_msg_id = client_msg_id;
    m.body = body.empty() ? "ça va? 你好 👋 " + std::to_string(client_msg_id)
                          : std::move(body);
    m.sent_at_ms = 1000 + static_cast<int64_t>(client_msg_id);
    m.recipient_online = online;
    Result<int64_t> id = store_->Enqueue(m);
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    return id.ok() ? *id : 0;
  }
  // The recipient's queue as fetched: its message ids, bodies checked.
  std::vector<int64_t> Fetched(int64_t to, int64_t limit = 100'000) {
    auto fetched = store_->FetchPending(to, limit);
    EXPECT_TRUE(fetched.ok()) << fetched.status().ToString();
    std::vector<int64_t> ids;
    if (!fetched.ok()) return ids;
    for (const QueuedMessage& m : *fetched) {
      ids.push_back(m.id);
      EXPECT_EQ(m.recipient_id, to);
      EXPECT_EQ(m.sender_name, "Zoë");
      EXPECT_EQ(m.body.rfind("ça va? 你好 👋 ", 0) == 0 || m.body.size() > 1000,
                true)
          << m.body;
    }
    return ids;
  }
  int64_t LoggedTotal() {
    return RawValue(path_,
                    "SELECT coalesce(sum(adds - removes), 0) FROM message_log");
  }
};

// A message for an online recipient is logged, not inserted: counted,
// fetched in id order with the table's, confirmed (its sender's details
// returned for the notice), refused to another recipient, and found again
// after a restart (the log replayed). A logged operation counts as a change.
TEST_F(MessageLogTest, MessagesForOnlineRecipientsLiveInTheLog) {
  Begin();
  const int64_t a = Create("a");
  const int64_t b = Create("b");
  const int64_t c = Create("c");
  const int64_t t1 = Queue(a, b, 1, /*online=*/false);
  const int64_t changes = store_->TotalChanges();
  const int64_t l1 = Queue(a, b, 2, /*online=*/true);
  EXPECT_GT(store_->TotalChanges(), changes) << "a logged send is a change";
  const int64_t t2 = Queue(a, b, 3, /*online=*/false);
  const int64_t l2 = Queue(a, b, 4, /*online=*/true);
  EXPECT_EQ(Fetched(b), (std::vector<int64_t>{t1, l1, t2, l2}))
      << "in the transaction";
  Commit();
  EXPECT_EQ(RawCount(path_, "messages"), 2);
  EXPECT_EQ(LoggedTotal(), 2);
  EXPECT_EQ(RawCount(path_, "message_log"), 1) << "a row per commit";
  EXPECT_EQ(*store_->CountPending(b), 4);
  EXPECT_EQ(Fetched(b), (std::vector<int64_t>{t1, l1, t2, l2}));
  EXPECT_EQ(Fetched(b, 2), (std::vector<int64_t>{t1, l1}));
  EXPECT_EQ(store_->Totals()->queued_messages, 4);

  Reopen();
  EXPECT_EQ(Fetched(b), (std::vector<int64_t>{t1, l1, t2, l2}));
  EXPECT_EQ(*store_->CountPending(b), 4);
  Begin();
  EXPECT_EQ(store_->ConfirmDelivery(c, l1)->outcome, ReceiptOutcome::kNotYours);
  const int64_t before = store_->TotalChanges();
  auto r = store_->ConfirmDelivery(b, l1);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->outcome, ReceiptOutcome::kConfirmed);
  EXPECT_GT(store_->TotalChanges(), before) << "a logged receipt is a change";
  EXPECT_EQ(r->message.sender_id, a);
  EXPECT_EQ(r->message.sender_name, "Zoë");
  EXPECT_EQ(r->message.recipient_name, "محمد");
  EXPECT_EQ(r->message.client_msg_id, 2u);
  EXPECT_EQ(store_->ConfirmDelivery(b, l1)->outcome,
            ReceiptOutcome::kAlreadyConfirmed);
  EXPECT_EQ(store_->ConfirmDelivery(b, t1)->outcome,
            ReceiptOutcome::kConfirmed);
  Commit();
  EXPECT_EQ(*store_->CountPending(b), 2);
  Reopen();
  EXPECT_EQ(Fetched(b), (std::vector<int64_t>{t2, l2}));
  EXPECT_EQ(*store_->CountPending(b), 2);
  EXPECT_EQ(**store_->FindSend(a, 4), l2) << "its dedup record as any";
  EXPECT_EQ(store_->Totals()->queued_messages, 2);
}

// The log is compacted at 4,096 operations: a few small live messages are
// carried over in one row; live messages of more than 256 KiB (recipients
// away) move into `messages`. Either way every one is fetched, in order,
// and confirmed, before and after a restart.
TEST_F(MessageLogTest, TheLogIsCompacted) {
  Begin();
  const int64_t a = Create("a");
  const int64_t b = Create("b");
  Commit();
  std::vector<int64_t> live;
  uint64_t next = 1;
  for (int round = 0; round < 30; ++round) {
    Begin();
    std::vector<int64_t> ids;
    for (int i = 0; i < 100; ++i) ids.push_back(Queue(a, b, next++, true));
    for (int i = 0; i < 100; ++i) {
      if (i % 50 == 7) {
        live.push_back(ids[i]);
      } else {
        ASSERT_EQ(store_->ConfirmDelivery(b, ids[i])->outcome,
                  ReceiptOutcome::kConfirmed);
      }
    }
    Commit();
  }
  EXPECT_EQ(RawCount(path_, "messages"), 0) << "carried over, not moved";
  EXPECT_LT(RawCount(path_, "message_log"), 30) << "compacted";
  EXPECT_EQ(Fetched(b), live);
  EXPECT_EQ(*store_->CountPending(b), static_cast<int64_t>(live.size()));
  Reopen();
  EXPECT_EQ(Fetched(b), live);

  // Twenty bodies of 16 KiB wait: over the bytes carried over, so at the
  // next compaction every live message moves into `messages`.
  Begin();
  for (int i = 0; i < 20; ++i) {
    live.push_back(Queue(a, b, next++, true, std::string(16384, 'x')));
  }
  for (int i = 0; i < 4096; ++i) {
    const int64_t id = Queue(a, b, next++, true);
    ASSERT_EQ(store_->ConfirmDelivery(b, id)->outcome,
              ReceiptOutcome::kConfirmed);
  }
  Commit();
  EXPECT_EQ(RawCount(path_, "messages"), static_cast<int64_t>(live.size()));
  EXPECT_EQ(LoggedTotal(), 0);
  EXPECT_EQ(Fetched(b), live);
  Reopen();
  EXPECT_EQ(Fetched(b), live);
  EXPECT_EQ(*store_->CountPending(b), static_cast<int64_t>(live.size()));
  Begin();
  EXPECT_EQ(store_->ConfirmDelivery(b, live.front())->outcome,
            ReceiptOutcome::kConfirmed)
      << "from the table";
  Commit();
  EXPECT_EQ(*store_->CountPending(b), static_cast<int64_t>(live.size()) - 1);
}

// Logged messages that wait hold their text in memory: past 4 MiB of it a
// commit compacts the log however few its operations, and they move into
// `messages`.
TEST_F(MessageLogTest, LargeWaitingMessagesMoveToTheTable) {
  Begin();
  const int64_t a = Create("a");
  const int64_t b = Create("b");
  Commit();
  Begin();
  std::vector<int64_t> ids;
  for (uint64_t i = 1; i <= 300; ++i) {
    ids.push_back(Queue(a, b, i, true, std::string(16384, 'y')));
  }
  Commit();
  EXPECT_EQ(RawCount(path_, "messages"), 300) << "300 of 16 KiB: 4.7 MiB";
  EXPECT_EQ(LoggedTotal(), 0);
  EXPECT_EQ(Fetched(b), ids);
}

// Deleting an account purges its logged messages with the table's, in id
// order, removed in the log (also after a restart); a rolled-back
// transaction's logged messages are forgotten.
TEST_F(MessageLogTest, DeletionAndRollbackLeaveTheLogRight) {
  Begin();
  const int64_t a = Create("a");
  const int64_t b = Create("b");
  const int64_t c = Create("c");
  const int64_t m1 = Queue(a, b, 1, true);
  const int64_t m2 = Queue(a, b, 2, false);
  const int64_t m3 = Queue(a, b, 3, true);
  const int64_t keep = Queue(a, c, 4, true);
  Commit();
  Begin();
  auto purged = store_->DeleteAccount(b);
  ASSERT_TRUE(purged.ok());
  std::vector<int64_t> ids;
  for (const QueuedMessage& m : *purged) {
    ids.push_back(m.id);
    EXPECT_EQ(m.sender_id, a);
    EXPECT_TRUE(m.body.empty());
  }
  EXPECT_EQ(ids, (std::vector<int64_t>{m1, m2, m3}));
  Commit();
  Reopen();
  EXPECT_TRUE(Fetched(b).empty());
  EXPECT_EQ(Fetched(c), (std::vector<int64_t>{keep}));
  EXPECT_EQ(store_->Totals()->queued_messages, 1);

  Begin();
  Queue(a, c, 5, true);
  ASSERT_EQ(store_->ConfirmDelivery(c, keep)->outcome,
            ReceiptOutcome::kConfirmed);
  store_->Rollback();
  EXPECT_EQ(Fetched(c), (std::vector<int64_t>{keep}));
  EXPECT_EQ(*store_->CountPending(c), 1);
  Reopen();
  EXPECT_EQ(Fetched(c), (std::vector<int64_t>{keep}));
}

// A damaged row of the log makes the reads of queues fail with a storage
// error; nothing crashes.
TEST_F(MessageLogTest, ADamagedLogRowIsAnError) {
  Begin();
  const int64_t a = Create("a");
  Queue(a, a, 1, true);
  Commit();
  RawWrite("UPDATE message_log SET records = x'0102'");
  auto fetched = store_->FetchPending(a, 10);
  ASSERT_FALSE(fetched.ok());
  ExpectDamaged(fetched.status());
  EXPECT_FALSE(store_->CountPending(a).ok());
}

TEST(StoreOpenTest, RefusesNewerSchema) {
  TempDir dir;
  const std::string path = dir.File("newer.db");
  const int newer = SqliteStore::kSchemaVersion + 1;
  RawExec(path, "CREATE TABLE future(x); PRAGMA user_version=" +
                    std::to_string(newer));
  for (bool read_only : {false, true}) {
    StoreOptions options;
    options.read_only = read_only;
    auto opened = Store::Open(path, options);
    ASSERT_FALSE(opened.ok()) << "read_only=" << read_only;
    const Status& s = opened.status();
    EXPECT_EQ(s.code(), ErrorCode::kStorage);
    EXPECT_EQ(s.detail(), "open " + path + ": database schema version " +
                              std::to_string(newer) +
                              " is newer than this broker's schema version " +
                              std::to_string(SqliteStore::kSchemaVersion));
  }
}

TEST(StoreOpenTest, RefusesFileThatIsNotADatabase) {
  TempDir dir;
  const std::string path = dir.File("notes.txt");
  std::string text;
  for (int i = 0; i < 200; ++i) text += "these are not the pages you want\n";
  std::ofstream(path, std::ios::binary) << text;
  for (bool read_only : {false, true}) {
    StoreOptions options;
    options.read_only = read_only;
    auto opened = Store::Open(path, options);
    ASSERT_FALSE(opened.ok()) << "read_only=" << read_only;
    EXPECT_EQ(opened.status().code(), ErrorCode::kStorage);
    const std::string& detail = opened.status().detail();
    EXPECT_NE(detail.find(path), std::string::npos) << detail;
    EXPECT_NE(detail.find("not a database"), std::string::npos) << detail;
  }
  EXPECT_EQ(ReadWhole(path), text) << "the file was changed";
}

TEST(StoreOpenTest, ReadOnlyRefusesSchemaThatNeedsMigrating) {
  TempDir dir;
  const std::string path = dir.File("empty.db");
  RawExec(path, "CREATE TABLE unrelated(x)");  // a database at version 0
  StoreOptions options;
  options.read_only = true;
  auto opened = Store::Open(path, options);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), ErrorCode::kStorage);
  EXPECT_NE(opened.status().detail().find("read-only"), std::string::npos)
      << opened.status().detail();
}

TEST(StoreOpenTest, ReadOnlyServesReadsAndRefusesWrites) {
  TempDir dir;
  const std::string path = dir.File("store.db");
  {
    auto store = Store::Open(path, {});
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Begin().ok());
    ASSERT_TRUE((*store)->CreateAccount("alice", "alice", "h", 1).ok());
    ASSERT_TRUE((*store)->Commit().ok());
  }
  StoreOptions options;
  options.read_only = true;
  auto store = Store::Open(path, options);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto alice = (*store)->FindAccount("alice");
  ASSERT_TRUE(alice.ok() && alice->has_value());
  // May or may not succeed; writes fail either way.
  (*store)->Begin().IgnoreError();
  auto created = (*store)->CreateAccount("bob", "bob", "h", 1);
  EXPECT_FALSE(created.ok());
  (*store)->Rollback();
  auto bob = (*store)->FindAccount("bob");
  ASSERT_TRUE(bob.ok());
  EXPECT_FALSE(bob->has_value());
}

}  // namespace
}  // namespace zchat
