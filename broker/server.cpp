#include "broker/server.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include "broker/log.h"
#include "broker/partitioned_store.h"

namespace zchat {
namespace {

int64_t UnixMillis() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch())
      .count();
}

int64_t SteadyMillis() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch())
      .count();
}

int IoThreads(int requested) {
  if (requested > 0) return requested;
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  if (cores <= 1) return 1;
  return std::clamp(cores / 4, 2, 4);
}

int WorkerThreads(int requested, int partitions) {
  if (requested > 0) return std::min(requested, partitions);
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  return std::clamp(cores, 1, partitions);
}

}  // namespace

Result<std::unique_ptr<Server>> Server::Create(const ServerOptions& options) {
  Result<std::unique_ptr<Store>> store =
      Store::Open(options.db_path, options.store);
  if (!store.ok()) return store.status();
  std::unique_ptr<Server> server(new Server(options, std::move(*store)));
  if (auto* parts = dynamic_cast<PartitionedStore*>(server->store_.get())) {
    const int threads = WorkerThreads(options.threads, parts->partitions());
    if (threads > 1) {
      if (Status s = server->core_->RunInPartitions(*parts, threads); !s.ok()) {
        return s;
      }
    }
    Log(LogLevel::kInfo, std::to_string(parts->partitions()) + " partitions, " +
                             std::to_string(threads) + " worker threads");
  } else if (options.threads > 1) {
    Log(LogLevel::kWarn,
        "--threads has no effect on a database of one file: its requests "
        "run on the loop thread (a new database takes --partitions)");
  }
  try {
    if (!options.curve_secret_key.empty()) {
      if (options.curve_secret_key.size() != 40) {
        return Status(ErrorCode::kInvalidArgument,
                      "the CurveZMQ secret key must be 40 Z85 characters");
      }
      server->router_.set(zmq::sockopt::curve_server, 1);
      server->router_.set(zmq::sockopt::curve_secretkey,
                          options.curve_secret_key);
    }
    server->router_.bind(options.bind);
    server->endpoint_ = server->router_.get(zmq::sockopt::last_endpoint);
  } catch (const zmq::error_t& e) {
    return Status(ErrorCode::kInvalidArgument,
                  "bind " + options.bind + ": " + e.what());
  }
  if (!options.metrics_bind.empty()) {
    Result<std::unique_ptr<MetricsServer>> metrics = MetricsServer::Start(
        options.metrics_bind, server->core_->metrics(), options.db_path);
    if (!metrics.ok()) return metrics.status();
    server->metrics_server_ = std::move(*metrics);
  }
  return server;
}

