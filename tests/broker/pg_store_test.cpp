// What only PgStore does (the contract both stores keep is in
// store_contract_test.cpp): its schema migrations, a newer schema refused,
// brokers starting together on one database, a login and another broker's
// commit that lock the same rows. A throwaway server
// (TestPostgres), a database per test; the test changes the schema behind
// the store's back with libpq, as an older or newer broker would have left
// it.
#include "broker/pg_store.h"

#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <poll.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "broker/batch.h"
#include "tests/support/core_fixture.h"
#include "tests/support/test_postgres.h"

namespace zchat {
namespace {

using testing::As;

// The first column of the first row of `sql`'s result in the database at
// `uri` (a connection of its own), or "error: ..." or "no row".
std::string ScalarAt(const std::string& uri, const std::string& sql) {
  PGconn* conn = PQconnectdb(uri.c_str());
  std::string value;
  PGresult* r = PQexec(conn, sql.c_str());
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    value = "error: " + std::string(PQerrorMessage(conn));
  } else if (PQntuples(r) == 0) {
    value = "no row";
  } else {
    value = PQgetvalue(r, 0, 0);
  }
  PQclear(r);
  PQfinish(conn);
  return value;
}

// Waits until `done`, or until a transaction of the database at `uri` waits
// for a lock (that another one holds), up to 10 s.
void UntilDoneOrWaiting(const std::string& uri, const std::atomic<bool>& done) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!done && std::chrono::steady_clock::now() < deadline &&
         ScalarAt(uri, "SELECT count(*) FROM pg_locks WHERE NOT granted") ==
             "0") {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// Another broker's commit, on a thread of its own: a notice for each of
// `accounts` (peer names in several scripts), in one transaction of
// `store`, so their notice_counts rows are locked at commit in account
// order. The constructor returns once that commit is done or waits for a
// lock that another transaction of the database (the test's) holds.
class OtherBrokersCommit {
 public:
  OtherBrokersCommit(const std::string& uri, Store& store,
                     std::vector<int64_t> accounts)
      : thread_([this, &store, accounts] {
          Status s = store.Begin();
          const char* const peers[] = {"zoë", "زينب", "李雷"};
          for (size_t i = 0; i < accounts.size() && s.ok(); ++i) {
            const int64_t id = 9000 + static_cast<int64_t>(i);
            s = store.AddNotice(accounts[i],
                                Notice{NoticeKind::kDelivered, id, peers[i % 3],
                                       static_cast<uint64_t>(id)},
                                1000);
          }
          if (s.ok()) s = store.Commit();
          status_ = s;
          done_ = true;
        }) {
    UntilDoneOrWaiting(uri, done_);
  }
  ~OtherBrokersCommit() {
    if (thread_.joinable()) thread_.join();
  }
  // Waits for the commit; its outcome.
  Status Finish() {
    thread_.join();
    return status_;
  }

 private:
  std::atomic<bool> done_{false};
  Status status_;
  std::thread thread_;
};

// Runs what a login runs in the store: its presence and row locks, then a
// read (which sends them); replies PONG.
Verdict LoginLocks(Store& store, int64_t account, Responder& out) {
  if (Status s = store.BeginSession(account); !s.ok()) return s;
  Result<int64_t> pending = store.CountPending(account);
  if (!pending.ok()) return pending.status();
  out.Reply(Pong{});
  return Verdict::Accepted();
}

class PgStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    uri_ = testing::SharedPostgres().NewDatabase();
    ASSERT_FALSE(uri_.empty()) << testing::SharedPostgres().error();
  }

  // Runs `sql` on a connection of its own; "" on success, else the error.
  std::string Exec(const std::string& sql) {
    PGconn* conn = PQconnectdb(uri_.c_str());
    std::string error;
    if (PQstatus(conn) != CONNECTION_OK) {
      error = PQerrorMessage(conn);
    } else {
      PGresult* r = PQexec(conn, sql.c_str());
      const ExecStatusType st = PQresultStatus(r);
      if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        error = PQerrorMessage(conn);
      }
      PQclear(r);
    }
    PQfinish(conn);
    return error;
  }

  std::string Scalar(const std::string& sql) { return ScalarAt(uri_, sql); }

  std::string SchemaVersion() {
    return Scalar("SELECT value FROM zchat_meta WHERE key = 'schema_version'");
  }

  Result<std::unique_ptr<Store>> Open() {
    return Store::Open(uri_, StoreOptions{});
  }

  // Two brokers' stores on the database, and two accounts, wanda's id the
  // lower.
  void TwoBrokersTwoAccounts() {
    auto a = Open();
    auto b = Open();
    ASSERT_TRUE(a.ok() && b.ok());
    a_ = std::move(*a);
    b_ = std::move(*b);
    ASSERT_TRUE(a_->Begin().ok());
    Result<int64_t> wanda = a_->CreateAccount("Wanda", "wanda", "hash", 0);
    Result<int64_t> xavier = a_->CreateAccount("Xavier", "xavier", "hash", 0);
    ASSERT_TRUE(wanda.ok() && xavier.ok());
    ASSERT_TRUE(a_->Commit().ok());
    wanda_ = *wanda;
    xavier_ = *xavier;
    ASSERT_LT(wanda_, xavier_);
  }

  std::string uri_;
  std::unique_ptr<Store> a_, b_;
  int64_t wanda_ = 0, xavier_ = 0;
};

