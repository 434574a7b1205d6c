// What only PgStore does (the contract both stores keep is in
// store_contract_test.cpp): its schema migrations, a newer schema refused,
// brokers starting together on one database. A throwaway server
// (TestPostgres), a database per test; the test changes the schema behind
// the store's back with libpq, as an older or newer broker would have left
// it.
#include "broker/pg_store.h"

#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <poll.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/test_postgres.h"

namespace zchat {
namespace {

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

  // The first column of the first row of `sql`'s result, or "error: ..."
  // or "no row".
  std::string Scalar(const std::string& sql) {
    PGconn* conn = PQconnectdb(uri_.c_str());
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

  std::string SchemaVersion() {
    return Scalar("SELECT value FROM zchat_meta WHERE key = 'schema_version'");
  }

  Result<std::unique_ptr<Store>> Open() {
    return Store::Open(uri_, StoreOptions{});
  }

  std::string uri_;
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

}  // namespace
}  // namespace zchat
