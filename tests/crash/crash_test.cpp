// Crash consistency: the broker runs as a separate process under load and is
// killed with SIGKILL at random moments, then restarted on the same
// database. The oracle is the clients' own records: every message a sender
// was told MESSAGE_PENDING for reaches its recipient; no retried send makes
// a second message; nothing arrives that was never acknowledged; no
// MESSAGE_SUCCESS comes without a receipt; and a receipt the broker answered
// (a PONG after it, no ERROR for it) is never undone by a crash. A receipt
// refused with ERROR (a batch the database rolled back) took no effect: its
// message must come again. Recipients also "die"
// between a push and its receipt: those messages must come again. Senders
// acknowledge each MESSAGE_SUCCESS (NOTICE_RECEIPT) and drop repeats by
// message id, as clients do: in the end every message has exactly one
// success at its sender after that dedup.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <random>
#include <set>

#include "tests/support/broker_process.h"
#include "tests/support/raw_client.h"
#include "tests/support/test_postgres.h"

namespace zchat {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr int kSenders = 6;
constexpr int kRecipients = 6;
constexpr int kCrashes = 12;
constexpr int kWindow = 20;

struct Peer {
  std::string name;
  int broker = 0;  // index into the test's endpoints
  std::string token;
  std::unique_ptr<testing::RawClient> client;  // a new one per broker run
  // Never blocks, as before: a message the socket cannot take now is
  // dropped.
  uint64_t Send(const Body& body) {
    return client->Send(body, zmq::send_flags::dontwait);
  }
};

// What each side saw: the oracle's inputs.
struct Records {
  // sender -> client_msg_id -> message ids acknowledged for it
  std::map<int, std::map<uint64_t, std::set<uint64_t>>> acked;
  std::map<int, std::set<uint64_t>> unacked;    // cmids in flight
  std::map<uint64_t, int> addressee;            // message id -> recipient
  std::map<int, std::set<uint64_t>> delivered;  // recipient -> ids
  std::set<uint64_t> receipted;                 // receipts sent
  std::set<uint64_t> receipt_confirmed;         // a PONG came after
  uint64_t receipts_refused = 0;                // answered with ERROR
  uint64_t receipt_refused_after_pong = 0;      // ERROR after a later PONG
  std::map<uint64_t, int> successes;            // id -> count, after dedup
  uint64_t success_repeats = 0;                 // dropped by the dedup
  uint64_t redelivered_after_confirmed_receipt = 0;
};

class CrashTest : public ::testing::Test {
 protected:
  void Connect(Peer& p) {
    p.client = std::make_unique<testing::RawClient>(ctx_, endpoints_[p.broker]);
  }
  // Waits for the reply to `req` on `p`, handling pushes meanwhile.
  std::optional<Message> Await(int who, Peer& p, uint64_t req,
                               std::chrono::milliseconds wait) {
    const auto deadline = Clock::now() + wait;
    std::optional<Message> reply;
    for (;;) {
      p.client->Drain([&](Message& m) {
        if (!reply && m.request_id == req) {
          reply = std::move(m);
        } else {
          Handle(who, p, m);
        }
      });
      if (reply || Clock::now() >= deadline) return reply;
      p.client->WaitReadable(
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                                Clock::now()));
    }
  }
  // Logs in (token if we have one); true on success.
  bool Login(int who, Peer& p) {
    LoginRequest login{p.name, std::nullopt, std::nullopt};
    if (p.token.empty()) {
      login.password = "password123";
    } else {
      login.token = p.token;
    }
    std::optional<Message> r = Await(who, p, p.Send(login), 10s);
    if (!r) return false;
    auto* ok = std::get_if<LoginSuccess>(&r->body);
    if (ok) p.token = ok->token;
    return ok != nullptr;
  }
  // Index < kSenders: a sender; else a recipient.
  void Handle(int who, Peer& p, const Message& m) {
    if (auto* pending = std::get_if<MessagePending>(&m.body)) {
      rec_.acked[who][pending->client_msg_id].insert(pending->message_id);
      rec_.unacked[who].erase(pending->client_msg_id);
      send_requests_[who].erase(m.request_id);
      rec_.addressee[pending->message_id] = target_of_[pending->client_msg_id];
    } else if (auto* s = std::get_if<MessageSuccess>(&m.body)) {
      // The sender's client: hands a notice over once, acknowledges it
      // (again, for a repeat: the first acknowledgement may be lost).
      if (notices_seen_[who].insert(s->message_id).second) {
        ++rec_.successes[s->message_id];
      } else {
        ++rec_.success_repeats;
      }
      p.Send(NoticeReceipt{s->message_id});
    } else if (std::holds_alternative<Error>(m.body)) {
      // A send refused (a batch the database rolled back) is sent again, as
      // a client does.
      if (auto sent = send_requests_[who].find(m.request_id);
          sent != send_requests_[who].end()) {
        const uint64_t cmid = sent->second;
        send_requests_[who].erase(sent);
        if (rec_.unacked[who].count(cmid)) Resend(who, cmid);
        return;
      }
      // A refused receipt: its message was not confirmed. The ERROR comes
      // before the reply to any later request (a PING's PONG).
      auto it = receipt_requests_[who].find(m.request_id);
      if (it == receipt_requests_[who].end()) return;
      ++rec_.receipts_refused;
      if (it->second.confirmed) ++rec_.receipt_refused_after_pong;
      receipt_requests_[who].erase(it);
    } else if (auto* d = std::get_if<DistributeMessage>(&m.body)) {
      const int r = who - kSenders;
      if (rec_.receipt_confirmed.count(d->message_id)) {
        ++rec_.redelivered_after_confirmed_receipt;
      }
      rec_.delivered[r].insert(d->message_id);
      // Sometimes the recipient "dies" before confirming: no receipt now,
      // the message must come again later.
      if (drop_(rng_) && !final_phase_) return;
      const uint64_t req = p.Send(MessageReceipt{d->message_id});
      rec_.receipted.insert(d->message_id);
      receipt_requests_[who][req] = {d->message_id, false};
      unconfirmed_receipts_[who].push_back(req);
    } else if (std::holds_alternative<Pong>(m.body)) {
      // Receipts sent before this PING were handled by the broker.
      auto it = awaiting_pong_[who].find(m.request_id);
      if (it == awaiting_pong_[who].end()) return;
      for (uint64_t req : it->second) {
        auto r = receipt_requests_[who].find(req);
        if (r == receipt_requests_[who].end()) continue;  // refused
        r->second.confirmed = true;
        rec_.receipt_confirmed.insert(r->second.message_id);
      }
      awaiting_pong_[who].erase(it);
    }
  }
  void SendOne(int s) {
    const uint64_t cmid = next_cmid_++;
    const int r = kSenders + static_cast<int>(rng_() % kRecipients);
    target_of_[cmid] = r;
    rec_.unacked[s].insert(cmid);
    Resend(s, cmid);
  }
  void Resend(int s, uint64_t cmid) {
    const int r = target_of_[cmid];
    send_requests_[s][peers_[s].Send(
        SendMessage{peers_[r].name, "m" + std::to_string(cmid), cmid})] = cmid;
  }
  // After a broker died: the peers it served (all of them with one
  // broker) connect again, log in with their tokens, resend what is unacked
  // and fetch.
  bool Reconnect(const std::set<int>& who) {
    for (int i : who) {
      unconfirmed_receipts_[i].clear();
      awaiting_pong_[i].clear();
      receipt_requests_[i].clear();
      send_requests_[i].clear();
      Connect(peers_[i]);
      if (!Login(i, peers_[i])) return false;
    }
    for (int s = 0; s < kSenders; ++s) {
      if (!who.count(s)) continue;
      for (uint64_t cmid : rec_.unacked[s]) Resend(s, cmid);
    }
    for (int r = kSenders; r < kSenders + kRecipients; ++r) {
      if (who.count(r)) peers_[r].Send(FetchMessages{});
    }
    return true;
  }
  std::set<int> Everyone() const {
    std::set<int> all;
    for (int i = 0; i < kSenders + kRecipients; ++i) all.insert(i);
    return all;
  }
  // Creates every peer's account (through its broker) and logs it in.
  void Join() {
    for (int i = 0; i < kSenders + kRecipients; ++i) {
      peers_[i].name = (i < kSenders ? "s" : "r") + std::to_string(i);
      Connect(peers_[i]);
      std::optional<Message> created = Await(
          i, peers_[i],
          peers_[i].Send(CreateAccount{peers_[i].name, "password123"}), 10s);
      ASSERT_TRUE(created &&
                  std::holds_alternative<CreateSuccess>(created->body));
      ASSERT_TRUE(Login(i, peers_[i]));
    }
  }
  // Senders keep their windows full for `run`; recipients confirm and PING.
  void Traffic(std::chrono::milliseconds run) {
    const auto until = Clock::now() + run;
    int pings = 0;
    while (Clock::now() < until) {
      for (int s = 0; s < kSenders; ++s) {
        while (rec_.unacked[s].size() < kWindow) SendOne(s);
      }
      if (++pings % 5 == 0) {
        for (int r = kSenders; r < kSenders + kRecipients; ++r) {
          const uint64_t req = peers_[r].Send(Ping{});
          awaiting_pong_[r][req] = std::move(unconfirmed_receipts_[r]);
          unconfirmed_receipts_[r].clear();
        }
      }
      Pump(5ms);
    }
  }
  // No more crashes: everything unacked is resent; recipients fetch and
  // confirm until nothing is left. Then the oracle.
  void SettleAndCheck(int kills);
  // One broker with `flags`, killed and restarted again and again.
  void KillRepeatedly(const std::vector<std::string>& flags);
  void Pump(std::chrono::milliseconds wait) {
    std::vector<zmq::pollitem_t> items;
    for (auto& p : peers_)
      items.push_back({p.client->socket().handle(), 0, ZMQ_POLLIN, 0});
    zmq::poll(items.data(), items.size(), wait);
    for (int i = 0; i < kSenders + kRecipients; ++i) {
      peers_[i].client->Drain([&](Message& m) {
        Handle(i, peers_[i], m);
        if (std::holds_alternative<FetchResult>(m.body) &&
            std::get<FetchResult>(m.body).remaining > 0) {
          peers_[i].Send(FetchMessages{});
        }
      });
    }
  }

