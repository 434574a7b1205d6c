// The Store contract (store.h), the same tests against both stores: SQLite
// (a file in a temporary directory, and three, partitioned_store.h) and
// PostgreSQL (a throwaway server,
// TestPostgres, one database per test). What only one store does (SQLite's
// schema migrations from a v1 file, full disks, caches) is in store_test.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <vector>

#include "broker/store.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_postgres.h"

namespace zchat {
namespace {

testing::TestPostgres& Postgres() { return testing::SharedPostgres(); }

class StoreContractTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "postgresql") {
      spec_ = Postgres().NewDatabase();
      ASSERT_FALSE(spec_.empty()) << Postgres().error();
    } else {
      spec_ = dir_.File("contract.db");
    }
    Reopen();
  }
  void Reopen() {
    store_.reset();
    StoreOptions options;
    if (GetParam() == "partitioned") options.partitions = 3;
    Result<std::unique_ptr<Store>> s = Store::Open(spec_, options);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
  }
  void Begin() { ASSERT_TRUE(store_->Begin().ok()); }
  void Commit() { ASSERT_TRUE(store_->Commit().ok()); }
  int64_t Create(const std::string& name) {
    Result<int64_t> id = store_->CreateAccount(name, name, "hash-" + name, 1);
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    return id.ok() ? *id : 0;
  }
  // Stores a MESSAGE_SUCCESS notice for `account` under a cap.
  Status AddDelivered(int64_t account, int64_t message_id,
                      const std::string& peer, int64_t cap) {
    return store_->AddNotice(
        account, Notice{NoticeKind::kDelivered, message_id, peer, 1}, cap);
  }
  int64_t Enqueue(int64_t from, int64_t to, uint64_t cmid,
                  const std::string& body = "hi") {
    QueuedMessage m;
    m.sender_id = from;
    m.sender_name = "s" + std::to_string(from);
    m.recipient_id = to;
    m.recipient_name = "r" + std::to_string(to);
    m.client_msg_id = cmid;
    m.body = body;
    m.sent_at_ms = 1000 + static_cast<int64_t>(cmid);
    Result<int64_t> id = store_->Enqueue(m);
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    return id.ok() ? *id : 0;
  }

  testing::TempDir dir_;
  std::string spec_;
  std::unique_ptr<Store> store_;
};

TEST_P(StoreContractTest, AccountsAreUniqueByKeyAndFoundBothWays) {
  Begin();
  const int64_t alice = Create("alice");
  Result<int64_t> again = store_->CreateAccount("Alice", "alice", "h", 2);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), ErrorCode::kUsernameTaken);
  EXPECT_TRUE(store_->InTransaction()) << "a taken name is not a failure";
  const int64_t bob = Create("bob");
  Commit();
  EXPECT_NE(alice, bob);
  auto by_key = store_->FindAccount("alice");
  ASSERT_TRUE(by_key.ok() && by_key->has_value());
  EXPECT_EQ((*by_key)->id, alice);
  EXPECT_EQ((*by_key)->password_hash, "hash-alice");
  auto by_id = store_->FindAccountById(bob);
  ASSERT_TRUE(by_id.ok() && by_id->has_value());
  EXPECT_EQ((*by_id)->name, "bob");
  EXPECT_FALSE(store_->FindAccount("carol")->has_value());
}

TEST_P(StoreContractTest, WritesOutsideATransactionAreRefused) {
  Result<int64_t> id = store_->CreateAccount("a", "a", "h", 1);
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().code(), ErrorCode::kStorage);
  EXPECT_FALSE(store_->FindAccount("a")->has_value());
}

TEST_P(StoreContractTest, QueueKeepsOrderBodiesAndDedup) {
  Begin();
  const int64_t a = Create("a"), b = Create("b");
  // Every script people type, and a NUL byte (valid UTF-8).
  const std::string bodies[] = {"héllo wörld", "你好，世界 🌍👋🏽",
                                "שלום عالم", std::string("nul\0byte", 8)};
  std::vector<int64_t> ids;
  for (uint64_t i = 0; i < 4; ++i)
    ids.push_back(Enqueue(a, b, 100 + i, bodies[i]));
  Commit();
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
  EXPECT_EQ(*store_->CountPending(b), 4);
  EXPECT_EQ(*store_->FindSend(a, 102), std::optional<int64_t>(ids[2]));
  EXPECT_FALSE(store_->FindSend(a, 999)->has_value());
  EXPECT_FALSE(store_->FindSend(b, 100)->has_value()) << "dedup is per sender";
  Result<std::vector<QueuedMessage>> fetched = store_->FetchPending(b, 3);
  ASSERT_TRUE(fetched.ok());
  ASSERT_EQ(fetched->size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ((*fetched)[i].id, ids[i]);
    EXPECT_EQ((*fetched)[i].body, bodies[i]);
    EXPECT_EQ((*fetched)[i].sender_id, a);
    EXPECT_EQ((*fetched)[i].client_msg_id, 100 + i);
  }
  EXPECT_EQ(store_->FetchPending(b, 10)->back().body, bodies[3]);
}

TEST_P(StoreContractTest, ReceiptOutcomes) {
  Begin();
  const int64_t a = Create("a"), b = Create("b");
  const int64_t id = Enqueue(a, b, 1);
  Commit();
  Begin();
  EXPECT_EQ(store_->ConfirmDelivery(a, id)->outcome, ReceiptOutcome::kNotYours);
  Result<ReceiptResult> r = store_->ConfirmDelivery(b, id);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->outcome, ReceiptOutcome::kConfirmed);
  EXPECT_EQ(r->message.sender_id, a);
  EXPECT_EQ(r->message.client_msg_id, 1u);
  EXPECT_EQ(store_->ConfirmDelivery(b, id)->outcome,
            ReceiptOutcome::kAlreadyConfirmed);
  EXPECT_EQ(store_->ConfirmDelivery(b, id + 1000)->outcome,
            ReceiptOutcome::kUnknown);
  Commit();
  EXPECT_EQ(*store_->CountPending(b), 0);
}

