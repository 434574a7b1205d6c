// The client library against the real broker over TCP loopback.
#include "client/client.h"

#include <gtest/gtest.h>

#include <set>

#include "broker/store.h"
#include "tests/support/raw_client.h"
#include "tests/support/test_broker.h"
#include "tests/support/test_postgres.h"

namespace zchat {
namespace {

using namespace std::chrono_literals;

// Every test runs against a broker on each store: SQLite (a file) and
// PostgreSQL (a database on a throwaway server).
class ClientTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "postgresql") {
      const std::string uri = testing::SharedPostgres().NewDatabase();
      ASSERT_FALSE(uri.empty()) << testing::SharedPostgres().error();
      broker_ = std::make_unique<testing::TestBroker>(
          [uri](ServerOptions& o) { o.db_path = uri; });
    } else {
      broker_ = std::make_unique<testing::TestBroker>();
    }
  }

  std::unique_ptr<Client> NewClient(bool auto_receipt = true) {
    ClientOptions options;
    options.endpoint = broker_->endpoint();
    options.request_timeout = 10s;
    options.auto_receipt = auto_receipt;
    return std::make_unique<Client>(ctx_, options);
  }
  // A client logged in as a new user `name`.
  std::unique_ptr<Client> Join(const std::string& name,
                               bool auto_receipt = true) {
    auto c = NewClient(auto_receipt);
    EXPECT_TRUE(c->CreateAccount(name, "password123").ok());
    EXPECT_TRUE(c->Login(name, "password123").ok());
    return c;
  }
  // The next event of type T, skipping none (fails on another type).
  template <class T>
  std::optional<T> NextOf(Client& c, std::chrono::milliseconds wait = 10s) {
    std::optional<Event> e = c.NextEvent(wait);
    if (!e) return std::nullopt;
    if (auto* v = std::get_if<T>(&*e)) return *v;
    ADD_FAILURE() << "unexpected event index " << e->index();
    return std::nullopt;
  }

  // The bodies of the messages `c` receives until one is `last` (15 s at
  // most), fetching when nothing comes: after a reconnect the live push may
  // have reached the client before its session was back, and the message
  // then waits in the queue.
  static std::vector<std::string> ReceivedUntil(Client& c,
                                                const std::string& last) {
    std::vector<std::string> bodies;
    const auto deadline = std::chrono::steady_clock::now() + 15s;
    while (std::chrono::steady_clock::now() < deadline) {
      std::optional<Event> e = c.NextEvent(200ms);
      if (!e) {
        if (c.logged_in()) {
          EXPECT_TRUE(c.Fetch().ok());
        }
        continue;
      }
      if (auto* m = std::get_if<DistributeMessage>(&*e)) {
        bodies.push_back(m->body);
        if (m->body == last) break;
      }
    }
    return bodies;
  }

  std::unique_ptr<testing::TestBroker> broker_;
  zmq::context_t ctx_;
};

TEST_P(ClientTest, EveryCallReturnsItsReply) {
  auto alice = NewClient();
  Result<CreateSuccess> created = alice->CreateAccount("alice", "password123");
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  Result<LoginSuccess> login = alice->Login("alice", "password123");
  ASSERT_TRUE(login.ok()) << login.status().ToString();
  EXPECT_TRUE(alice->logged_in());
  EXPECT_EQ(alice->username(), "alice");
  EXPECT_TRUE(alice->Ping().ok());

  auto bob = Join("bob");
  Result<AccountList> list = alice->ListAccounts("*");
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->accounts, (std::vector<std::string>{"alice", "bob"}));

  Result<MessagePending> sent = alice->Send("bob", "hello");
  ASSERT_TRUE(sent.ok()) << sent.status().ToString();
  Result<FetchResult> fetched = bob->Fetch();
  ASSERT_TRUE(fetched.ok());
  EXPECT_EQ(fetched->count, 1u);

  ASSERT_TRUE(alice->Logout().ok());
  EXPECT_FALSE(alice->logged_in());
  // The token of a new login resumes on another connection.
  auto again = NewClient();
  Result<LoginSuccess> first = again->Login("alice", "password123");
  ASSERT_TRUE(first.ok());
  auto third = NewClient();
  Result<LoginSuccess> resumed = third->Resume("alice", first->token);
  ASSERT_TRUE(resumed.ok()) << resumed.status().ToString();

  uint64_t pending = 0;
  Result<DeletionSuccess> deleted = bob->DeleteAccount(false, &pending);
  ASSERT_FALSE(deleted.ok()) << "bob still has a message waiting";
  EXPECT_EQ(deleted.status().code(), ErrorCode::kHasPending);
  EXPECT_EQ(pending, 1u);
  deleted = bob->DeleteAccount(true);
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(deleted->purged, 1u);
}

