// Integration tests: the real Server over TCP loopback.
#include "broker/server.h"

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <random>
#include <set>

#include "client/client.h"
#include "tests/support/broker_process.h"
#include "tests/support/raw_client.h"
#include "tests/support/tcp_relay.h"
#include "tests/support/test_broker.h"
#include "tests/support/test_util.h"

namespace zchat {
namespace {

using namespace std::chrono_literals;
using testing::RawClient;

class ServerTest : public ::testing::Test {
 protected:
  void StopServer() { broker_.Stop(); }
  void Start() {
    broker_.Start("tcp://127.0.0.1:*");
    endpoint_ = broker_.endpoint();
  }

  std::unique_ptr<RawClient> Connect() {
    return std::make_unique<RawClient>(ctx_, endpoint_);
  }

  std::unique_ptr<RawClient> Join(const std::string& name) {
    auto c = Connect();
    c->Call<CreateSuccess>(CreateAccount{name, "password123"});
    c->Call<LoginSuccess>(LoginRequest{name, "password123", std::nullopt});
    return c;
  }

  testing::TestBroker broker_;
  zmq::context_t ctx_;
  std::string endpoint_ = broker_.endpoint();
};

TEST_F(ServerTest, BindsEphemeralPortAndAnswersPing) {
  EXPECT_EQ(endpoint_.rfind("tcp://127.0.0.1:", 0), 0u) << endpoint_;
  EXPECT_NE(endpoint_, "tcp://127.0.0.1:*");
  auto c = Connect();
  c->Call<Pong>(Ping{});
}

TEST_F(ServerTest, MultiFrameMessageIsRefusedAndClientStillServed) {
  auto c = Connect();
  std::string ping = Encode({1, Ping{}});
  c->socket().send(zmq::buffer(ping), zmq::send_flags::sndmore);
  c->socket().send(zmq::buffer(ping), zmq::send_flags::none);
  // The error cannot echo a request id (the message was refused whole), so
  // it carries 0 and arrives beside the pushes.
  std::optional<Error> err = c->AwaitPush<Error>();
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code, ErrorCode::kMalformed);
  EXPECT_NE(err->reason.find("exactly one frame"), std::string::npos);
  c->Call<Pong>(Ping{});
}

TEST_F(ServerTest, GarbageDoesNotDisturbOtherClients) {
  auto alice = Join("alice");
  auto bob = Join("bob");
  auto junk = Connect();
  for (const char* hex : {"dd ff ff ff ff", "c1", "", "81 a1 76"}) {
    junk->SendRaw(testing::FromHex(hex));
  }
  alice->Call<MessagePending>(SendMessage{"bob", "still here", 1});
  auto got = bob->AwaitPush<DistributeMessage>();
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->body, "still here");
}

// A peer that picks its own routing id (here one shaped like the ids the
// ROUTER assigns) is refused: it cannot step into anyone's session.
TEST_F(ServerTest, ClientChosenRoutingIdIsRefused) {
  auto alice = Connect();
  alice->Call<CreateSuccess>(CreateAccount{"alice", "password123"});
  auto bob = Join("bob");
  RawClient impostor(ctx_, "");
  impostor.socket().set(zmq::sockopt::routing_id,
                        zmq::buffer(std::string("evil")));
  impostor.socket().connect(endpoint_);
  impostor.Send(LoginRequest{"alice", "password123", std::nullopt});
  std::optional<Error> refused = impostor.AwaitPush<Error>();
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->code, ErrorCode::kInvalidArgument);
  // Nothing sent to alice reaches it.
  bob->Call<MessagePending>(SendMessage{"alice", "not for the impostor", 1});
  impostor.Pump(200ms);
  EXPECT_TRUE(impostor.pushes().empty());
}

TEST_F(ServerTest, QueuedMessageSurvivesRestart) {
  auto alice = Join("alice");
  auto bob = Connect();
  bob->Call<CreateSuccess>(CreateAccount{"bob", "password123"});
  auto pending =
      alice->Call<MessagePending>(SendMessage{"bob", "kept on disk", 5});
  alice.reset();
  bob.reset();
  StopServer();
  Start();
  auto again = Connect();
  auto login = again->Call<LoginSuccess>(
      LoginRequest{"bob", "password123", std::nullopt});
  EXPECT_EQ(login.pending, 1u);
  auto fetched = again->Call<FetchResult>(FetchMessages{});
  EXPECT_EQ(fetched.count, 1u);
  auto got = again->AwaitPush<DistributeMessage>();
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->message_id, pending.message_id);
  EXPECT_EQ(got->body, "kept on disk");
}