TEST_P(StoreContractTest, RollbackUndoesWritesAndIdsAreNotReused) {
  Begin();
  const int64_t a = Create("a");
  const int64_t kept = Enqueue(a, a, 1);
  Commit();
  Begin();
  const int64_t lost = Enqueue(a, a, 2);
  Create("ghost");
  store_->Rollback();
  EXPECT_FALSE(store_->InTransaction());
  EXPECT_FALSE(store_->FindAccount("ghost")->has_value());
  EXPECT_FALSE(store_->FindSend(a, 2)->has_value());
  EXPECT_EQ(*store_->CountPending(a), 1);
  Begin();
  const int64_t next = Enqueue(a, a, 2);
  Commit();
  EXPECT_GT(lost, kept);
  EXPECT_GT(next, lost) << "an id handed out before a rollback is not reused";
  Reopen();
  Begin();
  EXPECT_GT(Enqueue(a, a, 3), next) << "nor after a restart";
  Commit();
}

TEST_P(StoreContractTest, CheckSendTellsRetriesUnknownRecipientsAndQueues) {
  Begin();
  const int64_t a = Create("a"), b = Create("b");
  const int64_t first = Enqueue(a, b, 1);
  Enqueue(a, b, 2);
  Commit();
  Begin();
  Result<SendCheck> retry = store_->CheckSend(a, 1, "b");
  ASSERT_TRUE(retry.ok()) << retry.status().ToString();
  EXPECT_EQ(retry->prior, std::optional<int64_t>(first));
  Result<SendCheck> unknown = store_->CheckSend(a, 3, "nobody");
  ASSERT_TRUE(unknown.ok());
  EXPECT_FALSE(unknown->prior.has_value());
  EXPECT_FALSE(unknown->recipient.has_value());
  Result<SendCheck> fresh = store_->CheckSend(a, 3, "b");
  ASSERT_TRUE(fresh.ok());
  EXPECT_FALSE(fresh->prior.has_value());
  ASSERT_TRUE(fresh->recipient.has_value());
  EXPECT_EQ(fresh->recipient->id, b);
  EXPECT_EQ(fresh->recipient->name, "b");
  EXPECT_EQ(fresh->queued, 2);
  // Stored under the id it reserved, if it reserved one.
  QueuedMessage m;
  m.id = fresh->reserved_id;
  m.sender_id = a;
  m.sender_name = "a";
  m.recipient_id = b;
  m.recipient_name = "b";
  m.client_msg_id = 3;
  m.body = "café 你好 🙂 שלום مرحبا";
  m.sent_at_ms = 5;
  Result<int64_t> id = store_->Enqueue(m);
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  if (fresh->reserved_id != 0) {
    EXPECT_EQ(*id, fresh->reserved_id);
  }
  EXPECT_GT(*id, first);
  // Read back in the same transaction: the write was sent before the read.
  Result<SendCheck> again = store_->CheckSend(a, 3, "b");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->prior, std::optional<int64_t>(*id));
  Commit();
  Result<std::vector<QueuedMessage>> queued = store_->FetchPending(b, 10);
  ASSERT_TRUE(queued.ok());
  ASSERT_EQ(queued->size(), 3u);
  EXPECT_EQ(queued->back().id, *id);
  EXPECT_EQ(queued->back().body, m.body);
}

// A batch's later messages, checked with the recipient an earlier check
// found, are answered as CheckSend answers them.
TEST_P(StoreContractTest, CheckSendToAnswersAsCheckSend) {
  Begin();
  const std::string kKey = "\xe5\xb0\x8f\xe6\x98\x8e";  // the store's key
  const int64_t a = Create("Zo\xc3\xab"), b = Create(kKey);
  const int64_t first = Enqueue(a, b, 1);
  Commit();
  Begin();
  Result<SendCheck> found = store_->CheckSend(a, 2, kKey);
  ASSERT_TRUE(found.ok()) << found.status().ToString();
  ASSERT_TRUE(found->recipient.has_value());
  const Account to = *found->recipient;
  Result<SendCheck> retry = store_->CheckSendTo(a, 1, kKey, to);
  ASSERT_TRUE(retry.ok()) << retry.status().ToString();
  EXPECT_EQ(retry->prior, std::optional<int64_t>(first));
  // Two new messages: each stored under its own id, each check counting
  // what the queue holds.
  std::vector<int64_t> ids;
  for (uint64_t cmid : {uint64_t{2}, uint64_t{3}}) {
    Result<SendCheck> fresh =
        cmid == 2 ? found : store_->CheckSendTo(a, cmid, kKey, to);
    ASSERT_TRUE(fresh.ok()) << fresh.status().ToString();
    EXPECT_FALSE(fresh->prior.has_value());
    ASSERT_TRUE(fresh->recipient.has_value());
    EXPECT_EQ(fresh->recipient->id, b);
    EXPECT_EQ(fresh->recipient->name, "\xe5\xb0\x8f\xe6\x98\x8e");
    // The queue as stored (a partitioned store may count this check's
    // place too).
    EXPECT_GE(fresh->queued, 1 + static_cast<int64_t>(ids.size()));
    EXPECT_LE(fresh->queued, 2 + static_cast<int64_t>(ids.size()));
    QueuedMessage m;
    m.id = fresh->reserved_id;
    m.sender_id = a;
    m.sender_name = "Zo\xc3\xab";
    m.recipient_id = b;
    m.recipient_name = fresh->recipient->name;
    m.client_msg_id = cmid;
    m.body = "\xd9\x85\xd8\xb1\xd8\xad\xd8\xa8\xd8\xa7 " + std::to_string(cmid);
    m.sent_at_ms = 5;
    Result<int64_t> id = store_->Enqueue(m);
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    if (fresh->reserved_id != 0) {
      EXPECT_EQ(*id, fresh->reserved_id);
    }
    ids.push_back(*id);
  }
  EXPECT_LT(ids[0], ids[1]);
  // Checked again, the new ones are retries.
  Result<SendCheck> again = store_->CheckSendTo(a, 3, kKey, to);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->prior, std::optional<int64_t>(ids[1]));
  Commit();
  Result<std::vector<QueuedMessage>> queued = store_->FetchPending(b, 10);
  ASSERT_TRUE(queued.ok());
  ASSERT_EQ(queued->size(), 3u);
  EXPECT_EQ(queued->back().id, ids[1]);
}