TEST_P(ClientTest, ErrorsComeBackAsValues) {
  auto alice = NewClient();
  Result<MessagePending> before_login = alice->Send("bob", "x");
  ASSERT_FALSE(before_login.ok());
  EXPECT_EQ(before_login.status().code(), ErrorCode::kNotLoggedIn);
  ASSERT_TRUE(alice->CreateAccount("alice", "password123").ok());
  Result<CreateSuccess> taken = alice->CreateAccount("ALICE", "password123");
  EXPECT_EQ(taken.status().code(), ErrorCode::kUsernameTaken);
  Result<LoginSuccess> wrong = alice->Login("alice", "not-the-password");
  EXPECT_EQ(wrong.status().code(), ErrorCode::kBadCredentials);
  ASSERT_TRUE(alice->Login("alice", "password123").ok());
  Result<MessagePending> unknown = alice->Send("nobody", "x");
  EXPECT_EQ(unknown.status().code(), ErrorCode::kUnknownRecipient);
  EXPECT_FALSE(unknown.status().detail().empty());
}

TEST_P(ClientTest, TimesOutWhenNoBrokerAnswers) {
  broker_->Stop();
  ClientOptions options;
  options.endpoint = broker_->endpoint();
  options.request_timeout = 300ms;
  Client lonely(ctx_, options);
  Status s = lonely.Ping();
  EXPECT_EQ(s.code(), ErrorCode::kTimeout) << s.ToString();
}

TEST_P(ClientTest, PushesArriveAsEventsAndReceiptTellsSender) {
  auto alice = Join("alice");
  auto bob = Join("bob");
  Result<MessagePending> sent = alice->Send("bob", "are you there?");
  ASSERT_TRUE(sent.ok());
  auto got = NextOf<DistributeMessage>(*bob);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->message_id, sent->message_id);
  EXPECT_EQ(got->sender, "alice");
  EXPECT_EQ(got->body, "are you there?");
  // bob's client confirmed it on handing it over: alice hears of it.
  auto delivered = NextOf<MessageSuccess>(*alice);
  ASSERT_TRUE(delivered.has_value());
  EXPECT_EQ(delivered->message_id, sent->message_id);
  EXPECT_EQ(delivered->recipient, "bob");
}

TEST_P(ClientTest, DuplicateDeliveriesAreDropped) {
  auto alice = Join("alice");
  auto bob = Join("bob");
  ASSERT_TRUE(alice->Send("bob", "once").ok());
  // Not yet taken (so not confirmed): the fetch pushes it a second time.
  Result<FetchResult> fetched = bob->Fetch();
  ASSERT_TRUE(fetched.ok());
  EXPECT_EQ(fetched->count, 1u);
  ASSERT_TRUE(NextOf<DistributeMessage>(*bob).has_value());
  EXPECT_FALSE(bob->NextEvent(300ms).has_value()) << "shown twice";
}

// Notices are acknowledged as NextEvent hands them over, and the broker's
// repeats of them (at a login, on FETCH_NOTICES) are dropped.
TEST_P(ClientTest, NoticesAreAcknowledgedAndShownOnce) {
  auto alice = Join("alice");
  auto bob = Join("bob");
  Result<MessagePending> sent = alice->Send("bob", "hi");
  ASSERT_TRUE(sent.ok());
  ASSERT_TRUE(NextOf<DistributeMessage>(*bob).has_value());
  auto delivered = NextOf<MessageSuccess>(*alice);
  ASSERT_TRUE(delivered.has_value());
  EXPECT_EQ(delivered->message_id, sent->message_id);
  // The acknowledgement went out before this request: nothing is left.
  Result<FetchResult> left = alice->FetchNotices();
  ASSERT_TRUE(left.ok()) << left.status().ToString();
  EXPECT_EQ(left->count, 0u);
  auto other = NewClient();
  ASSERT_TRUE(other->Resume("alice", alice->token()).ok());
  EXPECT_FALSE(other->NextEvent(300ms).has_value()) << "acknowledged";
}