// With several libzmq I/O threads the connections are spread over them;
// each pair's messages still arrive whole and in order, and each sender gets
// every MESSAGE_PENDING.
TEST(IoThreadsTest, ConnectionsSpreadOverIoThreadsKeepEachPairInOrder) {
  testing::TestBroker broker([](ServerOptions& o) { o.io_threads = 4; });
  zmq::context_t ctx;
  constexpr int kPairs = 12, kMessages = 25;
  std::vector<std::unique_ptr<RawClient>> senders, recipients;
  auto join = [&](const std::string& name) {
    auto c = std::make_unique<RawClient>(ctx, broker.endpoint());
    c->Call<CreateSuccess>(CreateAccount{name, "password123"});
    c->Call<LoginSuccess>(LoginRequest{name, "password123", std::nullopt});
    return c;
  };
  for (int p = 0; p < kPairs; ++p) {
    senders.push_back(join("sender" + std::to_string(p)));
    recipients.push_back(join("recipient" + std::to_string(p)));
  }
  std::vector<std::vector<uint64_t>> requests(kPairs);
  for (int i = 0; i < kMessages; ++i) {
    for (int p = 0; p < kPairs; ++p) {
      requests[p].push_back(senders[p]->Send(SendMessage{
          "recipient" + std::to_string(p), "📨 " + std::to_string(i) + " مرحبا",
          static_cast<uint64_t>(i + 1)}));
    }
  }
  for (int p = 0; p < kPairs; ++p) {
    for (int i = 0; i < kMessages; ++i) {
      std::optional<DistributeMessage> got =
          recipients[p]->AwaitPush<DistributeMessage>();
      ASSERT_TRUE(got.has_value()) << "pair " << p << " message " << i;
      EXPECT_EQ(got->body, "📨 " + std::to_string(i) + " مرحبا");
      EXPECT_EQ(got->sender, "sender" + std::to_string(p));
    }
    for (uint64_t req : requests[p]) {
      std::optional<Message> reply = senders[p]->Await(req);
      ASSERT_TRUE(reply.has_value()) << "pair " << p << " request " << req;
      EXPECT_TRUE(std::holds_alternative<MessagePending>(reply->body));
    }
  }
}