  zmq::context_t ctx_;
  std::vector<std::string> endpoints_;
  std::vector<Peer> peers_{kSenders + kRecipients};
  Records rec_;
  std::map<uint64_t, int> target_of_;
  // Per peer: request ids of receipts sent since its last PING.
  std::map<int, std::vector<uint64_t>> unconfirmed_receipts_;
  // Per peer: a receipt's request id -> its message, and whether a PONG
  // confirmed it (not refused before).
  struct ReceiptSent {
    uint64_t message_id = 0;
    bool confirmed = false;
  };
  std::map<int, std::map<uint64_t, ReceiptSent>> receipt_requests_;
  // Per peer: a send's request id -> its client_msg_id.
  std::map<int, std::map<uint64_t, uint64_t>> send_requests_;
  std::map<int, std::set<uint64_t>> notices_seen_;  // per sender
  // Per peer: PING request id -> receipts (request ids) sent before it.
  std::map<int, std::map<uint64_t, std::vector<uint64_t>>> awaiting_pong_;
  uint64_t next_cmid_ = 1;
  std::mt19937 rng_{20261127};
  std::bernoulli_distribution drop_{0.1};
  bool final_phase_ = false;
};

void CrashTest::SettleAndCheck(int kills) {
  // Final phase: no more crashes. Everything unacked is resent; recipients
  // fetch and confirm until nothing is left.
  final_phase_ = true;
  const auto deadline = Clock::now() + 30s;
  auto settled = [&] {
    for (int s = 0; s < kSenders; ++s) {
      if (!rec_.unacked[s].empty()) return false;
    }
    for (const auto& [sender, by_cmid] : rec_.acked) {
      for (const auto& [cmid, ids] : by_cmid) {
        for (uint64_t id : ids) {
          if (!rec_.delivered[rec_.addressee[id] - kSenders].count(id))
            return false;
          if (!rec_.successes.count(id)) return false;
        }
      }
    }
    return true;
  };
  while (!settled() && Clock::now() < deadline) {
    Pump(20ms);
    for (int r = kSenders; r < kSenders + kRecipients; ++r)
      peers_[r].Send(FetchMessages{});
  }

  // The oracle.
  uint64_t acked = 0, lost = 0, duplicated = 0, unexpected = 0;
  std::set<uint64_t> acked_ids;
  for (const auto& [sender, by_cmid] : rec_.acked) {
    for (const auto& [cmid, ids] : by_cmid) {
      ++acked;
      if (ids.size() > 1) ++duplicated;  // one send, two messages
      for (uint64_t id : ids) {
        acked_ids.insert(id);
        if (!rec_.delivered[rec_.addressee[id] - kSenders].count(id)) ++lost;
      }
    }
  }
  for (const auto& [r, ids] : rec_.delivered) {
    for (uint64_t id : ids) {
      if (!acked_ids.count(id) || rec_.addressee[id] - kSenders != r)
        ++unexpected;
    }
  }
  uint64_t success_without_receipt = 0, success_missing = 0;
  for (const auto& [id, n] : rec_.successes) {
    if (!rec_.receipted.count(id)) ++success_without_receipt;
  }
  // Every message was confirmed in the end (the final phase confirms all):
  // its sender has its success, once after dedup.
  for (uint64_t id : acked_ids) success_missing += !rec_.successes.count(id);
  std::printf(
      "crash test: %d kills, %llu acknowledged, lost=%llu duplicated=%llu "
      "unexpected=%llu success_without_receipt=%llu success_missing=%llu "
      "success_repeats_dropped=%llu redelivered_after_confirmed_receipt=%llu "
      "receipts_refused=%llu receipt_refused_after_pong=%llu\n",
      kills, static_cast<unsigned long long>(acked),
      static_cast<unsigned long long>(lost),
      static_cast<unsigned long long>(duplicated),
      static_cast<unsigned long long>(unexpected),
      static_cast<unsigned long long>(success_without_receipt),
      static_cast<unsigned long long>(success_missing),
      static_cast<unsigned long long>(rec_.success_repeats),
      static_cast<unsigned long long>(rec_.redelivered_after_confirmed_receipt),
      static_cast<unsigned long long>(rec_.receipts_refused),
      static_cast<unsigned long long>(rec_.receipt_refused_after_pong));
  EXPECT_GT(acked, 500u) << "too little traffic to mean anything";
  EXPECT_EQ(lost, 0u);
  EXPECT_EQ(duplicated, 0u);
  EXPECT_EQ(unexpected, 0u);
  EXPECT_EQ(success_without_receipt, 0u);
  EXPECT_EQ(success_missing, 0u) << "a confirmed message's notice was lost";
  EXPECT_EQ(rec_.redelivered_after_confirmed_receipt, 0u);
  EXPECT_EQ(rec_.receipt_refused_after_pong, 0u)
      << "an ERROR for a receipt came after the PONG of a later PING";
}