TEST_P(ClientTest, UnacknowledgedNoticeComesBackButIsShownOnce) {
  auto owned = Join("alice", /*auto_receipt=*/false);
  Client& alice = *owned;
  auto bob = Join("bob");
  Result<MessagePending> sent = alice.Send("bob", "hi");
  ASSERT_TRUE(sent.ok());
  ASSERT_TRUE(NextOf<DistributeMessage>(*bob).has_value());
  ASSERT_TRUE(NextOf<MessageSuccess>(alice).has_value());
  // Not acknowledged: the broker still has it, the client drops the repeat.
  Result<FetchResult> fetched = alice.FetchNotices();
  ASSERT_TRUE(fetched.ok());
  EXPECT_EQ(fetched->count, 1u);
  EXPECT_FALSE(alice.NextEvent(300ms).has_value()) << "shown twice";
  // A new login elsewhere gets it again.
  auto elsewhere = NewClient();
  ASSERT_TRUE(elsewhere->Resume("alice", alice.token()).ok());
  auto repeated = NextOf<MessageSuccess>(*elsewhere);
  ASSERT_TRUE(repeated.has_value());
  EXPECT_EQ(repeated->message_id, sent->message_id);
  // That client acknowledged it on handing it over.
  fetched = elsewhere->FetchNotices();
  ASSERT_TRUE(fetched.ok());
  EXPECT_EQ(fetched->count, 0u);
}

// AcknowledgeNotices: many notices in NOTICE_RECEIPTs of up to 1000 ids.
TEST_P(ClientTest, AcknowledgeNoticesClearsEveryOneOfThem) {
  auto owned = Join("alice", /*auto_receipt=*/false);
  Client& alice = *owned;
  auto bob = Join("bob");
  const std::vector<std::string> bodies = {"Grüße", "你好", "👋", "مرحبا"};
  std::vector<uint64_t> ids;
  for (const std::string& body : bodies) {
    Result<MessagePending> sent = alice.Send("bob", body);
    ASSERT_TRUE(sent.ok());
    ASSERT_TRUE(NextOf<DistributeMessage>(*bob).has_value());
    ASSERT_TRUE(NextOf<MessageSuccess>(alice).has_value());
    ids.push_back(sent->message_id);
  }
  Result<FetchResult> before = alice.FetchNotices();
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(before->count + before->remaining, bodies.size());
  alice.AcknowledgeNotices(ids);
  // Replies come in request order: the fetch after them sees none left.
  Result<FetchResult> after = alice.FetchNotices();
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_EQ(after->count + after->remaining, 0u);
}

// ConfirmAll: many messages in MESSAGE_RECEIPTs of up to 1000 ids; the
// senders hear of each, one event a message, whether the broker told them
// in one MESSAGE_SUCCESS (batch_pushes, the default) or one each.
TEST_P(ClientTest, ConfirmAllConfirmsEveryOneOfThem) {
  for (bool batch_pushes : {true, false}) {
    SCOPED_TRACE(batch_pushes ? "batch_pushes" : "one notice a frame");
    ClientOptions options;
    options.endpoint = broker_->endpoint();
    options.batch_pushes = batch_pushes;
    Client alice(ctx_, options);
    const std::string name = batch_pushes ? "alice" : "anna";
    Result<CreateSuccess> created = alice.CreateAccount(name, "password123");
    ASSERT_TRUE(created.ok()) << created.status().ToString();
    ASSERT_TRUE(alice.Login(name, "password123").ok());
    auto bob = Join(batch_pushes ? "bob" : "bea", /*auto_receipt=*/false);
    const std::vector<std::string> bodies = {"Grüße", "你好", "👋", "مرحبا"};
    std::vector<uint64_t> ids, client_ids;
    for (const std::string& body : bodies) {
      Result<MessagePending> sent =
          alice.Send(batch_pushes ? "bob" : "bea", body);
      ASSERT_TRUE(sent.ok());
      client_ids.push_back(sent->client_msg_id);
      auto got = NextOf<DistributeMessage>(*bob);
      ASSERT_TRUE(got.has_value());
      EXPECT_EQ(got->body, body);
      ids.push_back(got->message_id);
    }
    bob->ConfirmAll(ids);
    std::vector<uint64_t> told, told_client_ids;
    for (size_t i = 0; i < ids.size(); ++i) {
      auto success = NextOf<MessageSuccess>(alice);
      ASSERT_TRUE(success.has_value());
      EXPECT_EQ(success->recipient, batch_pushes ? "bob" : "bea");
      EXPECT_TRUE(success->message_ids.empty()) << "handed over one by one";
      told.push_back(success->message_id);
      told_client_ids.push_back(success->client_msg_id);
    }
    EXPECT_EQ(told, ids);
    EXPECT_EQ(told_client_ids, client_ids);
    Result<FetchResult> left = bob->Fetch();
    ASSERT_TRUE(left.ok());
    EXPECT_EQ(left->count + left->remaining, 0u);
    // Each was acknowledged as it was handed over: none is left.
    Result<FetchResult> notices = alice.FetchNotices();
    ASSERT_TRUE(notices.ok());
    EXPECT_EQ(notices->count + notices->remaining, 0u);
  }
}