// A retry is found whatever order the client's ids came in (an id below
// the sender's highest, the top of uint64, which SQLite holds as negative),
// a new id is not taken for a retry, and a rolled-back send leaves no record.
TEST_P(StoreContractTest, RetriesAreFoundWhateverTheOrderOfClientIds) {
  Begin();
  const int64_t a = Create("emma"), b = Create("ben");
  const uint64_t kTop = UINT64_MAX, kHalf = uint64_t{1} << 63;
  std::vector<std::pair<uint64_t, int64_t>> sent;
  for (uint64_t cmid : {uint64_t{10}, uint64_t{3}, kTop, uint64_t{7}, kHalf}) {
    sent.emplace_back(cmid, Enqueue(a, b, cmid, "👋 שלום"));
  }
  Commit();
  auto prior = [&](uint64_t cmid) {
    Result<SendCheck> c = store_->CheckSend(a, cmid, "ben");
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? c->prior : std::nullopt;
  };
  Begin();
  for (const auto& [cmid, id] : sent) {
    EXPECT_EQ(prior(cmid), std::optional<int64_t>(id)) << "cmid " << cmid;
  }
  for (uint64_t fresh : {uint64_t{0}, uint64_t{4}, uint64_t{11}, kTop - 1}) {
    EXPECT_EQ(prior(fresh), std::nullopt) << "cmid " << fresh;
  }
  // The other direction has no records.
  Result<SendCheck> back = store_->CheckSend(b, 10, "emma");
  ASSERT_TRUE(back.ok());
  EXPECT_FALSE(back->prior.has_value());
  const int64_t twenty = Enqueue(a, b, 20);
  EXPECT_EQ(prior(20), std::optional<int64_t>(twenty));
  store_->Rollback();
  Begin();
  EXPECT_EQ(prior(20), std::nullopt) << "a rolled-back send left a record";
  EXPECT_EQ(prior(10), std::optional<int64_t>(sent[0].second));
  Commit();
}

// The queue length a send checks follows what commits: stores and
// confirmations that roll back leave it as it was.
TEST_P(StoreContractTest, QueueLengthFollowsCommitsOnly) {
  Begin();
  const int64_t a = Create("a"), b = Create("b");
  const int64_t m1 = Enqueue(a, b, 1);
  Enqueue(a, b, 2);
  Commit();
  auto queued = [&] {
    Result<SendCheck> c = store_->CheckSend(a, 99, "b");
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? c->queued : -1;
  };
  EXPECT_EQ(queued(), 2);
  Begin();
  ASSERT_EQ(store_->ConfirmDelivery(b, m1)->outcome,
            ReceiptOutcome::kConfirmed);
  Enqueue(a, b, 3);
  Enqueue(a, b, 4);
  EXPECT_EQ(queued(), 3) << "in the transaction: its own changes count";
  store_->Rollback();
  EXPECT_EQ(queued(), 2) << "rolled back";
  Begin();
  ASSERT_EQ(store_->ConfirmDelivery(b, m1)->outcome,
            ReceiptOutcome::kConfirmed);
  Commit();
  EXPECT_EQ(queued(), 1);
  Reopen();
  EXPECT_EQ(queued(), 1) << "after a restart";
}

TEST_P(StoreContractTest, ASendStoredTwiceFailsItsTransaction) {
  Begin();
  const int64_t a = Create("a");
  Commit();
  Begin();
  QueuedMessage m;
  m.sender_id = m.recipient_id = a;
  m.sender_name = m.recipient_name = "a";
  m.client_msg_id = 7;
  m.body = "x";
  ASSERT_TRUE(store_->Enqueue(m).ok());
  // A second store of the same send (another broker's, in the field): this
  // call or the commit fails, and nothing of the transaction is kept.
  const bool stored = store_->Enqueue(m).ok();
  const bool committed = stored && store_->Commit().ok();
  EXPECT_FALSE(committed);
  if (store_->InTransaction()) store_->Rollback();
  EXPECT_FALSE(store_->FindSend(a, 7)->has_value());
  EXPECT_EQ(*store_->CountPending(a), 0);
  // The store goes on working.
  Begin();
  EXPECT_GT(Enqueue(a, a, 8), 0);
  Commit();
}

TEST_P(StoreContractTest, DeletingAnAccountPurgesWhatItHeld) {
  Begin();
  const int64_t a = Create("a"), b = Create("b");
  const int64_t m1 = Enqueue(a, b, 1), m2 = Enqueue(a, b, 2);
  ASSERT_TRUE(store_->AddToken("tokenhash-b", b, 5).ok());
  ASSERT_TRUE(
      store_->AddNotice(b, Notice{NoticeKind::kDelivered, 77, "x", 3}, 10)
          .ok());
  Commit();
  Begin();
  Result<std::vector<QueuedMessage>> purged = store_->DeleteAccount(b);
  ASSERT_TRUE(purged.ok());
  Commit();
  ASSERT_EQ(purged->size(), 2u);
  EXPECT_EQ((*purged)[0].id, m1);
  EXPECT_EQ((*purged)[1].id, m2);
  EXPECT_EQ((*purged)[0].sender_id, a);
  EXPECT_FALSE(store_->FindAccount("b")->has_value());
  EXPECT_FALSE(store_->FindToken("tokenhash-b", 0)->has_value());
  EXPECT_EQ(*store_->CountNotices(b), 0);
  EXPECT_EQ(*store_->CountPending(b), 0);
}