// A database left at schema version 1 (before several brokers: no brokers
// or presence tables, no queue lengths) is migrated to the current
// version, its rows kept and its queue lengths and notices counted.
TEST_F(PgStoreTest, MigratesASchemaVersion1Database) {
  {
    auto store = Open();
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    ASSERT_TRUE((*store)->Begin().ok());
    Result<int64_t> zoe = (*store)->CreateAccount("Zoë", "zoë", "hash", 1);
    ASSERT_TRUE(zoe.ok());
    for (uint64_t cmid : {1, 2, 3}) {
      QueuedMessage m;
      m.sender_id = m.recipient_id = *zoe;
      m.sender_name = m.recipient_name = "Zoë";
      m.client_msg_id = cmid;
      m.body = "ça 😀";
      ASSERT_TRUE((*store)->Enqueue(m).ok());
    }
    ASSERT_TRUE(
        (*store)
            ->AddNotice(*zoe, Notice{NoticeKind::kDelivered, 1, "x", 1}, 10)
            .ok());
    ASSERT_TRUE((*store)->Commit().ok());
  }
  ASSERT_EQ(Exec("DROP TABLE presence; DROP TABLE brokers; DROP TABLE "
                 "queue_lengths; DROP TABLE notice_counts; UPDATE zchat_meta "
                 "SET value = 1 WHERE key = 'schema_version'"),
            "");
  auto store = Open();
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto zoe = (*store)->FindAccount("zoë");
  ASSERT_TRUE(zoe.ok() && zoe->has_value());
  EXPECT_EQ((*zoe)->name, "Zoë");
  EXPECT_EQ(Scalar("SELECT queued FROM queue_lengths"), "3");
  EXPECT_EQ(Scalar("SELECT notices FROM notice_counts"), "1");
  Result<SendCheck> check = (*store)->CheckSend((*zoe)->id, 9, "zoë");
  ASSERT_TRUE(check.ok()) << check.status().ToString();
  EXPECT_EQ(check->queued, 3);
  EXPECT_EQ(SchemaVersion(), std::to_string(PgStore::kSchemaVersion));
  // The version-2 tables are back and used: a lease is renewed.
  ASSERT_TRUE((*store)->Begin().ok());
  ASSERT_TRUE((*store)->RenewLease(1000, 10'000).ok());
  EXPECT_TRUE((*store)->Commit().ok());
  EXPECT_EQ(Scalar("SELECT count(*) FROM brokers"), "1");
}

// A database from a newer broker is refused, not half-understood.
TEST_F(PgStoreTest, RefusesANewerSchema) {
  { ASSERT_TRUE(Open().ok()); }
  const int newer = PgStore::kSchemaVersion + 1;
  ASSERT_EQ(Exec("UPDATE zchat_meta SET value = " + std::to_string(newer) +
                 " WHERE key = 'schema_version'"),
            "");
  auto store = Open();
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), ErrorCode::kStorage);
  EXPECT_EQ(store.status().detail(),
            "database schema version " + std::to_string(newer) +
                " is newer than this broker's schema version " +
                std::to_string(PgStore::kSchemaVersion));
}

