// Bounded resources, measured on the broker binary (its RSS from /proc):
// a recipient that never reads while many messages arrive for it, and a
// flood of password logins.
#include <gtest/gtest.h>

#include <algorithm>

#include "tests/support/broker_process.h"
#include "tests/support/raw_client.h"

namespace zchat {
namespace {

using namespace std::chrono_literals;
using testing::RawClient;

// The broker binary as a child process, started at once.
class BrokerChild : public testing::BrokerProcess {
 public:
  explicit BrokerChild(std::vector<std::string> extra = {},
                       bool capture_log = false)
      : BrokerProcess(std::move(extra), capture_log) {
    Start();
  }
};

std::unique_ptr<RawClient> Join(zmq::context_t& ctx, const std::string& ep,
                                const std::string& name) {
  auto c = std::make_unique<RawClient>(ctx, ep);
  c->Call<CreateSuccess>(CreateAccount{name, "password123"});
  c->Call<LoginSuccess>(LoginRequest{name, "password123", std::nullopt});
  return c;
}

// The recipient is logged in but never reads: every message is pushed to a
// connection that does not drain. The broker's memory must not follow the
// traffic (the queue lives in the database, the socket queue has a
// high-water mark), and every message must be there when it finally reads.
TEST(ResourcesTest, NeverReadingRecipientCostsNoMemory) {
  constexpr uint64_t kMessages = 100'000;  // 100 MB of bodies in all
  // A page cache of 4 MiB, not 16: what the broker holds apart from the
  // traffic (the page cache, the message log, the receipts' cache) came to
  // 55 of the 60 MiB below with 16, and past it on a busy machine.
  BrokerChild broker({"--queue-limit", "1000000", "--db-cache-mib", "4"});
  ASSERT_FALSE(broker.endpoint().empty());
  zmq::context_t ctx;
  auto sleeper = Join(ctx, broker.endpoint(), "sleeper");
  auto sender = Join(ctx, broker.endpoint(), "sender");
  const int64_t rss_before = broker.RssKib();
  const std::string body(1000, 'z');
  uint64_t acked = 0, sent = 0;
  const auto deadline = std::chrono::steady_clock::now() + 120s;
  while (acked < kMessages && std::chrono::steady_clock::now() < deadline) {
    while (sent < kMessages && sent - acked < 1000) {
      sender->Send(SendMessage{"sleeper", body, ++sent});
    }
    sender->Pump(100ms);
    // Replies come in request order; requests 1-2 were the create and login.
    while (auto m = sender->Await(acked + 3, 0ms)) {
      ASSERT_TRUE(std::holds_alternative<MessagePending>(m->body));
      ++acked;
    }
  }
  ASSERT_EQ(acked, kMessages);
  const int64_t rss_after = broker.RssKib();
  // Not a timing claim: a broker that kept the traffic in memory would grow
  // by the bodies' 100 MB; the socket's high-water mark and SQLite's page
  // cache bound it far below that. (Under AddressSanitizer freed memory sits
  // in its quarantine, so RSS says nothing there; the messages are still
  // checked below.)
#ifndef ZCHAT_SANITIZED
  EXPECT_LT(rss_after - rss_before, 60 * 1024)
      << "RSS grew from " << rss_before << " to " << rss_after << " KiB";
#else
  (void)rss_before;
  (void)rss_after;
#endif
  // Now it reads: everything is there.
  auto reader = std::make_unique<RawClient>(ctx, broker.endpoint());
  LoginSuccess login = reader->Call<LoginSuccess>(
      LoginRequest{"sleeper", "password123", std::nullopt});
  EXPECT_EQ(login.pending, kMessages);
}

// A flood of password logins: the hashing work is bounded (busy beyond the
// queue), and a bystander is served throughout.
TEST(ResourcesTest, LoginFloodIsBoundedAndOthersAreServed) {
  BrokerChild broker;
  ASSERT_FALSE(broker.endpoint().empty());
  zmq::context_t ctx;
  auto bystander = Join(ctx, broker.endpoint(), "bystander");
  RawClient flood(ctx, broker.endpoint());
  constexpr int kAttempts = 2000;
  for (int i = 0; i < kAttempts; ++i) {
    flood.Send(LoginRequest{"user" + std::to_string(i % 50), "wrong-password",
                            std::nullopt});
  }
  // The bystander's pings keep coming back while the flood is handled
  // (under ASan the broker's loop is unoptimised and shares two cores with
  // the hashing threads and another test: 10 s there).
#ifdef ZCHAT_SANITIZED
  constexpr auto kPingWait = 10s;
#else
  constexpr auto kPingWait = 2s;
#endif
  for (int i = 0; i < 20; ++i) {
    auto pong = bystander->Await(bystander->Send(Ping{}), kPingWait);
    ASSERT_TRUE(pong.has_value())
        << "ping " << i << " not answered in " << kPingWait.count() << " s";
  }
  int answered = 0, busy = 0;
  for (uint64_t req = 1; req <= kAttempts; ++req) {
    auto m = flood.Await(req, 20s);
    ASSERT_TRUE(m.has_value()) << "login attempt " << req << " never answered";
    auto* f = std::get_if<LoginFailure>(&m->body);
    ASSERT_NE(f, nullptr);
    busy += f->code == ErrorCode::kBusy;
    ++answered;
  }
  EXPECT_EQ(answered, kAttempts);
  EXPECT_GT(busy, 0) << "2000 logins at once should overflow the hashing queue";
  EXPECT_LT(broker.RssKib(), 200 * 1024);
}

// libzmq 4.3.4 aborts when a peer that chose the routing id the ROUTER
// will assign next is followed by an anonymous peer. Here the attack is
// carried out for real, with the id read from the broker's own debug log (a
// remote attacker would have to guess it: the broker seeds the sequence).
// The supervisor restarts the broker on the same endpoint, the data is
// there, and clients carry on.
TEST(ResourcesTest, SupervisorOutlivesTheRoutingIdCollisionAbort) {
  BrokerChild broker({"--supervise", "--log-level", "debug"},
                     /*capture_log=*/true);
  ASSERT_FALSE(broker.endpoint().empty());
  zmq::context_t ctx;
  auto alice = Join(ctx, broker.endpoint(), "alice");
  // The id the broker gave alice, from its log; the next one follows it.
  const std::string log = broker.Log();
  const size_t at = log.rfind("new peer ");
  ASSERT_NE(at, std::string::npos) << log;
  const std::string hex = log.substr(at + 9, 10);
  ASSERT_EQ(hex.substr(0, 2), "00") << hex;
  EXPECT_NE(hex, "006b8b4567") << "the routing id sequence was not seeded";
  const uint32_t assigned =
      static_cast<uint32_t>(std::stoul(hex.substr(2), nullptr, 16));
  const uint32_t next = assigned + 1;
  std::string claim(5, '\0');
  for (int i = 0; i < 4; ++i) {
    claim[1 + i] = static_cast<char>((next >> (8 * (3 - i))) & 0xff);
  }
  RawClient attacker(ctx, "");
  attacker.socket().set(zmq::sockopt::routing_id, zmq::buffer(claim));
  attacker.socket().connect(broker.endpoint());
  attacker.Call<Pong>(Ping{});
  RawClient victim(ctx, broker.endpoint());  // the next anonymous peer
  victim.Send(Ping{});
  // The broker process aborts and its supervisor starts it again: a new
  // client is served on the same endpoint, and alice's account is there.
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  bool served = false;
  while (!served && std::chrono::steady_clock::now() < deadline) {
    RawClient probe(ctx, broker.endpoint());
    auto r = probe.Await(
        probe.Send(LoginRequest{"alice", "password123", std::nullopt}), 1s);
    served = r && std::holds_alternative<LoginSuccess>(r->body);
  }
  EXPECT_TRUE(served) << broker.Log();
  EXPECT_NE(broker.Log().find("supervisor: the broker died of signal"),
            std::string::npos)
      << "the attack did not crash the broker: was it fixed? " << broker.Log();
}

}  // namespace
}  // namespace zchat