TEST_P(StoreContractTest, NoticesAreKeptInOrderCappedAndAcknowledged) {
  Begin();
  const int64_t a = Create("a");
  for (int64_t id : {30, 10, 20}) {
    ASSERT_TRUE(AddDelivered(a, id, "bob", 10).ok());
  }
  // The same message again: ignored.
  ASSERT_TRUE(AddDelivered(a, 20, "bob", 10).ok());
  EXPECT_EQ(*store_->CountNotices(a), 3);
  // Over a cap of 3: the oldest message's notice goes.
  ASSERT_TRUE(
      store_->AddNotice(a, Notice{NoticeKind::kUndeliverable, 40, "z", 2}, 3)
          .ok());
  EXPECT_EQ(*store_->CountNotices(a), 3);
  Commit();
  Result<std::vector<Notice>> list = store_->ListNotices(a, 10);
  ASSERT_TRUE(list.ok());
  std::vector<int64_t> ids;
  for (const Notice& n : *list) ids.push_back(n.message_id);
  EXPECT_EQ(ids, (std::vector<int64_t>{20, 30, 40}));
  EXPECT_EQ(list->back().kind, NoticeKind::kUndeliverable);
  EXPECT_EQ(list->back().peer_name, "z");
  Begin();
  ASSERT_TRUE(store_->AckNotice(a, 30).ok());
  EXPECT_EQ(*store_->CountNotices(a), 2);
  ASSERT_TRUE(store_->AckNotice(a, 30).ok()) << "again: nothing to remove";
  ASSERT_TRUE(store_->AckNotice(a, 99).ok()) << "never there";
  Commit();
  EXPECT_EQ(*store_->CountNotices(a), 2);
  // A lower cap drops several at once, the oldest first (20, then 40), and
  // leaves another account's notices alone.
  Begin();
  const int64_t b = Create("b");
  ASSERT_TRUE(AddDelivered(b, 5, "✉", 10).ok());
  ASSERT_TRUE(AddDelivered(a, 50, "b", 1).ok());
  Commit();
  list = store_->ListNotices(a, 10);
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ(list->front().message_id, 50);
  EXPECT_EQ(*store_->CountNotices(a), 1);
  EXPECT_EQ(*store_->CountNotices(b), 1);
}

// The cap counts what earlier transactions left, acknowledgements included.
TEST_P(StoreContractTest, NoticeCapCountsEarlierTransactions) {
  Begin();
  const int64_t a = Create("a");
  for (int64_t id : {1, 2, 3}) {
    ASSERT_TRUE(AddDelivered(a, id, "ö", 3).ok());
  }
  Commit();
  Begin();
  ASSERT_TRUE(store_->AckNotice(a, 2).ok());
  ASSERT_TRUE(store_->AckNotice(a, 2).ok()) << "a repeated acknowledgement";
  ASSERT_TRUE(AddDelivered(a, 4, "ö", 3).ok());
  Commit();
  Begin();
  ASSERT_TRUE(AddDelivered(a, 5, "ö", 3).ok());
  Commit();
  Result<std::vector<Notice>> list = store_->ListNotices(a, 10);
  ASSERT_TRUE(list.ok());
  std::vector<int64_t> ids;
  for (const Notice& n : *list) ids.push_back(n.message_id);
  EXPECT_EQ(ids, (std::vector<int64_t>{3, 4, 5}))
      << "2 acknowledged, then 1 dropped for 5";
  EXPECT_EQ(*store_->CountNotices(a), 3);
}

// Accounts held at their cap over many transactions, their notices in
// every place a store keeps them (SQLite: the log and the table, moved
// between them as the log compacts; six accounts at a cap of 3,000 hold
// more than the log carries), new ones older and younger than those they
// hold, some acknowledged: what remains of each is the cap's worth of its
// youngest, as a model of the same operations says, when the transaction
// ends and for a read inside it, and after a reopen.
TEST_P(StoreContractTest, NoticesAtTheCapKeepTheYoungest) {
  constexpr int64_t kCap = 3000;
  constexpr int kAccounts = 6;
  std::vector<std::set<int64_t>> model(kAccounts + 1);  // by account id
  const auto trim = [&] {
    for (std::set<int64_t>& m : model) {
      while (static_cast<int64_t>(m.size()) > kCap) m.erase(m.begin());
    }
  };
  const auto listed = [&](int64_t account) {
    Result<std::vector<Notice>> list = store_->ListNotices(account, 2 * kCap);
    std::vector<int64_t> ids;
    if (list.ok()) {
      for (const Notice& n : *list) ids.push_back(n.message_id);
    }
    return ids;
  };
  const auto check = [&](const std::string& when) {
    for (int64_t a = 1; a <= kAccounts; ++a) {
      const std::set<int64_t>& m = model[a];
      EXPECT_EQ(*store_->CountNotices(a), static_cast<int64_t>(m.size()))
          << when << ", account " << a;
      EXPECT_EQ(listed(a), std::vector<int64_t>(m.begin(), m.end()))
          << when << ", account " << a;
    }
  };
  Begin();
  for (int a = 1; a <= kAccounts; ++a) {
    ASSERT_EQ(Create("ناديا" + std::to_string(a)), a);
  }
  // Rounds of additions (ids that were dropped come back, as ids the store
  // never saw), acknowledgements, and a read inside the transaction.
  int64_t next = 10'000;
  for (int round = 0; round < 12; ++round) {
    if (round > 0) Begin();
    for (int i = 0; i < 700 * kAccounts; ++i) {
      const int64_t a = 1 + i % kAccounts;
      const int64_t id =
          (i % 7 == 0) ? 1 + (round * 700 + i / kAccounts) % 9'000 : next++;
      if (model[a].contains(id)) continue;
      ASSERT_TRUE(AddDelivered(a, id, "ناديا 🌍", kCap).ok());
      model[a].insert(id);
    }
    for (int64_t a = 1; a <= kAccounts; ++a) {
      for (int64_t id :
           std::vector<int64_t>(model[a].begin(), model[a].end())) {
        if (id % 11 == (round + a) % 11) {
          ASSERT_TRUE(store_->AckNotice(a, id).ok());
          model[a].erase(id);
        }
      }
    }
    // The cap holds at the end of a transaction (and for what reads see),
    // counting what it acknowledged: over it, the oldest go.
    trim();
    if (round % 3 == 0) check("inside round " + std::to_string(round));
    Commit();
    check("after round " + std::to_string(round));
    if (HasFailure()) return;
  }
  Reopen();
  check("after a reopen");
}

