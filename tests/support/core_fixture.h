// A BrokerCore over a real SQLite file, driven without sockets. Call() sends
// one request and returns its reply, running the hash pool to completion for
// create/login; pushes and other frames collect in per-peer inboxes.
#pragma once

#include <gtest/gtest.h>
#include <poll.h>

#include <chrono>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "broker/broker_core.h"
#include "broker/usernames.h"
#include "broker/wildcard.h"
#include "messages/codec.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_postgres.h"

namespace zchat::testing {

// The body of `m` as a T, or null.
template <class T>
const T* As(const Message& m) {
  return std::get_if<T>(&m.body);
}

class CoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Restart(); }

  // Opens (or reopens: a broker restart) the store and a fresh core. With
  // ZCHAT_TEST_STORE=postgresql, the store is a database of its own on the
  // test program's throwaway PostgreSQL server (TestPostgres); with
  // ZCHAT_TEST_STORE=partitioned, SQLite files in 3 partitions
  // (partitioned_store.h), run on 3 threads; else an SQLite file.
  void Restart(StoreOptions options = {}) {
    core_.reset();
    store_.reset();
    const char* which = std::getenv("ZCHAT_TEST_STORE");
    if (which && std::string(which) == "partitioned") options.partitions = 3;
    if (partitions_ > 0) options.partitions = partitions_;
    if (spec_.empty()) {
      if (which && std::string(which) == "postgresql") {
        spec_ = SharedPostgres().NewDatabase();
        ASSERT_FALSE(spec_.empty()) << SharedPostgres().error();
      } else {
        spec_ = dir_.File("broker.db");
      }
    }
    auto store = Store::Open(spec_, options);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(*store);
    core_ = std::make_unique<BrokerCore>(*store_, pool_, config_,
                                         [this] { return now_; });
    // Partitioned: sends and receipts run on 3 threads, a partition each.
    if (auto* parts = dynamic_cast<PartitionedStore*>(store_.get())) {
      Status s = core_->RunInPartitions(*parts, 3);
      ASSERT_TRUE(s.ok()) << s.ToString();
    }
    inbox_.clear();
  }

  // Sends `body` from `peer`; returns the reply to it (nullopt if none came,
  // e.g. an accepted MESSAGE_RECEIPT). Pushes go to the peer inboxes.
  std::optional<Message> Call(const std::string& peer, Body body) {
    const uint64_t req = next_req_++;
    Deliver(peer, Encode(Message{req, std::move(body)}));
    FinishHashing();
    auto& box = inbox_[peer];
    for (auto it = box.begin(); it != box.end(); ++it) {
      if (it->request_id == req) {
        Message reply = std::move(*it);
        box.erase(it);
        return reply;
      }
    }
    return std::nullopt;
  }

  // Runs batches of hash-pool completions until no password work is left
  // (a finished request may release waiting ones that hash again).
  void FinishHashing() {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (pool_.in_flight() > 0 &&
           std::chrono::steady_clock::now() < deadline) {
      pollfd fd{pool_.wake_fd(), POLLIN, 0};
      ::poll(&fd, 1, 100);
      Batch([&] { core_->OnHashResults(); });
    }
    ASSERT_EQ(pool_.in_flight(), 0u) << "password hashing did not finish";
  }

  // Removes and returns every frame queued for `peer`, in arrival order.
  std::vector<Message> Drain(const std::string& peer) {
    auto& box = inbox_[peer];
    std::vector<Message> out(std::make_move_iterator(box.begin()),
                             std::make_move_iterator(box.end()));
    box.clear();
    return out;
  }

  // Call() that expects a reply of type T.
  template <class T>
  T Expect(const std::string& peer, Body body) {
    std::optional<Message> reply = Call(peer, std::move(body));
    if (!reply) {
      ADD_FAILURE() << "no reply";
      return T{};
    }
    if (!std::holds_alternative<T>(reply->body)) {
      ADD_FAILURE() << "expected " << MessageTypeName(T::kType) << ", got "
                    << MessageTypeName(TypeOf(reply->body)) << Describe(*reply);
      return T{};
    }
    return std::get<T>(reply->body);
  }

  ErrorCode ExpectError(const std::string& peer, Body body) {
    return Expect<Error>(peer, std::move(body)).code;
  }

  // A raw frame, as a client would send it, on transport connection
  // `connection` (-1: unknown).
  void Deliver(const std::string& peer, const std::string& frame,
               int connection = -1) {
    Batch([&] { core_->OnFrame(peer, frame, connection); });
  }

  void Tick() {
    Batch([&] { core_->OnTick(); });
  }

  void Batch(const std::function<void()>& work) {
    core_->BeginBatch();
    work();
    last_frames_ = core_->EndBatch();
    for (OutFrame& out : last_frames_) {
      Result<Message> m = Decode(out.frame);
      ASSERT_TRUE(m.ok()) << "broker sent an undecodable frame: "
                          << m.status().ToString();
      inbox_[out.routing_id].push_back(std::move(*m));
    }
  }

  // Removes and returns the pushes (request id 0) queued for `peer`.
  std::vector<Message> Pushes(const std::string& peer) {
    std::vector<Message> out;
    auto& box = inbox_[peer];
    for (auto it = box.begin(); it != box.end();) {
      if (it->request_id == 0) {
        out.push_back(std::move(*it));
        it = box.erase(it);
      } else {
        ++it;
      }
    }
    return out;
  }

  template <class T>
  std::vector<T> PushesOf(const std::string& peer) {
    std::vector<T> out;
    for (Message& m : Pushes(peer)) {
      if (auto* p = std::get_if<T>(&m.body)) out.push_back(std::move(*p));
    }
    return out;
  }

  static std::string Describe(const Message& m) {
    if (const auto* e = std::get_if<Error>(&m.body)) {
      return " (" + std::string(ErrorCodeName(e->code)) + ": " + e->reason +
             ")";
    }
    return "";
  }

  void CreateUser(const std::string& peer, const std::string& name,
                  const std::string& password = "password123") {
    auto ok = Expect<CreateSuccess>(peer, CreateAccount{name, password});
    ASSERT_EQ(ok.username, name);
  }

  LoginSuccess Login(const std::string& peer, const std::string& name,
                     const std::string& password = "password123") {
    return Expect<LoginSuccess>(peer,
                                LoginRequest{name, password, std::nullopt});
  }

  // Creates `name` and logs it in on connection `peer`.
  void Join(const std::string& peer, const std::string& name) {
    CreateUser(peer, name);
    Login(peer, name);
  }

  uint64_t SendText(const std::string& peer, const std::string& to,
                    const std::string& body) {
    return Expect<MessagePending>(peer, SendMessage{to, body, next_cmid_++})
        .message_id;
  }

  TempDir dir_;
  std::string spec_;    // the store: an SQLite file or a PostgreSQL URI
  int partitions_ = 0;  // set by a fixture before SetUp: always partitioned
  BrokerConfig config_;
  HashPool pool_{1, 64, HashCost{1, 8192}};
  std::unique_ptr<Store> store_;
  std::unique_ptr<BrokerCore> core_;
  int64_t now_ = 1'800'000'000'000;
  uint64_t next_req_ = 1;
  uint64_t next_cmid_ = 1000;
  std::map<std::string, std::deque<Message>> inbox_;
  std::vector<OutFrame> last_frames_;  // of the latest batch, as sent
};

}  // namespace zchat::testing
