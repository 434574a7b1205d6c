// Hostile peers against the real broker: a raw DEALER sending garbage and
// crafted frames, a raw TCP peer that never speaks ZeroMQ, and more
// connections than the broker admits. Each gets its documented outcome and
// a bystander client is served throughout.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>

#include "tests/support/broker_process.h"
#include "tests/support/raw_client.h"
#include "tests/support/test_broker.h"
#include "tests/support/test_util.h"

namespace zchat {
namespace {

using namespace std::chrono_literals;
using testing::RawClient;

// Polls `done` every 10 ms until it holds or `deadline` passes.
template <class Done>
void WaitUntil(Done done, std::chrono::steady_clock::time_point deadline) {
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    zmq::pollitem_t none{nullptr, -1, 0, 0};
    zmq::poll(&none, 0, 10ms);
  }
}

// A plain TCP connection to a tcp://127.0.0.1:PORT endpoint.
int ConnectRawTcp(const std::string& endpoint) {
  const int port = std::stoi(endpoint.substr(endpoint.rfind(':') + 1));
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  return fd;
}

class HostileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bystander_ = std::make_unique<RawClient>(ctx_, broker_.endpoint());
    bystander_->Call<CreateSuccess>(CreateAccount{"bystander", "password123"});
    bystander_->Call<LoginSuccess>(
        LoginRequest{"bystander", "password123", std::nullopt});
  }
  // The bystander is still served, promptly.
  void ExpectServed() {
    std::optional<Message> m = bystander_->Await(bystander_->Send(Ping{}), 5s);
    ASSERT_TRUE(m.has_value()) << "the broker stopped answering";
    EXPECT_TRUE(std::holds_alternative<Pong>(m->body));
  }
  // Sends raw frames and returns the ERROR codes that came back.
  std::vector<ErrorCode> Errors(RawClient& c, size_t expected) {
    std::vector<ErrorCode> codes;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (codes.size() < expected &&
           std::chrono::steady_clock::now() < deadline) {
      c.Pump(100ms);
      auto take = [&](std::deque<Message>& q) {
        while (!q.empty()) {
          if (auto* e = std::get_if<Error>(&q.front().body))
            codes.push_back(e->code);
          q.pop_front();
        }
      };
      take(c.pushes());  // request id 0: unreadable requests
    }
    return codes;
  }

  testing::TestBroker broker_;
  zmq::context_t ctx_;
  std::unique_ptr<RawClient> bystander_;
};

TEST_F(HostileTest, RandomFramesEachGetAnError) {
  RawClient evil(ctx_, broker_.endpoint());
  std::mt19937 rng(7);
  constexpr int kFrames = 2000;
  for (int i = 0; i < kFrames; ++i) {
    std::string frame(rng() % 300, '\0');
    for (char& c : frame) c = static_cast<char>(rng());
    // Keep them from being valid maps by accident: a map has to start 0x8X.
    if (!frame.empty() && (frame[0] & 0xf0) == 0x80) frame[0] = '\xc1';
    evil.SendRaw(frame);
  }
  std::vector<ErrorCode> codes = Errors(evil, kFrames);
  EXPECT_EQ(codes.size(), static_cast<size_t>(kFrames));
  for (ErrorCode c : codes) EXPECT_EQ(c, ErrorCode::kMalformed);
  ExpectServed();
}

TEST_F(HostileTest, CraftedFramesGetTheirDocumentedErrors) {
  RawClient evil(ctx_, broker_.endpoint());
  const char* bombs[] = {"dd ff ff ff ff",
                         "df ff ff ff ff",
                         "db ff ff ff ff",
                         "c6 ff ff ff ff",
                         "c9 ff ff ff ff 01",
                         "",
                         "c0",
                         "91 91 91 91 91 91 91 91 91 91 01"};
  for (const char* hex : bombs) evil.SendRaw(testing::FromHex(hex));
  std::vector<ErrorCode> codes = Errors(evil, std::size(bombs));
  ASSERT_EQ(codes.size(), std::size(bombs));
  for (ErrorCode c : codes) EXPECT_EQ(c, ErrorCode::kMalformed);
  // Readable envelope, invalid UTF-8 in a field: the error echoes the
  // request id and names the field.
  auto reply = evil.Await(evil.Send(SendMessage{"x", "\xff", 1}), 5s);
  ASSERT_TRUE(reply.has_value());
  const auto& error = std::get<Error>(reply->body);
  EXPECT_EQ(error.code, ErrorCode::kMalformed);
  EXPECT_NE(error.reason.find("'body'"), std::string::npos) << error.reason;
  ExpectServed();
}