// Brokers starting together on an empty database: the schema is created
// once (under an advisory lock), and every one of them opens.
TEST_F(PgStoreTest, BrokersStartingTogetherMigrateOnce) {
  constexpr int kBrokers = 6;
  std::vector<std::string> errors(kBrokers);
  std::vector<std::thread> threads;
  for (int i = 0; i < kBrokers; ++i) {
    threads.emplace_back([&, i] {
      auto store = Open();
      if (!store.ok()) errors[i] = store.status().ToString();
    });
  }
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < kBrokers; ++i) EXPECT_EQ(errors[i], "") << i;
  EXPECT_EQ(SchemaVersion(), std::to_string(PgStore::kSchemaVersion));
  EXPECT_EQ(Scalar("SELECT count(*) FROM information_schema.tables WHERE "
                   "table_name IN ('accounts', 'messages', 'sends', "
                   "'notices', 'tokens', 'brokers', 'presence', "
                   "'queue_lengths', 'notice_counts')"),
            "9");
}

// PostgreSQL holds a notification for a session in a transaction until
// that transaction ends, then sends it at once: often in the same read as
// the commit's own result, so libpq has it before the broker's loop polls,
// and the descriptor does not turn readable for it. The loop asks
// HasNotifications() before it sleeps: the notification must show there or
// on the descriptor, and TakeNotifications() must hand it out.
TEST_F(PgStoreTest, ANotificationHeldForATransactionIsReportedAfterIt) {
  auto a = Open();
  auto b = Open();
  ASSERT_TRUE(a.ok() && b.ok());
  Store& sender = **a;
  Store& receiver = **b;
  const int64_t now = 1'000'000;
  ASSERT_TRUE(receiver.Begin().ok());
  ASSERT_TRUE(receiver.RenewLease(now, 60'000).ok());
  ASSERT_TRUE(receiver.SetPresence(42, true).ok());
  ASSERT_TRUE(receiver.Commit().ok());
  EXPECT_FALSE(receiver.HasNotifications());

  ASSERT_TRUE(receiver.Begin().ok());  // open while the notification comes
  ASSERT_TRUE(receiver.FindAccount("nobody").ok());
  ASSERT_TRUE(sender.Begin().ok());
  sender.NotifyBrokersOf(42, "m 7 ✉", now);
  ASSERT_TRUE(sender.Commit().ok());
  ASSERT_TRUE(receiver.Commit().ok());

  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(10);
  bool reported = false;
  while (!reported && std::chrono::steady_clock::now() < deadline) {
    pollfd fd{receiver.NotificationFd(), POLLIN, 0};
    reported = receiver.HasNotifications() || ::poll(&fd, 1, 100) == 1;
  }
  ASSERT_TRUE(reported) << "the notification never showed";
  EXPECT_EQ(receiver.TakeNotifications(), std::vector<std::string>{"m 7 ✉"});
  EXPECT_FALSE(receiver.HasNotifications());
}

// Two brokers, one database. Broker a logs xavier in (the presence locks
// his counter rows, then the login reads) and goes on with a request that
// stores a notice for wanda. Meanwhile broker b commits notices for wanda
// and xavier: it locks wanda's row, then xavier's (commits lock in account
// order), and waits for a. Had a's login kept xavier's rows until a's batch
// commits, a's commit would then wait for wanda's row, which b holds: a
// deadlock, and PostgreSQL would roll one of them back. The login runs
// alone (RequestInfo::alone), committed before a's next request: b goes on,
// and both commit.
TEST_F(PgStoreTest, ALoginAndAnotherBrokersCommitDoNotDeadlock) {
  TwoBrokersTwoAccounts();
  Batch batch(*a_);
  batch.Begin();
  RequestInfo login{"a-xavier", 1, MessageType::kLoginRequest, 0};
  login.alone = true;
  batch.Run(login,
            [&](Responder& out) { return LoginLocks(*a_, xavier_, out); });
  batch.Run({"a-yusuf", 2, MessageType::kMessageReceipt, 0},
            [&](Responder&) -> Verdict {
              return a_->AddNotice(
                  wanda_, Notice{NoticeKind::kDelivered, 100, "yusuf", 100},
                  1000);
            });
  OtherBrokersCommit b(uri_, *b_, {wanda_, xavier_});
  std::vector<OutFrame> out = batch.Commit();
  const Status b_status = b.Finish();

  EXPECT_TRUE(b_status.ok()) << b_status.ToString();
  ASSERT_EQ(out.size(), 1u) << "a storage refusal: a's batch rolled back";
  EXPECT_EQ(out[0].routing_id, "a-xavier");
  EXPECT_EQ(*a_->CountNotices(wanda_), 2);
  EXPECT_EQ(*a_->CountNotices(xavier_), 1);
  EXPECT_EQ(Scalar("SELECT count(*) FROM presence WHERE account_id = " +
                   std::to_string(xavier_)),
            "1");
}

// Several logins in one transaction (a re-login storm: Batch::BeginGroup):
// PrepareSessions locks all their rows first, in account order. Here broker
// a logs xavier in, then wanda; between the two, broker b commits notices
// for wanda and xavier (wanda's row, then xavier's). Had each login locked
// its own rows as it ran, a would hold xavier's and wait for wanda's while
// b held wanda's and waited for xavier's: a deadlock.
TEST_F(PgStoreTest, LoginsInOneTransactionLockTheirRowsInOrderFirst) {
  TwoBrokersTwoAccounts();
  RequestInfo xavier_login{"a-xavier", 1, MessageType::kLoginRequest, 0};
  RequestInfo wanda_login{"a-wanda", 2, MessageType::kLoginRequest, 0};
  xavier_login.alone = wanda_login.alone = true;

  Batch batch(*a_);
  batch.Begin();
  batch.BeginGroup();
  ASSERT_TRUE(a_->PrepareSessions({"xavier", "wanda", "nobody"}).ok());
  batch.Run(xavier_login,
            [&](Responder& out) { return LoginLocks(*a_, xavier_, out); });
  OtherBrokersCommit b(uri_, *b_, {wanda_, xavier_});
  batch.Run(wanda_login,
            [&](Responder& out) { return LoginLocks(*a_, wanda_, out); });
  batch.EndGroup();
  std::vector<OutFrame> out = batch.Commit();
  const Status b_status = b.Finish();

  EXPECT_TRUE(b_status.ok()) << b_status.ToString();
  ASSERT_EQ(out.size(), 2u);
  for (const OutFrame& f : out) {
    Result<Message> m = Decode(f.frame);
    ASSERT_TRUE(m.ok());
    EXPECT_TRUE(std::holds_alternative<Pong>(m->body)) << f.routing_id;
  }
  EXPECT_EQ(Scalar("SELECT count(*) FROM presence"), "2");
}

// Two sessions of one recipient, on two brokers, confirm one message at
// once. Broker a reads the message ahead (as a batch of receipts does) and
// confirms it; broker b's read ahead of the same message waits for a's
// commit and then finds it confirmed: b's receipt is a duplicate, and b's
// transaction commits. (Before, b read the row, its DELETE waited for a and
// found nothing, and b's whole batch was rolled back.)
TEST_F(PgStoreTest,
       ASecondConfirmationOnAnotherBrokerFindsTheMessageConfirmed) {
  TwoBrokersTwoAccounts();
  ASSERT_TRUE(a_->Begin().ok());
  Result<int64_t> m =
      a_->Enqueue(QueuedMessage{0, wanda_, "Wanda", xavier_, "Xavier", 1,
                                "¿Qué tal? 🙂 你好 مرحبا", 5});
  ASSERT_TRUE(m.ok());
  ASSERT_TRUE(a_->Commit().ok());
  const Lookahead receipt{
      Lookahead::Kind::kReceipt, xavier_, static_cast<uint64_t>(*m), {}};

  ASSERT_TRUE(a_->Begin().ok());
  a_->Prefetch({receipt});
  Result<ReceiptResult> first = a_->ConfirmDelivery(xavier_, *m);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->outcome, ReceiptOutcome::kConfirmed);

  std::atomic<bool> b_done{false};
  Result<ReceiptResult> second = Status(ErrorCode::kStorage, "not run");
  Status b_commit;
  std::thread b([&] {
    b_commit = b_->Begin();
    if (b_commit.ok()) {
      b_->Prefetch({receipt});
      second = b_->ConfirmDelivery(xavier_, *m);
      b_commit = b_->Commit();
    }
    b_done = true;
  });
  UntilDoneOrWaiting(uri_, b_done);
  const Status a_commit = a_->Commit();
  b.join();
  EXPECT_TRUE(a_commit.ok()) << a_commit.ToString();

  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ(second->outcome, ReceiptOutcome::kAlreadyConfirmed);
  EXPECT_TRUE(b_commit.ok()) << b_commit.ToString();
  EXPECT_EQ(Scalar("SELECT count(*) FROM messages"), "0");
  EXPECT_EQ(Scalar("SELECT queued FROM queue_lengths WHERE account_id = " +
                   std::to_string(xavier_)),
            "0");
}

// An account deleted in a transaction that also changes other accounts'
// counts: its counter rows go at commit, in account order among the
// others' (a row taken at the deletion would be held while the commit locks
// other accounts' rows), and the others' counts are right.
TEST_F(PgStoreTest, ADeletedAccountsCounterRowsGoAtCommit) {
  auto opened = Open();
  ASSERT_TRUE(opened.ok());
  Store& store = **opened;
  std::vector<int64_t> ids;
  ASSERT_TRUE(store.Begin().ok());
  for (const char* name : {"amélie", "bjørn", "chloé"}) {
    Result<int64_t> id = store.CreateAccount(name, name, "hash", 0);
    ASSERT_TRUE(id.ok());
    ids.push_back(*id);
  }
  const auto message = [&](int64_t from, int64_t to, uint64_t cmid) {
    return QueuedMessage{0,   from, "x", to, "y", cmid, "héllo 世界 🌍 שלום",
                         1000};
  };
  for (int64_t to : ids)
    ASSERT_TRUE(store.Enqueue(message(ids[0], to, to)).ok());
  for (int64_t to : ids) {
    ASSERT_TRUE(
        store.AddNotice(to, Notice{NoticeKind::kDelivered, to, "x", 1}, 100)
            .ok());
  }
  ASSERT_TRUE(store.Commit().ok());
  const auto row = [&](const char* table, const char* column, int64_t id) {
    return Scalar(std::string("SELECT ") + column + " FROM " + table +
                  " WHERE account_id = " + std::to_string(id));
  };
  ASSERT_EQ(row("queue_lengths", "queued", ids[1]), "1");
  ASSERT_EQ(row("notice_counts", "notices", ids[1]), "1");

  ASSERT_TRUE(store.Begin().ok());
  ASSERT_TRUE(store.Enqueue(message(ids[1], ids[0], 50)).ok());
  ASSERT_TRUE(store.Enqueue(message(ids[1], ids[2], 51)).ok());
  ASSERT_TRUE(
      store.AddNotice(ids[0], Notice{NoticeKind::kDelivered, 90, "y", 2}, 100)
          .ok());
  ASSERT_TRUE(
      store.AddNotice(ids[2], Notice{NoticeKind::kDelivered, 91, "y", 3}, 100)
          .ok());
  ASSERT_TRUE(store.DeleteAccount(ids[1]).ok());
  // A notice for the deleted account, later in the transaction: dropped.
  ASSERT_TRUE(
      store.AddNotice(ids[1], Notice{NoticeKind::kDelivered, 92, "y", 4}, 100)
          .ok());
  ASSERT_TRUE(store.Commit().ok());

  EXPECT_EQ(row("queue_lengths", "queued", ids[0]), "2");
  EXPECT_EQ(row("queue_lengths", "queued", ids[1]), "no row");
  EXPECT_EQ(row("queue_lengths", "queued", ids[2]), "2");
  EXPECT_EQ(row("notice_counts", "notices", ids[0]), "2");
  EXPECT_EQ(row("notice_counts", "notices", ids[1]), "no row");
  EXPECT_EQ(row("notice_counts", "notices", ids[2]), "2");
  EXPECT_EQ(Scalar("SELECT count(*) FROM notices WHERE account_id = " +
                   std::to_string(ids[1])),
            "0");
}

// The same through a broker: BrokerCore runs a token login alone, so
// another broker's commit that locks the same rows in account order neither
// deadlocks with the login's batch nor fails it.
class PgCoreTest : public testing::CoreTest {
 protected:
  void SetUp() override {
    spec_ = testing::SharedPostgres().NewDatabase();
    ASSERT_FALSE(spec_.empty()) << testing::SharedPostgres().error();
    Restart();
  }
};

TEST_F(PgCoreTest, ATokenLoginAndAnotherBrokersCommitDoNotDeadlock) {
  CreateUser("pw", "wanda");
  CreateUser("px", "xavier");
  Join("py", "yusuf");
  Login("pw", "wanda");
  const std::string token = Login("px", "xavier").token;
  const uint64_t m1 = SendText("pw", "yusuf", "Grüße, 你好 👋 مرحبا");
  const int64_t wanda = (*store_->FindAccount("wanda"))->id;
  const int64_t xavier = (*store_->FindAccount("xavier"))->id;
  ASSERT_LT(wanda, xavier);
  auto other = Store::Open(spec_, StoreOptions{});
  ASSERT_TRUE(other.ok());
  Store& sb = **other;

  // One batch: xavier logs in again by token on a new connection, then
  // yusuf confirms wanda's message (a notice for wanda, written at commit).
  const uint64_t login_req = next_req_++;
  core_->BeginBatch();
  core_->OnFrame(
      "px2",
      Encode(Message{login_req, LoginRequest{"xavier", std::nullopt, token}}),
      -1);
  core_->OnFrame("py", Encode(Message{next_req_++, MessageReceipt{m1}}), -1);
  core_->OnHashResults();  // runs what arrived, within the batch

  // Meanwhile another broker commits notices for wanda, then xavier.
  OtherBrokersCommit b(spec_, sb, {wanda, xavier});
  const std::vector<OutFrame> frames = core_->EndBatch();
  const Status b_status = b.Finish();

  EXPECT_TRUE(b_status.ok()) << b_status.ToString();
  bool logged_in = false;
  for (const OutFrame& f : frames) {
    Result<Message> m = Decode(f.frame);
    ASSERT_TRUE(m.ok());
    EXPECT_FALSE(As<Error>(*m)) << f.routing_id << Describe(*m);
    logged_in =
        logged_in || (f.routing_id == "px2" && m->request_id == login_req &&
                      As<LoginSuccess>(*m));
  }
  EXPECT_TRUE(logged_in) << "xavier's token login was refused";
  EXPECT_EQ(*store_->CountNotices(wanda), 2);
  EXPECT_EQ(*store_->CountNotices(xavier), 1);
}

// A re-login storm on a shared store: the token logins of one batch share
// one transaction, one commit for all of them (and their rows are locked in
// order first: LoginsInOneTransactionLockTheirRowsInOrderFirst).
TEST_F(PgCoreTest, TokenLoginsOfOneBatchCommitTogether) {
  std::vector<std::string> tokens;
  for (const char* name : {"dmitri", "amara", "bo", "chen"}) {
    CreateUser(std::string("c-") + name, name);
    tokens.push_back(Login(std::string("c-") + name, name).token);
  }
  const uint64_t commits = core_->metrics().commit_seconds.count();
  std::vector<uint64_t> reqs;
  core_->BeginBatch();
  int i = 0;
  for (const char* name : {"dmitri", "amara", "bo", "chen"}) {
    reqs.push_back(next_req_++);
    core_->OnFrame(std::string("again-") + name,
                   Encode(Message{reqs.back(), LoginRequest{name, std::nullopt,
                                                            tokens[i++]}}),
                   -1);
  }
  const std::vector<OutFrame> frames = core_->EndBatch();
  EXPECT_EQ(core_->metrics().commit_seconds.count(), commits + 1);
  ASSERT_EQ(frames.size(), 4u);
  for (size_t k = 0; k < frames.size(); ++k) {
    Result<Message> m = Decode(frames[k].frame);
    ASSERT_TRUE(m.ok());
    EXPECT_EQ(m->request_id, reqs[k]);
    EXPECT_TRUE(As<LoginSuccess>(*m)) << Describe(*m);
  }
}

}  // namespace
}  // namespace zchat