// SendMany: one request for several messages, each with its own
// client_msg_id and message id, delivered and told back one by one; a
// refusal of one refuses all.
TEST_P(ClientTest, SendManySendsThemInOrderOrNotAtAll) {
  auto alice = Join("alice");
  auto bob = Join("bob");
  const std::vector<std::string> bodies = {"Grüße", "你好", "👋", "مرحبا"};
  Result<MessagePending> sent = alice->SendMany("bob", bodies);
  ASSERT_TRUE(sent.ok()) << sent.status().ToString();
  ASSERT_EQ(sent->message_ids.size(), bodies.size());
  ASSERT_EQ(sent->client_msg_ids.size(), bodies.size());
  EXPECT_EQ(std::set<uint64_t>(sent->client_msg_ids.begin(),
                               sent->client_msg_ids.end())
                .size(),
            bodies.size());
  for (size_t i = 0; i < bodies.size(); ++i) {
    auto got = NextOf<DistributeMessage>(*bob);
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(got->message_id, sent->message_ids[i]);
    EXPECT_EQ(got->body, bodies[i]);
  }
  std::set<uint64_t> told;
  for (size_t i = 0; i < bodies.size(); ++i) {
    auto success = NextOf<MessageSuccess>(*alice);
    ASSERT_TRUE(success.has_value());
    told.insert(success->message_id);
  }
  EXPECT_EQ(told, std::set<uint64_t>(sent->message_ids.begin(),
                                     sent->message_ids.end()));
  Result<MessagePending> refused =
      alice->SendMany("bob", {"שלום", std::string(kMaxBodyBytes + 1, 'x')});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), ErrorCode::kBodyTooLarge);
  EXPECT_NE(refused.status().detail().find("message 2 of 2"), std::string::npos)
      << refused.status().ToString();
  EXPECT_EQ(alice->SendMany("bob", {}).status().code(),
            ErrorCode::kInvalidArgument);
  EXPECT_FALSE(bob->NextEvent(200ms).has_value()) << "nothing was stored";
  Result<FetchResult> left = bob->Fetch();
  ASSERT_TRUE(left.ok());
  EXPECT_EQ(left->count + left->remaining, 0u);
}

// A Client made where an earlier one lived (one on the stack of a loop)
// gets a socket monitor of its own, and so a working connection.
TEST_P(ClientTest, AClientMadeWhereAnotherLivedWorks) {
  for (const std::string name : {"renée", "jürgen", "zoë"}) {
    ClientOptions options;
    options.endpoint = broker_->endpoint();
    Client c(ctx_, options);
    const std::string ascii = name == "renée"    ? "renee"
                              : name == "jürgen" ? "juergen"
                                                 : "zoe";
    Result<CreateSuccess> created = c.CreateAccount(ascii, "pässwörd-🔑");
    ASSERT_TRUE(created.ok()) << name << ": " << created.status().ToString();
    ASSERT_TRUE(c.Login(ascii, "pässwörd-🔑").ok()) << name;
  }
}

TEST_P(ClientTest, PipelinesManyRequests) {
  auto alice = Join("alice");
  auto bob = Join("bob");
  std::vector<uint64_t> requests;
  for (int i = 0; i < 200; ++i) {
    requests.push_back(
        alice->Start(SendMessage{"bob", std::to_string(i), 1000u + i}));
  }
  std::vector<uint64_t> ids;
  for (uint64_t r : requests) {
    Result<Message> reply = alice->Wait(r);
    ASSERT_TRUE(reply.ok()) << reply.status().ToString();
    ids.push_back(std::get<MessagePending>(reply->body).message_id);
  }
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
  EXPECT_EQ(std::set<uint64_t>(ids.begin(), ids.end()).size(), 200u);
  for (int i = 0; i < 200; ++i) {
    auto got = NextOf<DistributeMessage>(*bob);
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(got->body, std::to_string(i));
  }
}