TEST_P(StoreContractTest, TokensExpireAndAreRevoked) {
  Begin();
  const int64_t a = Create("a");
  const std::string hash("\x00\xff token \x01", 10);  // binary
  ASSERT_TRUE(store_->AddToken(hash, a, 1000).ok());
  Commit();
  EXPECT_EQ(*store_->FindToken(hash, 500), std::optional<int64_t>(a));
  EXPECT_FALSE(store_->FindToken(hash, 2000)->has_value()) << "too old";
  EXPECT_FALSE(store_->FindToken(std::string("\x00\xff", 2), 0)->has_value());
  Begin();
  ASSERT_TRUE(store_->RevokeToken(hash).ok());
  Commit();
  EXPECT_FALSE(store_->FindToken(hash, 0)->has_value());
}

TEST_P(StoreContractTest, PruneDropsOldSendsAndTokens) {
  Begin();
  const int64_t a = Create("a");
  Enqueue(a, a, 1);  // sent at 1001
  ASSERT_TRUE(store_->AddToken("old", a, 10).ok());
  ASSERT_TRUE(store_->AddToken("new", a, 5000).ok());
  Commit();
  Begin();
  ASSERT_TRUE(store_->Prune(2000, 100).ok());
  Commit();
  EXPECT_FALSE(store_->FindSend(a, 1)->has_value());
  EXPECT_FALSE(store_->FindToken("old", 0)->has_value());
  EXPECT_TRUE(store_->FindToken("new", 0)->has_value());
  EXPECT_EQ(*store_->CountPending(a), 1) << "the message itself stays";
}

TEST_P(StoreContractTest, ScanWalksKeysInByteOrderWithinAPrefix) {
  Begin();
  for (const char* n : {"bob", "al", "alice", "alma", "zed", "al_2"}) Create(n);
  Commit();
  std::vector<std::string> seen;
  auto visit = [&](std::string_view key, std::string_view) {
    seen.emplace_back(key);
    return true;
  };
  Result<std::string> last = store_->ScanAccounts("al", "", 2, visit);
  ASSERT_TRUE(last.ok());
  EXPECT_EQ(seen, (std::vector<std::string>{"al", "al_2"}));
  EXPECT_EQ(*last, "al_2");
  last = store_->ScanAccounts("al", *last, 10, visit);
  EXPECT_EQ(seen, (std::vector<std::string>{"al", "al_2", "alice", "alma"}));
  EXPECT_EQ(*last, "") << "past the prefix: the end";
}

TEST_P(StoreContractTest, TotalsCountWhatIsCommitted) {
  Begin();
  const int64_t a = Create("a"), b = Create("b");
  Enqueue(a, b, 1);
  Enqueue(a, b, 2);
  ASSERT_TRUE(AddDelivered(a, 9, "b", 10).ok());
  Commit();
  Result<StoreTotals> t = store_->Totals();
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->accounts, 2);
  EXPECT_EQ(t->queued_messages, 2);
  EXPECT_EQ(t->notices, 1);
}

TEST_P(StoreContractTest, TotalChangesTellsWhetherARequestWrote) {
  Begin();
  const int64_t before = store_->TotalChanges();
  (void)store_->FindAccount("nobody");
  EXPECT_EQ(store_->TotalChanges(), before);
  Create("a");
  EXPECT_GT(store_->TotalChanges(), before);
  Commit();
}