// Many clients exchange messages while recipients go off- and online (by
// logging out, or by dropping the connection without a word). Afterwards:
// every message acknowledged with MESSAGE_PENDING reached its recipient
// exactly once after dedup, each sender's messages kept their order, and
// every confirmed message produced exactly one MESSAGE_SUCCESS.
// Senders only ever log out politely: a MESSAGE_SUCCESS pushed to a
// connection that died silently is not retried (docs/semantics.md).
TEST_F(ServerTest, ManyClientsExchangeWithRecipientsComingAndGoing) {
  constexpr int kSenders = 100;
  constexpr int kRecipients = 100;
  constexpr int kUsers = kSenders + kRecipients;
  constexpr int kRounds = 10;
  std::mt19937 rng(12345);
  std::uniform_int_distribution<int> pick_recipient(kSenders, kUsers - 1);
  std::bernoulli_distribution toggle(0.2);
  std::bernoulli_distribution abrupt(0.5);

  struct User {
    std::string name;
    std::unique_ptr<RawClient> client;  // null while offline
    std::string token;                  // valid unless logged out politely
    std::map<std::string, std::vector<uint64_t>> first_seen;  // by sender
    std::set<uint64_t> seen;
    size_t duplicates = 0;
    std::vector<uint64_t> sent;         // acknowledged ids, in send order
    std::map<uint64_t, int> successes;  // MESSAGE_SUCCESS count per id
    std::set<uint64_t> acks_sent;       // NOTICE_RECEIPTs not yet answered
    std::set<uint64_t> acks_done;       // ... answered (a reply came after)
    size_t notice_after_ack = 0;        // notices that came back after that
    std::vector<uint64_t> awaiting;     // request ids of unanswered sends
  };
  std::vector<User> users(kUsers);
  std::map<uint64_t, int> recipient_of;
  uint64_t next_cmid = 1;

  auto pump = [&](User& u) {
    if (!u.client) return;
    u.client->Poll();
    auto& pushes = u.client->pushes();
    while (!pushes.empty()) {
      Message m = std::move(pushes.front());
      pushes.pop_front();
      if (auto* d = std::get_if<DistributeMessage>(&m.body)) {
        if (u.seen.insert(d->message_id).second) {
          u.first_seen[d->sender].push_back(d->message_id);
        } else {
          ++u.duplicates;
        }
        u.client->Send(MessageReceipt{d->message_id});
      } else if (auto* s = std::get_if<MessageSuccess>(&m.body)) {
        // At least once: a repeat is possible until an acknowledgement is
        // known to be handled, never after.
        ++u.successes[s->message_id];
        u.notice_after_ack += u.acks_done.count(s->message_id);
        u.client->Send(NoticeReceipt{s->message_id});
        u.acks_sent.insert(s->message_id);
      }
    }
    for (auto it = u.awaiting.begin(); it != u.awaiting.end();) {
      std::optional<Message> r = u.client->Await(*it, 0ms);
      if (!r) {
        ++it;
        continue;
      }
      auto* p = std::get_if<MessagePending>(&r->body);
      ASSERT_NE(p, nullptr) << MessageTypeName(TypeOf(r->body));
      u.sent.push_back(p->message_id);
      it = u.awaiting.erase(it);
    }
  };
  auto login = [&](User& u) {
    u.client = Connect();
    LoginSuccess ok = u.token.empty()
                          ? u.client->Call<LoginSuccess>(LoginRequest{
                                u.name, "password123", std::nullopt})
                          : u.client->Call<LoginSuccess>(
                                LoginRequest{u.name, std::nullopt, u.token});
    ASSERT_EQ(ok.username, u.name);
    u.token = ok.token;
    for (;;) {  // fetch until the queue is drained
      FetchResult r = u.client->Call<FetchResult>(FetchMessages{});
      pump(u);
      if (r.remaining == 0) break;
    }
  };
  auto pump_until = [&](const std::function<bool()>& done) {
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (!done() && std::chrono::steady_clock::now() < deadline) {
      zmq::pollitem_t items[kUsers];
      int n = 0;
      for (auto& u : users) {
        if (u.client)
          items[n++] = {u.client->socket().handle(), 0, ZMQ_POLLIN, 0};
      }
      zmq::poll(items, n, 50ms);
      for (auto& u : users) pump(u);
    }
  };

  for (int i = 0; i < kUsers; ++i) {
    users[i].name = "user" + std::to_string(i);
    auto c = Connect();
    c->Call<CreateSuccess>(CreateAccount{users[i].name, "password123"});
    login(users[i]);
  }

  for (int round = 0; round < kRounds; ++round) {
    for (int i = 0; i < kSenders; ++i) {
      User& u = users[i];
      if (!u.client) continue;
      for (int k = 0; k < 3; ++k) {
        int to = pick_recipient(rng);
        u.awaiting.push_back(u.client->Send(SendMessage{
            users[to].name, "round " + std::to_string(round), next_cmid++}));
      }
    }
    pump_until([&] {
      for (auto& u : users) {
        if (!u.awaiting.empty()) return false;
      }
      return true;
    });
    for (int i = 0; i < kSenders; ++i) {
      for (uint64_t id : users[i].sent) recipient_of.try_emplace(id, -1);
    }
    // Some users leave, some come back.
    for (int i = 0; i < kUsers; ++i) {
      User& u = users[i];
      if (!toggle(rng)) continue;
      if (!u.client) {
        login(u);
      } else if (i >= kSenders && abrupt(rng)) {
        u.client.reset();  // gone without a word; the token stays valid
      } else {
        const std::set<uint64_t> acks = std::move(u.acks_sent);
        u.acks_sent.clear();
        u.client->Call<LogoutSuccess>(Logout{});
        // Requests are handled in order: the acknowledgements before LOGOUT
        // were.
        u.acks_done.insert(acks.begin(), acks.end());
        pump(u);              // pushes that came before LOGOUT_SUCCESS
        u.acks_sent.clear();  // sent after LOGOUT: refused
        u.client.reset();
        u.token.clear();  // logout revoked it
      }
    }
  }
  for (auto& u : users) {
    if (!u.client) login(u);
  }

  size_t total_sent = 0;
  for (int i = 0; i < kSenders; ++i) total_sent += users[i].sent.size();
  auto delivered_and_confirmed = [&] {
    size_t seen = 0, confirmed = 0;
    for (int i = 0; i < kUsers; ++i) {
      seen += users[i].seen.size();
      confirmed += users[i].successes.size();
    }
    return seen == total_sent && confirmed == total_sent;
  };
  pump_until(delivered_and_confirmed);

  ASSERT_GT(total_sent, 500u);
  std::set<uint64_t> all_seen;
  for (int i = kSenders; i < kUsers; ++i) {
    for (uint64_t id : users[i].seen) {
      EXPECT_TRUE(all_seen.insert(id).second) << "delivered to two users";
    }
    for (auto& [sender, ids] : users[i].first_seen) {
      EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()))
          << users[i].name << " saw " << sender << "'s messages out of order";
    }
  }
  size_t lost = 0, success_missing = 0, notice_after_ack = 0;
  for (int i = 0; i < kSenders; ++i) {
    const User& u = users[i];
    EXPECT_TRUE(std::is_sorted(u.sent.begin(), u.sent.end()));
    for (uint64_t id : u.sent) {
      lost += all_seen.count(id) == 0;
      auto it = u.successes.find(id);
      success_missing += it == u.successes.end();
    }
    notice_after_ack += u.notice_after_ack;
    EXPECT_TRUE(u.seen.empty()) << "senders receive nothing";
  }
  EXPECT_EQ(all_seen.size(), total_sent) << "unexpected deliveries";
  EXPECT_EQ(lost, 0u);
  EXPECT_EQ(success_missing, 0u);
  EXPECT_EQ(notice_after_ack, 0u);
}