// The broker restarts under two logged-in clients. They reconnect, log in
// again with their tokens, and a send made while it was down goes through;
// nothing is lost and nothing is shown twice.
TEST_P(ClientTest, SurvivesBrokerRestart) {
  auto alice = Join("alice");
  auto bob = Join("bob");
  ASSERT_TRUE(alice->Send("bob", "before").ok());
  auto before = NextOf<DistributeMessage>(*bob);
  ASSERT_TRUE(before.has_value());

  broker_->Restart();

  Result<MessagePending> during = alice->Send("bob", "after the restart");
  ASSERT_TRUE(during.ok()) << during.status().ToString();
  const std::vector<std::string> bodies =
      ReceivedUntil(*bob, "after the restart");
  EXPECT_EQ(bodies, (std::vector<std::string>{"after the restart"}))
      << "lost, or shown twice";
  EXPECT_TRUE(alice->logged_in());
  EXPECT_TRUE(bob->logged_in());
}

// Two endpoints: when its broker goes away, the client moves to the next
// one by itself, logs in again with its token and resends. (With SQLite the
// brokers cannot run at once, so the second starts on the first's database
// after the first stops, on an ipc endpoint the client knew beforehand.)
TEST_P(ClientTest, FailsOverToTheNextEndpoint) {
  testing::TempDir dir;
  const std::string second = "ipc://" + dir.File("second.ipc");
  ClientOptions options;
  options.endpoint = broker_->endpoint() + "," + second;
  options.failover_after = 2s;  // the default: a slow handshake is no failure
  options.request_timeout = 15s;
  auto alice = std::make_unique<Client>(ctx_, options);
  auto bob = std::make_unique<Client>(ctx_, options);
  ASSERT_TRUE(alice->CreateAccount("alice", "password123").ok());
  ASSERT_TRUE(alice->Login("alice", "password123").ok());
  ASSERT_TRUE(bob->CreateAccount("bob", "password123").ok());
  ASSERT_TRUE(bob->Login("bob", "password123").ok());
  EXPECT_EQ(alice->endpoint(), broker_->endpoint());
  ASSERT_TRUE(alice->Send("bob", "before").ok());
  ASSERT_TRUE(NextOf<DistributeMessage>(*bob).has_value());

  broker_->Stop();
  broker_->Start(second);

  const std::string body = "après la bascule 🌍 你好 שלום مرحبا";
  Result<MessagePending> during = alice->Send("bob", body);
  ASSERT_TRUE(during.ok()) << during.status().ToString();
  EXPECT_EQ(alice->endpoint(), second);
  EXPECT_TRUE(alice->logged_in()) << "resumed with the token";

  const std::vector<std::string> bodies = ReceivedUntil(*bob, body);
  EXPECT_EQ(bodies, std::vector<std::string>{body}) << "lost, or shown twice";
  EXPECT_EQ(bob->endpoint(), second);

  // alice saw the move, then her session come back.
  bool failed_over = false, restored = false;
  while (std::optional<Event> e = alice->NextEvent(0ms)) {
    if (auto* c = std::get_if<ConnectionEvent>(&*e)) {
      if (c->kind == ConnectionEvent::Kind::kFailover) {
        failed_over = true;
        EXPECT_NE(c->detail.find(second), std::string::npos) << c->detail;
      }
      if (c->kind == ConnectionEvent::Kind::kRestored) restored = true;
    }
  }
  EXPECT_TRUE(failed_over);
  EXPECT_TRUE(restored);
}

INSTANTIATE_TEST_SUITE_P(Stores, ClientTest,
                         ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return info.param; });