// Dedup records against a model of the same sends, through what moves them
// between the places a store keeps them (SQLite: the open transaction, the
// batch rows, the runs, merges, splits of full runs, runs rewritten by ids
// out of order; a cache loaded again after a reopen): several senders, each
// transaction's ids counted up, interleaved over two recipients as a client
// that sends to both at once writes them, scattered below the sender's
// highest, at the ends of the unsigned range, or retries of earlier sends;
// some transactions rolled back, an account deleted. A send is a retry
// exactly when the model holds its id, with the model's message id, inside
// the transaction, after it, and after a reopen. Then a prune: what is
// newer than its cut-off stays, and what is found is still right.
TEST_P(StoreContractTest, DedupRecordsFollowAModelOfTheSends) {
  const bool postgres = GetParam() == "postgresql";
  std::mt19937_64 rng(20261205);
  const auto below = [&](uint64_t n) {  // uniform in [0, n)
    return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng);
  };
  using Key = std::pair<int64_t, uint64_t>;  // (sender, client_msg_id)
  struct Record {
    int64_t message_id;
    int64_t sent_at_ms;
  };
  std::map<Key, Record> model, pending;  // committed; this transaction's
  Begin();
  const int64_t r0 = Create("Zoë"), r1 = Create("李雷");
  std::vector<int64_t> senders;
  for (const char* name : {"عمر", "José", "🦊fox", "Ærøskøbing"}) {
    senders.push_back(Create(name));
  }
  Commit();
  const std::vector<std::pair<int64_t, std::string>> recipients = {
      {r0, "Zoë"}, {r1, "李雷"}};
  std::map<int64_t, uint64_t> next;  // each sender's counter
  int64_t now_ms = 1'000'000'000;

  const auto find = [&](int64_t sender, uint64_t cmid) {
    Result<std::optional<int64_t>> f = store_->FindSend(sender, cmid);
    EXPECT_TRUE(f.ok()) << f.status().ToString();
    return f.ok() ? *f : std::nullopt;
  };
  // Sends `cmid` as the handler does: a retry is answered from the record,
  // a new send stored.
  const auto send = [&](int64_t sender, uint64_t cmid, size_t to) {
    if (HasFatalFailure()) return;
    const Key key{sender, cmid};
    const auto& [rid, rkey] = recipients[to];
    Result<SendCheck> c = store_->CheckSend(sender, cmid, rkey);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    const Record* known = nullptr;
    if (auto it = pending.find(key); it != pending.end()) known = &it->second;
    if (auto it = model.find(key); !known && it != model.end()) {
      known = &it->second;
    }
    if (known) {
      ASSERT_EQ(c->prior, std::optional<int64_t>(known->message_id))
          << "sender " << sender << ", cmid " << cmid;
      return;
    }
    ASSERT_EQ(c->prior, std::nullopt)
        << "sender " << sender << ", cmid " << cmid << " was never sent";
    QueuedMessage m;
    m.id = c->reserved_id;
    m.sender_id = sender;
    m.sender_name = "s";
    m.recipient_id = rid;
    m.recipient_name = rkey;
    m.client_msg_id = cmid;
    m.body = "¿qué tal? 你好 👋 مرحبا";
    m.sent_at_ms = now_ms;
    m.recipient_online = to == 0;
    Result<int64_t> id = store_->Enqueue(m);
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    pending.emplace(key, Record{*id, now_ms});
  };
  // Every id of the model is a retry, and `absent` random ids are not.
  const auto check_all = [&](const std::string& when, int absent) {
    for (const auto& [key, record] : model) {
      ASSERT_EQ(find(key.first, key.second),
                std::optional<int64_t>(record.message_id))
          << when << ": sender " << key.first << ", cmid " << key.second;
    }
    for (int i = 0; i < absent; ++i) {
      const int64_t s = senders[below(senders.size())];
      const uint64_t cmid = rng();
      if (model.contains({s, cmid})) continue;
      ASSERT_EQ(find(s, cmid), std::nullopt) << when << ": cmid " << cmid;
    }
  };

  const int kTransactions = 48;
  for (int t = 0; t < kTransactions; ++t) {
    now_ms += (t % 9 == 8) ? 2 * 3'600'000 : 60'000;
    Begin();
    for (int64_t s : senders) {
      const uint64_t n = 1 + below(postgres ? 200 : 400);
      switch (below(5)) {
        case 0:  // counted up, to one recipient
          for (uint64_t i = 0; i < n; ++i) send(s, ++next[s], t % 2);
          break;
        case 1: {  // counted up over both, each recipient's sent together
          const uint64_t first = next[s] + 1;
          next[s] += n;
          for (size_t to = 0; to < 2; ++to) {
            for (uint64_t i = to; i < n; i += 2) send(s, first + i, to);
          }
          break;
        }
        case 2:  // scattered below the highest: new ones and retries
          for (uint64_t i = 0; i < n; ++i) {
            send(s, 1 + below(next[s] + 1), below(2));
          }
          break;
        case 3:  // the ends of the range, and around the sign bit
          for (uint64_t i = 0; i < n / 8 + 1; ++i) {
            const uint64_t around[] = {uint64_t{0}, uint64_t{1} << 63,
                                       UINT64_MAX};
            const uint64_t cmid = around[below(3)] - below(200) + 100;
            if (cmid != 0) send(s, cmid, below(2));  // ids are nonzero
          }
          break;
        default:  // retries of committed sends
          for (uint64_t i = 0; i < n && !model.empty(); ++i) {
            auto it = model.lower_bound({s, rng()});
            if (it == model.end() || it->first.first != s) continue;
            send(s, it->first.second, below(2));
          }
      }
      if (HasFatalFailure()) return;
    }
    for (int i = 0; i < 50 && !pending.empty(); ++i) {  // seen inside
      auto it = pending.lower_bound({senders[below(senders.size())], rng()});
      if (it == pending.end()) it = pending.begin();
      ASSERT_EQ(find(it->first.first, it->first.second),
                std::optional<int64_t>(it->second.message_id));
    }
    if (t % 7 == 3) {  // rolled back: none of its records stays
      store_->Rollback();
      Begin();
      for (const auto& [key, record] : pending) {
        if (!model.contains(key)) {
          ASSERT_EQ(find(key.first, key.second), std::nullopt)
              << "a rolled-back send left a record: cmid " << key.second;
        }
      }
      store_->Rollback();
    } else {
      Commit();
      model.merge(pending);
    }
    pending.clear();
    if (t % 5 == 4) {  // moves what waits into the runs, drops nothing
      Begin();
      ASSERT_TRUE(store_->Prune(0, 0).ok());
      Commit();
    }
    if (t == kTransactions / 2) {  // an account's records go with it
      Begin();
      ASSERT_TRUE(store_->DeleteAccount(senders.back()).ok());
      Commit();
      std::erase_if(model, [&](const auto& e) {
        return e.first.first == senders.back();
      });
      EXPECT_EQ(find(senders.back(), next[senders.back()]), std::nullopt);
      senders.pop_back();
    }
    if (t % 8 == 7) Reopen();
    if (t % 16 == 15) check_all("after transaction " + std::to_string(t), 200);
    if (HasFatalFailure()) return;
  }
  Reopen();
  check_all("at the end", 2000);
  if (HasFatalFailure()) return;
  ASSERT_GT(model.size(), postgres ? 2000u : 5000u);

  // The prune, at a cut-off in the middle of the sends' times, in as many
  // calls as a busy broker's housekeeping would make.
  const int64_t cut = (1'000'000'000 + now_ms) / 2;
  size_t dropped = 0;
  for (int i = 0; i < 64; ++i) {
    Begin();
    ASSERT_TRUE(store_->Prune(cut, 0).ok());
    Commit();
  }
  Reopen();
  for (const auto& [key, record] : model) {
    const std::optional<int64_t> found = find(key.first, key.second);
    if (record.sent_at_ms >= cut) {
      ASSERT_EQ(found, std::optional<int64_t>(record.message_id))
          << "pruned too early: cmid " << key.second;
    } else if (found) {
      ASSERT_EQ(*found, record.message_id) << "cmid " << key.second;
    } else {
      ++dropped;
    }
  }
  EXPECT_GT(dropped, model.size() / 4) << "the prune dropped too little";
}