TEST_F(HostileTest, ThousandsOfFramesInOneMessageAreRefusedWhole) {
  RawClient evil(ctx_, broker_.endpoint());
  const std::string ping = Encode({1, Ping{}});
  for (int i = 0; i < 5000; ++i) {
    evil.socket().send(zmq::buffer(ping), zmq::send_flags::sndmore);
  }
  evil.socket().send(zmq::buffer(ping), zmq::send_flags::none);
  std::optional<Error> e = evil.AwaitPush<Error>();
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code, ErrorCode::kMalformed);
  EXPECT_NE(e->reason.find("5001"), std::string::npos) << e->reason;
  ExpectServed();
}

TEST_F(HostileTest, HugeNamesAndPatternsAreRefused) {
  RawClient evil(ctx_, broker_.endpoint());
  auto too_long = evil.Await(
      evil.Send(CreateAccount{std::string(40, 'a'), "password123"}), 5s);
  ASSERT_TRUE(too_long.has_value());
  EXPECT_EQ(std::get<CreateFailure>(too_long->body).code,
            ErrorCode::kInvalidUsername);
  // Over the codec's limit: refused before anything else looks at it.
  evil.SendRaw(testing::RawFrame([](testing::RawPacker& pk) {
    pk.pack_map(5);
    pk.pack("v");
    pk.pack(1);
    pk.pack("type");
    pk.pack(1);
    pk.pack("req");
    pk.pack(9);
    pk.pack("username");
    pk.pack(std::string(100'000, 'a'));
    pk.pack("password");
    pk.pack("password123");
  }));
  std::optional<Message> big = evil.Await(9, 5s);
  ASSERT_TRUE(big.has_value());
  EXPECT_EQ(std::get<Error>(big->body).code, ErrorCode::kMalformed);
  // The longest pattern the codec allows, all stars: bounded work.
  bystander_->Call<AccountList>(
      ListAccounts{std::string(kMaxPatternBytes, '*'), 10, std::nullopt});
  ExpectServed();
}

// A frame over the broker's maxmsgsize is never read: libzmq drops the
// connection that sent it. The sender sees its connection go; the
// bystander's stays up and is served.
TEST_F(HostileTest, OversizeFrameDropsThatConnectionOnly) {
  RawClient evil(ctx_, broker_.endpoint(), {.monitor = true});
  evil.Call<Pong>(Ping{});  // connected and served, before the frame
  ASSERT_EQ(evil.events_seen(ZMQ_EVENT_DISCONNECTED), 0);
  evil.SendRaw(std::string(kMaxFrameBytes * 2, 'x'));
  EXPECT_TRUE(evil.AwaitEvent(ZMQ_EVENT_DISCONNECTED, 5s))
      << "the broker kept the connection that sent an oversize frame";
  // Nothing came back for it either: the frame was dropped unread.
  evil.Poll();
  EXPECT_TRUE(evil.pushes().empty());
  ExpectServed();
}

// A peer that speaks plain TCP: garbage, or nothing at all.
TEST_F(HostileTest, RawTcpPeersDoNotDisturbOthers) {
  auto connect_raw = [&] { return ConnectRawTcp(broker_.endpoint()); };
  int garbage = connect_raw();
  std::string junk(4096, '\x5a');
  (void)!write(garbage, junk.data(), junk.size());
  int silent = connect_raw();  // never sends its greeting
  ExpectServed();
  // The garbage peer is disconnected by the broker.
  char buf[256];
  timeval tv{5, 0};
  setsockopt(garbage, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ssize_t n;
  do {
    n = read(garbage, buf, sizeof buf);
  } while (n > 0);
  // Closed (EOF), or reset because our garbage was still unread.
  EXPECT_TRUE(n == 0 || errno == ECONNRESET)
      << "the broker should close a peer that sends garbage: "
      << strerror(errno);
  close(garbage);
  close(silent);
  ExpectServed();
}

// Past its connection cap the broker cuts new peers before they are served,
// keeps serving the admitted ones, and takes a refused peer (which connects
// again by itself) when room returns.
TEST(AdmissionTest, RefusesPeersPastTheCapAndRecovers) {
  testing::TestBroker broker([](ServerOptions& o) { o.max_connections = 5; });
  zmq::context_t ctx;
  std::vector<std::unique_ptr<RawClient>> in;
  for (int i = 0; i < 5; ++i) {
    in.push_back(std::make_unique<RawClient>(ctx, broker.endpoint()));
    in.back()->Call<Pong>(Ping{});
  }
  RawClient late(ctx, broker.endpoint());
  late.Send(Ping{});
  EXPECT_FALSE(late.Await(1, 1s).has_value()) << "a sixth peer got in";
  in[0]->Call<Pong>(Ping{});  // the admitted are served
  in.pop_back();              // one leaves: the refused peer gets in
  // Its connection was cut, not failed: libzmq connects again by itself.
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  bool admitted = false;
  while (!admitted && std::chrono::steady_clock::now() < deadline) {
    admitted = late.Await(late.Send(Ping{}), 500ms).has_value();
  }
  EXPECT_TRUE(admitted) << "room came back but the refused peer did not get in";
  RawClient seventh(ctx, broker.endpoint());  // the cap holds again
  seventh.Send(Ping{});
  EXPECT_FALSE(seventh.Await(1, 1s).has_value()) << "a sixth peer got in";
}

// A peer holds a descriptor from its accept, before (or without) any
// handshake: raw TCP peers count against the cap until they close, and a
// ZeroMQ client refused meanwhile is never served, then gets in once they
// have gone.
TEST(AdmissionTest, PeersCountFromTheirAcceptUntilTheyClose) {
  testing::TestBroker broker([](ServerOptions& o) { o.max_connections = 3; });
  zmq::context_t ctx;
  std::vector<int> raw;
  for (int i = 0; i < 3; ++i) raw.push_back(ConnectRawTcp(broker.endpoint()));
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  const Metrics& metrics = broker.server().core().metrics();
  WaitUntil([&] { return metrics.connections.value() >= 3; }, deadline);
  ASSERT_EQ(metrics.connections.value(), 3);
  {
    RawClient late(ctx, broker.endpoint());
    late.Send(Ping{});
    EXPECT_FALSE(late.Await(1, 1s).has_value())
        << "a client got in past three silent TCP peers";
    // It was refused (it keeps trying while it exists); the count can lag.
    WaitUntil([&] { return metrics.connections_refused.value() > 0; },
              std::chrono::steady_clock::now() + 10s);
  }
  EXPECT_GT(metrics.connections_refused.value(), 0u);
  for (int fd : raw) close(fd);
  bool admitted = false;
  while (!admitted && std::chrono::steady_clock::now() < deadline + 10s) {
    RawClient newcomer(ctx, broker.endpoint());
    admitted = newcomer.Await(newcomer.Send(Ping{}), 500ms).has_value();
  }
  EXPECT_TRUE(admitted) << "the silent peers left but no client got in";
}

// With too few descriptors, the broker refuses peers instead of spinning
// on accept (libzmq's behaviour at EMFILE). A refused client connects again
// by itself; here once a second rather than libzmq's 100 ms, so that the
// CPU measured is the broker at the limit, not thirty refusals every 100 ms
// (0.28-0.31 s of CPU in the 2 s here, 0.64 s under ASan on a loaded CI
// machine; 0.05-0.07 s with the 1 s interval).
TEST(AdmissionTest, AtTheDescriptorLimitTheBrokerDoesNotSpin) {
  testing::BrokerProcess broker;
  broker.set_fd_limit({96, 96});
  const std::string endpoint = broker.Start();
  ASSERT_FALSE(endpoint.empty());
  zmq::context_t ctx;
  ctx.set(zmq::ctxopt::max_sockets, 512);
  std::vector<std::unique_ptr<RawClient>> clients;
  testing::RawClientOptions options;
  options.reconnect_ivl_ms = 1000;
  for (int i = 0; i < 120; ++i) {
    clients.push_back(std::make_unique<RawClient>(ctx, endpoint, options));
    clients.back()->Send(Ping{});
  }
  int answered = 0;
  const auto until = std::chrono::steady_clock::now() + 3s;
  for (auto& c : clients) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    answered += c->Await(1, std::max(left, 0ms)).has_value();
  }
  const std::chrono::microseconds before = broker.CpuTime();
  zmq::pollitem_t none{nullptr, -1, 0, 0};
  zmq::poll(&none, 0, 2000ms);  // let it sit at the limit for 2 s
  const std::chrono::microseconds after = broker.CpuTime();
  ASSERT_GE(before.count(), 0) << "no CPU time for the broker";
  ASSERT_GE(after.count(), 0) << "the broker died at the limit";
  EXPECT_EQ(broker.Stop(), 0);
  EXPECT_GT(answered, 0);
  EXPECT_LT(answered, 120) << "everyone got in: the limit was not reached";
  EXPECT_LT(after - before, 500ms)
      << "the broker used " << (after - before).count()
      << " us of CPU in 2 s at the limit";
}

}  // namespace
}  // namespace zchat