// Killing the broker and starting it again, `kCrashes` times, with traffic
// in between; then the oracle (SettleAndCheck).
void CrashTest::KillRepeatedly(const std::vector<std::string>& flags) {
  testing::BrokerProcess broker(flags);
  endpoints_ = {broker.Start()};
  ASSERT_FALSE(endpoints_[0].empty());
  Join();
  std::uniform_int_distribution<int> run_ms(150, 600);
  for (int crash = 0; crash < kCrashes; ++crash) {
    Traffic(std::chrono::milliseconds(run_ms(rng_)));
    broker.Kill();  // SIGKILL, mid-traffic
    ASSERT_EQ(broker.Start(endpoints_[0]), endpoints_[0])
        << "restart " << crash;
    ASSERT_TRUE(Reconnect(Everyone()))
        << "logging in again after crash " << crash;
  }
  SettleAndCheck(kCrashes);
}

TEST_F(CrashTest, AcknowledgedMessagesSurviveRepeatedKills) {
  KillRepeatedly({"--log-level", "warn"});
}

// The same over a database in three partitions (partitioned_store.h), on
// three threads: each commits its partition, and a kill may fall between
// their commits.
TEST_F(CrashTest, AcknowledgedMessagesSurviveRepeatedKillsInPartitions) {
  KillRepeatedly(
      {"--log-level", "warn", "--partitions", "3", "--threads", "3"});
}