// Queues against a model of the same sends and receipts, through what moves
// messages between the places a store keeps them (SQLite: the message log
// for recipients online, compacted, carried into `messages`; the table;
// confirmed rows deleted as ranges or alone): five accounts sending to each
// other in every script, recipients online or not, receipts mostly of the
// head of a queue as a client confirms what it fetched (now and then one
// left out), some of the middle, some for another's message, for one
// confirmed already or rolled back, or for an id never handed out; half the
// transactions' reads announced with Prefetch; some transactions rolled
// back, an account deleted, reopens. Each queue reads as the model's, in
// order, inside a transaction and after it.
TEST_P(StoreContractTest, QueuesFollowAModelOfSendsAndReceipts) {
  std::mt19937_64 rng(20261205);
  const auto below = [&](uint64_t n) {  // uniform in [0, n)
    return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng);
  };
  struct Sent {
    int64_t sender, recipient;
    uint64_t cmid;
    std::string body;
  };
  std::map<int64_t, Sent> queued;           // the model, by message id
  std::set<int64_t> gone;                   // confirmed, purged or rolled back
  int64_t highest = 0;                      // the highest id handed out
  std::map<int64_t, int64_t> highest_from;  // ... for each sender
  const std::vector<std::string> names = {"Ådne", "Мария", "佐藤", "נועה",
                                          "😀smile"};
  const std::string scripts[] = {"ça va? ",   "привет ", "こんにちは ",
                                 "مرحبا بك ", "🎉🚀 ",     ""};
  std::vector<int64_t> accounts;
  Begin();
  for (const std::string& n : names) accounts.push_back(Create(n));
  Commit();
  std::map<int64_t, uint64_t> next_cmid;

  const auto queue_of = [&](int64_t recipient) {
    std::vector<int64_t> ids;
    for (const auto& [id, m] : queued) {
      if (m.recipient == recipient) ids.push_back(id);
    }
    return ids;
  };
  // The store's queue of `recipient` is the model's: ids in order, who sent
  // them, their bodies, and the count.
  const auto check_queue = [&](int64_t recipient, const std::string& when) {
    const std::vector<int64_t> want = queue_of(recipient);
    Result<int64_t> count = store_->CountPending(recipient);
    ASSERT_TRUE(count.ok()) << count.status().ToString();
    ASSERT_EQ(*count, static_cast<int64_t>(want.size()))
        << when << ", account " << recipient;
    Result<std::vector<QueuedMessage>> got =
        store_->FetchPending(recipient, static_cast<int64_t>(want.size()) + 5);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    ASSERT_EQ(got->size(), want.size()) << when << ", account " << recipient;
    for (size_t i = 0; i < want.size(); ++i) {
      const QueuedMessage& m = (*got)[i];
      const Sent& s = queued.at(want[i]);
      ASSERT_EQ(m.id, want[i])
          << when << ", account " << recipient << " #" << i;
      ASSERT_EQ(m.sender_id, s.sender);
      ASSERT_EQ(m.recipient_id, recipient);
      ASSERT_EQ(m.client_msg_id, s.cmid);
      ASSERT_EQ(m.body, s.body);
    }
  };
  const auto check_all = [&](const std::string& when) {
    for (int64_t a : accounts) {
      check_queue(a, when);
      if (HasFatalFailure()) return;
    }
  };

  // One planned call: a send, or a receipt with the outcome it must have.
  struct Call {
    bool send;
    int64_t account;  // sender, or the one confirming
    int64_t other;    // recipient, or the message id
  };
  for (int t = 0; t < 60; ++t) {
    const std::map<int64_t, Sent> queued_before = queued;
    const std::set<int64_t> gone_before = gone;
    Begin();
    // Plan the transaction's calls first, so that they can be announced.
    std::vector<Call> calls;
    // From transaction 18 to 29 recipients confirm little: their queues
    // grow, in the log and past what it keeps.
    const bool away = t >= 18 && t < 30;
    const size_t n = 20 + below(away ? 600 : 300);
    for (size_t i = 0; i < n; ++i) {
      const int64_t a = accounts[below(accounts.size())];
      const uint64_t kind = below(10);
      if (kind < (away ? 9u : 5u) || queued.empty()) {
        calls.push_back({true, a, accounts[below(accounts.size())]});
      } else if (kind < 8) {  // the head of a queue, by its recipient
        const int64_t r = accounts[below(accounts.size())];
        const std::vector<int64_t> q = queue_of(r);
        const size_t take = std::min<size_t>(q.size(), 1 + below(40));
        // Now and then one left out, as by a client that lost it.
        const size_t skip = take > 1 && below(2) == 0 ? below(take) : take;
        for (size_t k = 0; k < take; ++k) {
          if (k != skip) calls.push_back({false, r, q[k]});
        }
      } else if (kind == 8) {  // anywhere in the queues, by anyone
        auto it = queued.lower_bound(1 + static_cast<int64_t>(below(highest)));
        if (it == queued.end()) it = queued.begin();
        calls.push_back(
            {false, below(2) ? it->second.recipient : a, it->first});
      } else {  // gone, or never handed out
        int64_t id = highest + 1'000'000 + static_cast<int64_t>(below(1000));
        if (below(2) && !gone.empty()) {
          auto it = gone.lower_bound(1 + static_cast<int64_t>(below(highest)));
          id = it == gone.end() ? *gone.begin() : *it;
        }
        calls.push_back({false, a, id});
      }
    }
    if (t % 2 == 0) {
      std::vector<Lookahead> reads;
      std::map<int64_t, uint64_t> cmids = next_cmid;
      for (const Call& c : calls) {
        Lookahead l;
        l.kind = c.send ? Lookahead::Kind::kSend : Lookahead::Kind::kReceipt;
        l.account_id = c.account;
        l.id = c.send ? ++cmids[c.account] : static_cast<uint64_t>(c.other);
        if (c.send) {
          l.recipient_key =
              names[std::find(accounts.begin(), accounts.end(), c.other) -
                    accounts.begin()];
        }
        reads.push_back(std::move(l));
      }
      store_->Prefetch(reads);
    }
    for (const Call& c : calls) {
      if (c.send) {
        const uint64_t cmid = ++next_cmid[c.account];
        const std::string& key =
            names[std::find(accounts.begin(), accounts.end(), c.other) -
                  accounts.begin()];
        Result<SendCheck> check = store_->CheckSend(c.account, cmid, key);
        ASSERT_TRUE(check.ok()) << check.status().ToString();
        ASSERT_FALSE(check->prior.has_value());
        ASSERT_TRUE(check->recipient.has_value());
        ASSERT_EQ(check->queued,
                  static_cast<int64_t>(queue_of(c.other).size()));
        QueuedMessage m;
        m.id = check->reserved_id;
        m.sender_id = c.account;
        m.sender_name = "s";
        m.recipient_id = c.other;
        m.recipient_name = key;
        m.client_msg_id = cmid;
        m.body = scripts[below(std::size(scripts))] + std::to_string(cmid);
        m.sent_at_ms = 1000;
        m.recipient_online = below(10) < 6;
        Result<int64_t> id = store_->Enqueue(m);
        ASSERT_TRUE(id.ok()) << id.status().ToString();
        // Ids increase (with partitions, each sender's; a recipient's queue
        // is in id order all the same) and are never reused.
        ASSERT_GT(*id, highest_from[c.account]);
        ASSERT_FALSE(queued.contains(*id) || gone.contains(*id)) << *id;
        highest_from[c.account] = *id;
        highest = std::max(highest, *id);
        queued.emplace(*id, Sent{c.account, c.other, cmid, m.body});
        continue;
      }
      Result<ReceiptResult> r = store_->ConfirmDelivery(c.account, c.other);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      const auto it = queued.find(c.other);
      ReceiptOutcome want = ReceiptOutcome::kUnknown;
      if (it != queued.end()) {
        want = it->second.recipient == c.account ? ReceiptOutcome::kConfirmed
                                                 : ReceiptOutcome::kNotYours;
      } else if (c.other <= highest) {
        want = ReceiptOutcome::kAlreadyConfirmed;
      }
      const auto name = [](ReceiptOutcome o) {
        const char* names[] = {"confirmed", "already confirmed", "not yours",
                               "unknown"};
        return std::string(names[static_cast<int>(o)]);
      };
      ASSERT_EQ(name(r->outcome), name(want))
          << "receipt of " << c.other << " by " << c.account
          << " in transaction " << t;
      if (want == ReceiptOutcome::kConfirmed) {
        ASSERT_EQ(r->message.sender_id, it->second.sender);
        ASSERT_EQ(r->message.client_msg_id, it->second.cmid);
        gone.insert(c.other);
        queued.erase(it);
      }
    }
    if (t % 3 == 0) check_all("inside transaction " + std::to_string(t));
    if (HasFatalFailure()) return;
    if (t % 6 == 5) {
      store_->Rollback();
      for (const auto& [id, m] : queued) {
        if (!queued_before.contains(id)) gone.insert(id);  // never reused
      }
      queued = queued_before;
      gone.merge(std::set<int64_t>(gone_before));
      for (int64_t id : std::set<int64_t>(gone)) {
        if (queued.contains(id)) gone.erase(id);  // confirmed, rolled back
      }
    } else {
      Commit();
    }
    check_all("after transaction " + std::to_string(t));
    if (HasFatalFailure()) return;
    if (t == 30) {  // an account's queue goes with it
      const int64_t doomed = accounts.back();
      Begin();
      Result<std::vector<QueuedMessage>> purged = store_->DeleteAccount(doomed);
      ASSERT_TRUE(purged.ok()) << purged.status().ToString();
      Commit();
      std::vector<int64_t> purged_ids;
      for (const QueuedMessage& m : *purged) purged_ids.push_back(m.id);
      std::sort(purged_ids.begin(), purged_ids.end());
      ASSERT_EQ(purged_ids, queue_of(doomed));
      for (int64_t id : purged_ids) {
        queued.erase(id);
        gone.insert(id);
      }
      accounts.pop_back();
    }
    if (t % 10 == 9) {
      Reopen();
      check_all("after a reopen at " + std::to_string(t));
      if (HasFatalFailure()) return;
    }
  }
  ASSERT_GT(gone.size(), 2000u);
  ASSERT_GT(queued.size(), 500u);
}

INSTANTIATE_TEST_SUITE_P(Stores, StoreContractTest,
                         ::testing::Values("sqlite", "partitioned",
                                           "postgresql"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace zchat