// Two brokers on one PostgreSQL database at once: a message sent through
// one reaches a recipient logged in on the other at once (NOTIFY at the
// sender's commit), the sender hears of its delivery, and deleting an
// account through one ends its sessions on the other.
TEST(SharedStoreTest, BrokersOnOneDatabaseDeliverToEachOther) {
  const std::string uri = testing::SharedPostgres().NewDatabase();
  ASSERT_FALSE(uri.empty()) << testing::SharedPostgres().error();
  auto on_uri = [uri](ServerOptions& o) { o.db_path = uri; };
  testing::TestBroker a(on_uri);
  testing::TestBroker b(on_uri);
  zmq::context_t ctx;
  auto client = [&](const testing::TestBroker& broker) {
    ClientOptions o;
    o.endpoint = broker.endpoint();
    o.request_timeout = 10s;
    return std::make_unique<Client>(ctx, o);
  };
  auto alice = client(a);
  auto bob = client(b);
  ASSERT_TRUE(alice->CreateAccount("alice", "password123").ok());
  Result<CreateSuccess> taken = bob->CreateAccount("ALICE", "password123");
  ASSERT_FALSE(taken.ok()) << "one name across brokers";
  EXPECT_EQ(taken.status().code(), ErrorCode::kUsernameTaken);
  ASSERT_TRUE(bob->CreateAccount("bob", "password123").ok());
  ASSERT_TRUE(alice->Login("alice", "password123").ok());
  ASSERT_TRUE(bob->Login("bob", "password123").ok());

  const std::string body = "d'un broker à l'autre: 你好 🌍 שלום";
  Result<MessagePending> sent = alice->Send("bob", body);
  ASSERT_TRUE(sent.ok()) << sent.status().ToString();
  std::optional<Event> got = bob->NextEvent(10s);
  ASSERT_TRUE(got.has_value()) << "no live delivery across brokers";
  auto* m = std::get_if<DistributeMessage>(&*got);
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->message_id, sent->message_id);
  EXPECT_EQ(m->body, body);
  EXPECT_EQ(m->sender, "alice");
  // bob's client confirmed it (auto receipt) on broker B; alice, on A,
  // hears of it.
  std::optional<Event> success = alice->NextEvent(10s);
  ASSERT_TRUE(success.has_value()) << "no MESSAGE_SUCCESS across brokers";
  auto* ok = std::get_if<MessageSuccess>(&*success);
  ASSERT_NE(ok, nullptr);
  EXPECT_EQ(ok->message_id, sent->message_id);

  // bob deletes his account through broker A: his session on B ends.
  auto bob_on_a = client(a);
  ASSERT_TRUE(bob_on_a->Login("bob", "password123").ok());
  ASSERT_TRUE(bob_on_a->DeleteAccount(true).ok());
  std::optional<Event> ended = bob->NextEvent(10s);
  ASSERT_TRUE(ended.has_value());
  auto* e = std::get_if<SessionEnded>(&*ended);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->code, ErrorCode::kAccountDeleted);
}

// The PostgreSQL server restarts under a broker: meanwhile requests are
// refused with `storage` (nothing acknowledged is lost: it is committed),
// then the broker reconnects by itself and serves again.
TEST(SharedStoreTest, BrokerRecoversWhenPostgresRestarts) {
  testing::TestPostgres pg;  // a server of its own: this test stops it
  ASSERT_TRUE(pg.error().empty()) << pg.error();
  const std::string uri = pg.NewDatabase();
  ASSERT_FALSE(uri.empty()) << pg.error();
  testing::TestBroker broker([uri](ServerOptions& o) { o.db_path = uri; });
  zmq::context_t ctx;
  ClientOptions o;
  o.endpoint = broker.endpoint();
  o.request_timeout = 10s;
  Client alice(ctx, o);
  ASSERT_TRUE(alice.CreateAccount("alice", "password123").ok());
  ASSERT_TRUE(alice.Login("alice", "password123").ok());
  Result<MessagePending> before = alice.Send("alice", "avant: ça va 🙂");
  ASSERT_TRUE(before.ok()) << before.status().ToString();

  ASSERT_TRUE(pg.Stop());
  Result<MessagePending> during = alice.Send("alice", "pendant");
  ASSERT_FALSE(during.ok());
  EXPECT_EQ(during.status().code(), ErrorCode::kStorage)
      << during.status().ToString();

  ASSERT_TRUE(pg.Start());
  // The broker reconnects at its next batch; until it has, requests may
  // still be refused: retry with a deadline.
  Result<MessagePending> after = Status(ErrorCode::kStorage, "not tried");
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < deadline) {
    after = alice.Send("alice", "après: ça repart 🚀");
    if (after.ok() || after.status().code() != ErrorCode::kStorage) break;
  }
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_GT(after->message_id, before->message_id);
  Result<FetchResult> fetched = alice.Fetch();
  ASSERT_TRUE(fetched.ok()) << fetched.status().ToString();
  std::vector<std::string> bodies;
  while (std::optional<Event> e = alice.NextEvent(2s)) {
    if (auto* m = std::get_if<DistributeMessage>(&*e)) {
      bodies.push_back(m->body);
    }
    if (bodies.size() == 2) break;
  }
  EXPECT_EQ(bodies, (std::vector<std::string>{"avant: ça va 🙂",
                                              "après: ça repart 🚀"}))
      << "the acknowledged message survived; the refused one was not stored";
}