Server::Server(const ServerOptions& options, std::unique_ptr<Store> store)
    : options_(options),
      store_(std::move(store)),
      hashes_(options.hash_threads, options.hash_queue, options.hash_cost),
      core_(std::make_unique<BrokerCore>(*store_, hashes_, options.broker,
                                         UnixMillis)),
      context_(IoThreads(options.io_threads)),
      router_(context_, zmq::socket_type::router) {
  stop_fd_.reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  admission_ =
      std::make_unique<Admission>(context_, router_, options.max_connections);
  // A send to a peer that is gone fails (EHOSTUNREACH) instead of vanishing.
  router_.set(zmq::sockopt::router_mandatory, 1);
  // Frames larger than this make libzmq drop the connection before we see
  // them (the codec would refuse them anyway).
  router_.set(zmq::sockopt::maxmsgsize,
              static_cast<int64_t>(kMaxFrameBytes + 64));
  router_.set(zmq::sockopt::linger, 500);
  // After a restart every client reconnects at once: a short accept queue
  // drops their SYNs and TCP retries them seconds later.
  router_.set(zmq::sockopt::backlog, 4096);
  // A peer that connects and never completes the handshake is closed after
  // this long (it holds a descriptor meanwhile).
  router_.set(zmq::sockopt::handshake_ivl, 10'000);
  router_.set(zmq::sockopt::sndhwm, options.send_hwm);
  router_.set(zmq::sockopt::rcvhwm, options.send_hwm);
  // ZMTP heartbeats close dead TCP connections; the session timeout in the
  // core is what ends a login.
  router_.set(zmq::sockopt::heartbeat_ivl, 10'000);
  router_.set(zmq::sockopt::heartbeat_timeout, 30'000);
}

Server::~Server() = default;

void Server::Stop() {
  uint64_t one = 1;
  (void)!write(stop_fd_.get(), &one, sizeof one);
}

void Server::Run() {
  Log(LogLevel::kInfo, "listening on " + endpoint_);
  // The first tick at once: with a store shared by several brokers it
  // registers this broker (its lease) before any client is served.
  int64_t next_tick = SteadyMillis();
  for (;;) {
    // With a store shared by several brokers, its connection's socket too:
    // it turns readable when another broker's commit notifies this one.
    const int store_fd = store_->NotificationFd();
    zmq::pollitem_t items[] = {
        {router_.handle(), 0, ZMQ_POLLIN, 0},
        {nullptr, hashes_.wake_fd(), ZMQ_POLLIN, 0},
        {nullptr, stop_fd_.get(), ZMQ_POLLIN, 0},
        admission_->poll_item(),
        {nullptr, store_fd, ZMQ_POLLIN, 0},
    };
    // Notifications libpq read while the last batch waited for results do
    // not make the socket readable again: do not wait for them.
    const int64_t timeout =
        store_->HasNotifications()
            ? 0
            : std::max<int64_t>(0, next_tick - SteadyMillis());
    try {
      zmq::poll(items, store_fd >= 0 ? 5 : 4,
                std::chrono::milliseconds(timeout));
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) {
        Log(LogLevel::kError, std::string("poll: ") + e.what());
        break;
      }
      continue;
    }
    const bool stopping = items[2].revents & ZMQ_POLLIN;
    if (items[3].revents & ZMQ_POLLIN) admission_->Pump();
    const bool tick = SteadyMillis() >= next_tick;
    core_->BeginBatch();
    ++batches_;
    if (items[0].revents & ZMQ_POLLIN) ReadBatch();
    if (items[1].revents & ZMQ_POLLIN) core_->OnHashResults();
    // Every time round (not only when the socket is readable): libpq may
    // have read notifications while it waited for a statement's result.
    core_->OnStoreNotifications();
    if (tick) {
      core_->OnTick();
      next_tick = SteadyMillis() + options_.tick_ms;
    }
    Flush(core_->EndBatch());
    UpdateGauges();
    if (stopping) break;
  }
  Log(LogLevel::kInfo,
      "stopped; " + std::to_string(core_->metrics().frames_received.value()) +
          " frames in " + std::to_string(batches_) + " batches, " +
          std::to_string(core_->metrics().sends_dropped.value()) +
          " sends dropped at the high-water mark");
}

void Server::UpdateGauges() {
  Metrics& m = core_->metrics();
  m.connections.Set(admission_->connections());
  m.connections_refused.Add(admission_->refused() -
                            m.connections_refused.value());
  m.sessions.Set(static_cast<int64_t>(core_->sessions().session_count()));
  m.hash_jobs.Set(static_cast<int64_t>(hashes_.in_flight()));
}

void Server::ReadBatch() {
  for (int n = 0; n < options_.max_batch; ++n) {
    zmq::message_t id;
    zmq::message_t frame;
    try {
      if (!router_.recv(id, zmq::recv_flags::dontwait)) return;
      core_->metrics().frames_received.Add();
      if (!id.more()) continue;  // cannot happen with a ROUTER
      (void)router_.recv(frame);
      if (!frame.more()) {
        const int fd = zmq_msg_get(frame.handle(), ZMQ_SRCFD);
        // From a connection refused past the cap, before it was cut.
        if (admission_->Refused(fd)) continue;
        // Routing ids must be the ROUTER's own: a peer that chose its own
        // (ZMQ_ROUTING_ID, sent in its handshake as "Identity") could pick a
        // departed client's id and inherit its session. Such peers are
        // refused outright.
        const char* chosen = zmq_msg_gets(frame.handle(), "Identity");
        if (chosen && *chosen) {
          core_->OnTransportError(
              id.to_string_view(), ErrorCode::kInvalidArgument,
              "clients must not set a routing id (ZMQ_ROUTING_ID)");
          continue;
        }
        core_->OnFrame(id.to_string_view(), frame.to_string_view(), fd);
        continue;
      }
      // Several parts: drain the rest and refuse the whole message.
      size_t parts = 1;
      zmq::message_t extra;
      do {
        (void)router_.recv(extra);
        ++parts;
      } while (extra.more());
      core_->OnTransportError(
          id.to_string_view(), ErrorCode::kMalformed,
          "a message must be exactly one frame; got " + std::to_string(parts));
    } catch (const zmq::error_t& e) {
      Log(LogLevel::kError, std::string("recv: ") + e.what());
      return;
    }
  }
}

void Server::Flush(std::vector<OutFrame> frames) {
  for (OutFrame* next : GroupByConnection(frames)) {
    OutFrame& out = *next;
    try {
      zmq::message_t id(out.routing_id.data(), out.routing_id.size());
      zmq::message_t body(out.frame.data(), out.frame.size());
      if (!router_.send(id,
                        zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
        // The peer's queue is full: it is not reading.
        core_->metrics().sends_dropped.Add();
        continue;
      }
      // Counted before it goes, so that a client holding the frame always
      // finds it counted.
      core_->metrics().frames_sent.Add();
      (void)router_.send(body, zmq::send_flags::dontwait);
    } catch (const zmq::error_t& e) {
      if (e.num() == EHOSTUNREACH) {
        core_->OnPeerGone(out.routing_id);
      } else {
        Log(LogLevel::kWarn, std::string("send: ") + e.what());
      }
    }
  }
}

}  // namespace zchat
