// Server: the broker's transport loop. One ROUTER socket, polled beside the
// hash pool's eventfd and a stop eventfd with a timeout equal to the time to
// the next tick (session expiry, pruning). Each wake-up handles a batch of
// up to `max_batch` frames in one transaction, commits, then sends the
// replies and pushes (group commit). Run() on one thread; Stop() from any
// thread or a signal handler.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <zmq.hpp>

#include "broker/admission.h"
#include "broker/broker_core.h"
#include "broker/hash_pool.h"
#include "broker/metrics_server.h"
#include "broker/store.h"
#include "broker/unique_fd.h"
#include "messages/status.h"

namespace zchat {

struct ServerOptions {
  std::string bind = "tcp://127.0.0.1:5555";
  std::string db_path;
  StoreOptions store;
  BrokerConfig broker;
  int hash_threads = 2;
  // libzmq I/O threads: the TCP reads and writes, ZMTP framing and
  // handshakes of the client connections, spread over them. 0: 2, or a
  // quarter of the cores up to 4 on a machine with more than 8 (1 on one
  // core). Measured on 2 cores (docs/performance.md section 10): 2 threads
  // log 10,000 clients in again after a restart in 3-5 s instead of 8.
  int io_threads = 0;
  // A database in partitions (StoreOptions::partitions): the threads that
  // run a batch's sends and receipts partition by partition, each
  // partition's commit on its thread (BrokerCore::RunInPartitions). 0: one
  // per core, up to the partitions; 1: all on the loop thread.
  int threads = 0;
  size_t hash_queue = 64;
  HashCost hash_cost;
  int max_batch = 1024;
  int send_hwm = 10'000;  // frames queued per peer before sends are dropped
  int64_t tick_ms = 1000;
  // CurveZMQ: the broker's secret key (40 Z85 characters). When set, every
  // connection is encrypted and a client must know the broker's public key;
  // plain peers cannot complete the handshake.
  std::string curve_secret_key;
  // Client connections admitted at once; 0: the descriptor limit less a
  // reserve. Past it, a new connection is cut as soon as it is accepted.
  int max_connections = 0;
  // "HOST:PORT": serve Prometheus metrics over HTTP there (metrics_server.h).
  // Empty: no metrics endpoint.
  std::string metrics_bind;
};

class Server {
 public:
  static Result<std::unique_ptr<Server>> Create(const ServerOptions& options);
  ~Server();

  // The bound endpoint, with the real port when the bind used '*' or 0.
  const std::string& endpoint() const { return endpoint_; }
  // The metrics URL, with the real port; empty without --metrics-bind.
  std::string metrics_url() const {
    return metrics_server_ ? metrics_server_->url() : std::string();
  }
  void Run();
  void Stop();  // async-signal-safe

  const BrokerCore& core() const { return *core_; }
  const Admission& admission() const { return *admission_; }

 private:
  Server(const ServerOptions& options, std::unique_ptr<Store> store);
  void ReadBatch();
  void Flush(std::vector<OutFrame> frames);
  // Copies the transport's gauges (connections, sessions, hash jobs) into
  // the core's metrics; frames in and sends dropped are counted there as
  // they happen.
  void UpdateGauges();

  ServerOptions options_;
  std::unique_ptr<Store> store_;
  HashPool hashes_;
  std::unique_ptr<BrokerCore> core_;
  zmq::context_t context_;
  zmq::socket_t router_;
  std::unique_ptr<Admission> admission_;
  std::string endpoint_;
  UniqueFd stop_fd_;
  uint64_t batches_ = 0;
  // Last: stopped (its thread joined) before what it reads is destroyed.
  std::unique_ptr<MetricsServer> metrics_server_;
};

}  // namespace zchat