// The same send (one client_msg_id) reaching two brokers at once, as when a
// client fails over while its first broker still works on the send: it is
// stored once, and every MESSAGE_PENDING names that one message. A broker
// whose transaction lost the race refuses with `storage`, and the retry
// there finds the other broker's message.
TEST(SharedStoreTest, ASendRetriedOnTwoBrokersAtOnceIsStoredOnce) {
  const std::string uri = testing::SharedPostgres().NewDatabase();
  ASSERT_FALSE(uri.empty()) << testing::SharedPostgres().error();
  auto on_uri = [uri](ServerOptions& o) { o.db_path = uri; };
  testing::TestBroker a(on_uri);
  testing::TestBroker b(on_uri);
  zmq::context_t ctx;
  testing::RawClient alice_a(ctx, a.endpoint());
  testing::RawClient alice_b(ctx, b.endpoint());
  testing::RawClient bob(ctx, b.endpoint());
  alice_a.Call<CreateSuccess>(CreateAccount{"alice", "password123"});
  bob.Call<CreateSuccess>(CreateAccount{"bob", "password123"});
  alice_a.Call<LoginSuccess>(LoginRequest{"alice", "password123", {}});
  alice_b.Call<LoginSuccess>(LoginRequest{"alice", "password123", {}});

  constexpr uint64_t kRounds = 100;
  auto body = [](uint64_t k) {
    return "une fois, 一次, פעם אחת 🔂 #" + std::to_string(k);
  };
  int refused = 0;
  for (uint64_t k = 1; k <= kRounds; ++k) {
    testing::RawClient* clients[] = {&alice_a, &alice_b};
    uint64_t requests[2];
    for (int i = 0; i < 2; ++i) {
      requests[i] = clients[i]->Send(SendMessage{"bob", body(k), k});
    }
    std::set<uint64_t> ids;
    for (int i = 0; i < 2; ++i) {
      std::optional<Message> reply = clients[i]->Await(requests[i]);
      ASSERT_TRUE(reply.has_value()) << "round " << k << ": no reply";
      while (const auto* f = std::get_if<MessageFailure>(&reply->body)) {
        ASSERT_EQ(f->code, ErrorCode::kStorage) << f->reason;
        ++refused;
        reply =
            clients[i]->Await(clients[i]->Send(SendMessage{"bob", body(k), k}));
        ASSERT_TRUE(reply.has_value()) << "round " << k << ": no reply";
      }
      const auto* pending = std::get_if<MessagePending>(&reply->body);
      ASSERT_NE(pending, nullptr) << MessageTypeName(TypeOf(reply->body));
      EXPECT_EQ(pending->client_msg_id, k);
      ids.insert(pending->message_id);
    }
    EXPECT_EQ(ids.size(), 1u) << "round " << k << ": two messages for one send";
  }
  ::testing::Test::RecordProperty("races_refused", refused);

  // Stored once each, in the order sent.
  StoreOptions read_only;
  read_only.read_only = true;
  Result<std::unique_ptr<Store>> store = Store::Open(uri, read_only);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  Result<std::optional<Account>> account = (*store)->FindAccount("bob");
  ASSERT_TRUE(account.ok() && account->has_value());
  Result<std::vector<QueuedMessage>> queued =
      (*store)->FetchPending((*account)->id, 2 * kRounds);
  ASSERT_TRUE(queued.ok()) << queued.status().ToString();
  ASSERT_EQ(queued->size(), kRounds);
  for (uint64_t k = 1; k <= kRounds; ++k) {
    EXPECT_EQ((*queued)[k - 1].client_msg_id, k);
    EXPECT_EQ((*queued)[k - 1].body, body(k));
  }
}

