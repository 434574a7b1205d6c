// TestBroker: a real Server on a loopback port chosen by the system, running
// on its own thread over a database in a temporary directory. Restart() stops
// it and starts a new one on the same endpoint and database (a broker
// restart, as clients see it).
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "broker/server.h"
#include "tests/support/temp_dir.h"

namespace zchat::testing {

class TestBroker {
 public:
  TestBroker() { Start("tcp://127.0.0.1:*"); }
  // `tweak` adjusts the options of every start (CurveZMQ keys, limits...).
  explicit TestBroker(std::function<void(ServerOptions&)> tweak)
      : tweak_(std::move(tweak)) {
    Start("tcp://127.0.0.1:*");
  }
  ~TestBroker() { Stop(); }

  const std::string& endpoint() const { return endpoint_; }
  std::string db_path() const { return dir_.File("broker.db"); }
  // For the metrics (atomics, readable from the test's thread), not for
  // state the loop owns.
  const Server& server() const { return *server_; }

  void Stop() {
    if (!server_) return;
    server_->Stop();
    runner_.join();
    server_.reset();
  }
  void Restart() {
    Stop();
    Start(endpoint_);
  }
  void Start(const std::string& bind) {
    ServerOptions options;
    options.bind = bind;
    options.db_path = db_path();
    options.hash_threads = 1;
    options.hash_cost = HashCost{1, 8192};
    // ZCHAT_TEST_STORE=partitioned: the database in 3 partitions
    // (partitioned_store.h) on 3 threads, as in the handler tests.
    if (const char* which = std::getenv("ZCHAT_TEST_STORE");
        which && std::string(which) == "partitioned") {
      options.store.partitions = 3;
      options.threads = 3;
    }
    if (tweak_) tweak_(options);
    auto server = Server::Create(options);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(*server);
    endpoint_ = server_->endpoint();
    runner_ = std::thread([this] { server_->Run(); });
  }

 private:
  std::function<void(ServerOptions&)> tweak_;
  TempDir dir_;
  std::unique_ptr<Server> server_;
  std::thread runner_;
  std::string endpoint_;
};

}  // namespace zchat::testing