// The binary: flags, endpoint file, and a clean exit 0 on SIGTERM.
TEST(BrokerProcessTest, ExitsCleanlyOnSigterm) {
  testing::BrokerProcess broker;
  const std::string endpoint = broker.Start();
  ASSERT_FALSE(endpoint.empty()) << "broker never wrote its endpoint";
  zmq::context_t ctx;
  RawClient client(ctx, endpoint);
  client.Call<Pong>(Ping{});
  EXPECT_EQ(broker.Stop(), 0);
}

// A sender whose connection dies without a word: a relay between its client
// and the broker stops forwarding both ways but keeps both sockets open, so
// to the broker (heartbeat timeout 30 s) the session looks alive, and the
// MESSAGE_SUCCESS pushes its receipts cause go into the hole. The sender's
// next login, from a new connection, brings every notice, exactly once after
// the client library's dedup, and the client acknowledges them.
TEST(SilentConnectionTest, NoticesPushedIntoAHoleComeAtTheNextLogin) {
  testing::BrokerProcess broker;
  const std::string endpoint = broker.Start();
  ASSERT_FALSE(endpoint.empty()) << "the broker did not start";
  testing::TcpRelay relay(std::stoi(endpoint.substr(endpoint.rfind(':') + 1)));
  ASSERT_NE(relay.port(), 0);
  zmq::context_t ctx;
  ClientOptions options;
  options.endpoint = relay.endpoint();
  Client sender(ctx, options);
  ASSERT_TRUE(sender.CreateAccount("alice", "password123").ok());
  ASSERT_TRUE(sender.Login("alice", "password123").ok());
  RawClient bob(ctx, endpoint);
  bob.Call<CreateSuccess>(CreateAccount{"bob", "password123"});
  bob.Call<LoginSuccess>(LoginRequest{"bob", "password123", std::nullopt});

  constexpr size_t kMessages = 25;
  std::set<uint64_t> sent;
  for (size_t i = 0; i < kMessages; ++i) {
    Result<MessagePending> p = sender.Send("bob", "m" + std::to_string(i));
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    sent.insert(p->message_id);
  }
  relay.Silence();
  // bob confirms them all; the PONG says the receipts were handled (and the
  // notices pushed, into the hole).
  for (uint64_t id : sent) bob.Send(MessageReceipt{id});
  bob.Call<Pong>(Ping{});
  const auto hole_deadline = std::chrono::steady_clock::now() + 10s;
  while (relay.dropped_from_target() == 0 &&
         std::chrono::steady_clock::now() < hole_deadline) {
    bob.Pump(10ms);  // a bounded wait, for the relay thread to read
  }
  ASSERT_GT(relay.dropped_from_target(), 0u) << "nothing went into the hole";

  // alice again, on a new direct connection, with her token, while the old
  // one still looks alive.
  options.endpoint = endpoint;
  Client again(ctx, options);
  ASSERT_TRUE(again.Resume("alice", sender.token()).ok());
  std::map<uint64_t, int> got;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  auto take = [&](std::chrono::milliseconds wait) {
    std::optional<Event> e = again.NextEvent(wait);
    if (!e) return false;
    if (auto* s = std::get_if<MessageSuccess>(&*e)) ++got[s->message_id];
    return true;
  };
  while (got.size() < sent.size() &&
         std::chrono::steady_clock::now() < deadline) {
    take(100ms);
  }
  // Acknowledged as handed over: FETCH_NOTICES (behind the acknowledgements)
  // finds nothing left, and anything pushed again before its reply was
  // dropped as a repeat.
  Result<FetchResult> left = again.FetchNotices();
  ASSERT_TRUE(left.ok()) << left.status().ToString();
  EXPECT_EQ(left->count, 0u);
  EXPECT_EQ(left->remaining, 0u);
  while (take(0ms)) {
  }
  std::set<uint64_t> ids;
  for (const auto& [id, n] : got) {
    ids.insert(id);
    EXPECT_EQ(n, 1) << "notice " << id << " handed over " << n << " times";
  }
  EXPECT_EQ(ids, sent);
}

}  // namespace
}  // namespace zchat