// A notification that libpq reads while the recipient's broker waits for
// its own statements' results does not make the socket readable again: the
// broker must still push the message at once, not at its next tick. The
// ticks here are ten minutes apart, and carol keeps broker B busy.
TEST(SharedStoreTest, DeliveryAcrossBrokersDoesNotWaitForATick) {
  const std::string uri = testing::SharedPostgres().NewDatabase();
  ASSERT_FALSE(uri.empty()) << testing::SharedPostgres().error();
  auto options = [uri](ServerOptions& o) {
    o.db_path = uri;
    o.tick_ms = 600'000;
  };
  testing::TestBroker a(options);
  testing::TestBroker b(options);
  zmq::context_t ctx;
  testing::RawClient alice(ctx, a.endpoint());
  testing::RawClient bob(ctx, b.endpoint());
  testing::RawClient carol(ctx, b.endpoint());
  for (auto [client, name] :
       {std::pair{&alice, "alice"}, {&bob, "bob"}, {&carol, "carol"}}) {
    client->Call<CreateSuccess>(CreateAccount{name, "password123"});
    client->Call<LoginSuccess>(LoginRequest{name, "password123", {}});
  }
  constexpr int kMessages = 40;
  uint64_t carol_cmid = 1;
  std::vector<std::string> received;
  for (int i = 0; i < kMessages; ++i) {
    // B busy: carol's sends to herself, a few in flight at every moment.
    for (int k = 0; k < 4; ++k) {
      carol.Send(SendMessage{"carol", "occupée ⏳", carol_cmid++});
    }
    const std::string body = "à toi, " + std::to_string(i) + " 📨";
    alice.Call<MessagePending>(SendMessage{"bob", body, uint64_t(i) + 1});
    carol.Drain([](Message&) {});
  }
  // From the last send: the tick is ten minutes away, so 30 s still tells a
  // push from a tick, and the sends themselves (forty commits on PostgreSQL,
  // slow under ASan) are not on the clock.
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (received.size() < static_cast<size_t>(kMessages) &&
         std::chrono::steady_clock::now() < deadline) {
    bob.Drain([&](Message& m) {
      if (auto* d = std::get_if<DistributeMessage>(&m.body)) {
        received.push_back(d->body);
      }
    });
    carol.Drain([](Message&) {});
    bob.WaitReadable(50ms);
  }
  ASSERT_EQ(received.size(), static_cast<size_t>(kMessages))
      << "messages waited for a tick of broker B";
  for (int i = 0; i < kMessages; ++i) {
    EXPECT_EQ(received[i], "à toi, " + std::to_string(i) + " 📨");
  }
}

TEST(CheckEndpointsTest, NamesTheEndpointThatCannotBeUsed) {
  EXPECT_TRUE(Client::CheckEndpoints("tcp://127.0.0.1:5555").ok());
  EXPECT_TRUE(
      Client::CheckEndpoints("tcp://127.0.0.1:5555, ipc:///tmp/zchat-x").ok());
  Status bad = Client::CheckEndpoints("tcp://127.0.0.1:5555,garbage");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(bad.detail().rfind("garbage: not a usable ZeroMQ endpoint", 0), 0u)
      << bad.detail();
  EXPECT_FALSE(Client::CheckEndpoints("tcp://127.0.0.1:5555,").ok());
}

}  // namespace
}  // namespace zchat

namespace zchat {
namespace {

using namespace std::chrono_literals;

struct KeyPair {
  std::string public_key, secret_key;
};
KeyPair NewKeys() {
  char pub[41], sec[41];
  EXPECT_EQ(zmq_curve_keypair(pub, sec), 0);
  return {pub, sec};
}

// With CurveZMQ on, a client that knows the broker's public key talks to it
// (encrypted); a plain client, or one with another key, gets no answer.
TEST(CurveTest, OnlyClientsWithTheServerKeyGetIn) {
  const KeyPair broker_keys = NewKeys();
  testing::TestBroker broker(
      [&](ServerOptions& o) { o.curve_secret_key = broker_keys.secret_key; });
  zmq::context_t ctx;
  ClientOptions options;
  options.endpoint = broker.endpoint();
  options.request_timeout = 5s;

  options.server_key = broker_keys.public_key;
  Client secure(ctx, options);
  ASSERT_TRUE(secure.CreateAccount("alice", "password123").ok());
  ASSERT_TRUE(secure.Login("alice", "password123").ok());
  ASSERT_TRUE(secure.Send("alice", "over curve").ok());
  std::optional<Event> e = secure.NextEvent(5s);
  ASSERT_TRUE(e.has_value());
  ASSERT_TRUE(std::holds_alternative<DistributeMessage>(*e));
  EXPECT_EQ(std::get<DistributeMessage>(*e).body, "over curve");

  options.request_timeout = 500ms;
  options.server_key.clear();
  Client plain(ctx, options);
  EXPECT_EQ(plain.Ping().code(), ErrorCode::kTimeout);

  options.server_key = NewKeys().public_key;
  Client wrong_key(ctx, options);
  EXPECT_EQ(wrong_key.Ping().code(), ErrorCode::kTimeout);
}

}  // namespace
}  // namespace zchat