// Three brokers on one PostgreSQL database, peers spread over them. Again
// and again one broker is killed (SIGKILL) mid-traffic and its peers move to
// the next one (token login, resend, fetch) while the others go on; the
// killed broker comes back for the next round. The same oracle: nothing
// acknowledged lost, nothing twice, every notice at its sender, wherever it
// moved.
TEST_F(CrashTest, ThreeBrokersOnPostgresLoseNothingWhenOneIsKilled) {
  const std::string uri = testing::SharedPostgres().NewDatabase();
  ASSERT_FALSE(uri.empty()) << testing::SharedPostgres().error();
  std::vector<std::unique_ptr<testing::BrokerProcess>> brokers;
  for (int b = 0; b < 3; ++b) {
    brokers.push_back(std::make_unique<testing::BrokerProcess>(
        std::vector<std::string>{"--log-level", "warn", "--store", uri}));
    endpoints_.push_back(brokers.back()->Start());
    ASSERT_FALSE(endpoints_.back().empty()) << "broker " << b;
  }
  for (int i = 0; i < kSenders + kRecipients; ++i) peers_[i].broker = i % 3;
  Join();
  constexpr int kKills = 6;
  std::uniform_int_distribution<int> run_ms(200, 600);
  for (int kill = 0; kill < kKills; ++kill) {
    Traffic(std::chrono::milliseconds(run_ms(rng_)));
    const int victim = kill % 3;
    brokers[victim]->Kill();
    std::set<int> moved;
    for (int i = 0; i < kSenders + kRecipients; ++i) {
      if (peers_[i].broker == victim) {
        peers_[i].broker = (victim + 1) % 3;
        moved.insert(i);
      }
    }
    ASSERT_TRUE(Reconnect(moved)) << "moving off broker " << victim;
    ASSERT_EQ(brokers[victim]->Start(endpoints_[victim]), endpoints_[victim])
        << "restarting broker " << victim;
  }
  SettleAndCheck(kKills);
}

}  // namespace
}  // namespace zchat
