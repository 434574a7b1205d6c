#include "bench/rabbitmq.h"

#include <poll.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#ifdef ZCHAT_BENCH_RABBITMQ
#include <amqp.h>
#include <amqp_tcp_socket.h>
#endif

namespace zchat::bench {
namespace {

namespace fs = std::filesystem;

// Debian's /usr/sbin/rabbitmq-server switches to the rabbitmq user and its
// system-wide store; the script it runs takes its settings from the
// environment, so the bench runs that one.
constexpr const char* kServerScript = "/usr/lib/rabbitmq/bin/rabbitmq-server";

std::string EpmdBinary() {
  return FindExecutable("epmd", {"/usr/lib/erlang/bin"});
}

// The Erlang port mapper a RabbitMQ node registers with. Left to itself the
// node starts one as a daemon on port 4369, which outlives the bench and
// which another run or the system's own RabbitMQ may hold: the bench runs
// its own, in the foreground, on a free port, once for the whole run
// (stopped at exit with the static). Its port, or 0 (with *why).
int EnsureEpmd(const std::string& dir, std::string* why) {
  static testing::ChildProcess epmd;
  static int port = 0;
  if (port != 0 && epmd.running()) return port;
  const std::string binary = EpmdBinary();
  if (binary.empty()) {
    *why = "RabbitMQ: no epmd executable";
    return 0;
  }
  for (int attempt = 0; attempt < 5; ++attempt) {
    port = FreeLoopbackPort();
    if (port == 0) continue;
    if (!epmd.Start(
            {binary, "-port", std::to_string(port), "-address", "127.0.0.1"},
            {.stderr_path = dir + "/epmd.log"})) {
      break;
    }
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < deadline &&
           !epmd.Wait(std::chrono::milliseconds(0))) {
      if (LoopbackAccepts(port)) return port;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    epmd.Stop();
  }
  port = 0;
  *why = "RabbitMQ: epmd did not start";
  return 0;
}

#ifdef ZCHAT_BENCH_RABBITMQ

using Clock = std::chrono::steady_clock;
constexpr uint16_t kChannel = 1;

// What a failed RPC's reply says.
std::string ReplyText(const amqp_rpc_reply_t& r) {
  switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return "";
    case AMQP_RESPONSE_NONE:
      return "no reply";
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      return amqp_error_string2(r.library_error);
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        const auto* m = static_cast<amqp_connection_close_t*>(r.reply.decoded);
        return "connection closed: " +
               std::string(static_cast<char*>(m->reply_text.bytes),
                           m->reply_text.len);
      }
      if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        const auto* m = static_cast<amqp_channel_close_t*>(r.reply.decoded);
        return "channel closed: " +
               std::string(static_cast<char*>(m->reply_text.bytes),
                           m->reply_text.len);
      }
      return "server exception";
  }
  return "unknown reply";
}

// One AMQP connection with one channel, through rabbitmq-c: the setup
// RPCs (blocking, with a deadline), publishing, acknowledging, and reading
// the frames that are there without waiting.
class AmqpConn {
 public:
  AmqpConn() : c_(amqp_new_connection()) {}
  AmqpConn(const AmqpConn&) = delete;
  AmqpConn& operator=(const AmqpConn&) = delete;
  ~AmqpConn() {
    if (open_) {
      amqp_channel_close(c_, kChannel, AMQP_REPLY_SUCCESS);
      amqp_connection_close(c_, AMQP_REPLY_SUCCESS);
    }
    amqp_destroy_connection(c_);
  }

  bool Open(int port, std::string* why) {
    amqp_socket_t* socket = amqp_tcp_socket_new(c_);
    if (socket == nullptr) return Fail(why, "no socket");
    timeval deadline{10, 0};
    const int rc =
        amqp_socket_open_noblock(socket, "127.0.0.1", port, &deadline);
    if (rc != AMQP_STATUS_OK) {
      return Fail(why, std::string("connect: ") + amqp_error_string2(rc));
    }
    amqp_set_rpc_timeout(c_, &deadline);
    // No heartbeats: the bench's connections are busy or short-lived.
    if (!Ok(amqp_login(c_, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest",
                       "guest"),
            "login", why)) {
      return false;
    }
    open_ = true;
    amqp_channel_open(c_, kChannel);
    return Ok(amqp_get_rpc_reply(c_), "channel.open", why);
  }

  // Publisher confirms on the channel: each publish is confirmed (basic.ack
  // with its delivery tag, 1, 2, ... in publish order) once stored.
  bool ConfirmSelect(std::string* why) {
    amqp_confirm_select(c_, kChannel);
    return Ok(amqp_get_rpc_reply(c_), "confirm.select", why);
  }

  // A durable queue of `type` ("quorum" or "classic").
  bool Declare(const std::string& queue, const std::string& type,
               std::string* why) {
    amqp_table_entry_t entry;
    entry.key = amqp_cstring_bytes("x-queue-type");
    entry.value.kind = AMQP_FIELD_KIND_UTF8;
    entry.value.value.bytes = amqp_cstring_bytes(type.c_str());
    const amqp_table_t arguments{1, &entry};
    amqp_queue_declare(c_, kChannel, amqp_cstring_bytes(queue.c_str()), 0, 1, 0,
                       0, arguments);
    return Ok(amqp_get_rpc_reply(c_), "queue.declare " + queue, why);
  }

  // Consumes `queue`, each delivery to be acknowledged, up to `prefetch`
  // unacknowledged.
  bool Consume(const std::string& queue, uint16_t prefetch, std::string* why) {
    amqp_basic_qos(c_, kChannel, 0, prefetch, 0);
    if (!Ok(amqp_get_rpc_reply(c_), "basic.qos", why)) return false;
    amqp_basic_consume(c_, kChannel, amqp_cstring_bytes(queue.c_str()),
                       amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
    return Ok(amqp_get_rpc_reply(c_), "basic.consume " + queue, why);
  }

  // A persistent message to `queue` through the default exchange.
  void Publish(const std::string& queue, std::string_view body) {
    amqp_basic_properties_t props{};
    props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG;
    props.delivery_mode = AMQP_DELIVERY_PERSISTENT;
    const amqp_bytes_t bytes{body.size(), const_cast<char*>(body.data())};
    const int rc = amqp_basic_publish(c_, kChannel, amqp_empty_bytes,
                                      amqp_cstring_bytes(queue.c_str()), 0, 0,
                                      &props, bytes);
    if (rc != AMQP_STATUS_OK && error_.empty()) {
      error_ = std::string("publish: ") + amqp_error_string2(rc);
    }
  }

  // Acknowledges delivery `tag` and, with `multiple`, every one before it.
  void Ack(uint64_t tag, bool multiple) {
    const int rc = amqp_basic_ack(c_, kChannel, tag, multiple ? 1 : 0);
    if (rc != AMQP_STATUS_OK && error_.empty()) {
      error_ = std::string("ack: ") + amqp_error_string2(rc);
    }
  }

  int fd() const { return amqp_get_sockfd(c_); }
  // Frames or bytes already read into the library's buffers.
  bool buffered() const {
    return amqp_frames_enqueued(c_) || amqp_data_in_buffer(c_);
  }
  const std::string& error() const { return error_; }

  // Hands each frame that is here to on(frame) (false: stop, error() set
  // by the caller through Failed), without waiting; false on a failure.
  template <class OnFrame>
  bool ReadReady(OnFrame&& on) {
    if (!error_.empty()) return false;
    for (;;) {
      amqp_frame_t frame;
      timeval zero{0, 0};
      const int rc = amqp_simple_wait_frame_noblock(c_, &frame, &zero);
      if (rc == AMQP_STATUS_TIMEOUT) break;
      if (rc != AMQP_STATUS_OK) {
        error_ = amqp_error_string2(rc);
        return false;
      }
      if (frame.frame_type == AMQP_FRAME_METHOD &&
          (frame.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD ||
           frame.payload.method.id == AMQP_CONNECTION_CLOSE_METHOD)) {
        amqp_rpc_reply_t r{};
        r.reply_type = AMQP_RESPONSE_SERVER_EXCEPTION;
        r.reply = frame.payload.method;
        error_ = ReplyText(r);
        return false;
      }
      if (!on(frame)) return false;
    }
    amqp_maybe_release_buffers(c_);
    return true;
  }

  void Failed(const std::string& why) {
    if (error_.empty()) error_ = why;
  }

 private:
  bool Fail(std::string* why, const std::string& what) {
    if (why) *why = "RabbitMQ: " + what;
    return false;
  }
  bool Ok(const amqp_rpc_reply_t& r, const std::string& what,
          std::string* why) {
    if (r.reply_type == AMQP_RESPONSE_NORMAL) return true;
    return Fail(why, what + ": " + ReplyText(r));
  }

  amqp_connection_state_t c_;
  bool open_ = false;
  std::string error_;
};

// The publisher confirms of one channel: what each delivery tag stands for
// until the broker confirms it (basic.ack, one tag or, with `multiple`,
// every tag up to it).
class Confirms {
 public:
  // The next publish stands for `what`.
  void Published(uint64_t what) { outstanding_[++published_] = what; }
  // A basic.ack or basic.nack frame: calls on(what) for each publish it
  // confirms; false if it was a nack or not a confirm at all.
  template <class OnConfirmed>
  bool Take(const amqp_frame_t& frame, OnConfirmed&& on) {
    if (frame.frame_type != AMQP_FRAME_METHOD ||
        frame.payload.method.id != AMQP_BASIC_ACK_METHOD) {
      return false;
    }
    const auto* ack =
        static_cast<amqp_basic_ack_t*>(frame.payload.method.decoded);
    if (!ack->multiple) {
      auto it = outstanding_.find(ack->delivery_tag);
      if (it == outstanding_.end()) return false;
      on(it->second);
      outstanding_.erase(it);
      return true;
    }
    auto it = outstanding_.begin();
    for (; it != outstanding_.end() && it->first <= ack->delivery_tag; ++it) {
      on(it->second);
    }
    outstanding_.erase(outstanding_.begin(), it);
    return true;
  }

 private:
  uint64_t published_ = 0;
  std::map<uint64_t, uint64_t> outstanding_;  // delivery tag -> what
};

// A consumer's deliveries as they come in frames (basic.deliver, its
// content header, then its body in one frame or more), and the last
// delivery tag read since the last acknowledgement.
class Deliveries {
 public:
  // Takes one frame; calls on(body) when a message is complete. False on a
  // frame a consumer does not expect.
  template <class OnMessage>
  bool Take(const amqp_frame_t& frame, OnMessage&& on) {
    switch (frame.frame_type) {
      case AMQP_FRAME_METHOD:
        if (frame.payload.method.id != AMQP_BASIC_DELIVER_METHOD) return false;
        tag_ = static_cast<amqp_basic_deliver_t*>(frame.payload.method.decoded)
                   ->delivery_tag;
        body_.clear();
        return true;
      case AMQP_FRAME_HEADER:
        size_ = frame.payload.properties.body_size;
        if (size_ == 0) Complete(on);
        return true;
      case AMQP_FRAME_BODY:
        body_.append(static_cast<char*>(frame.payload.body_fragment.bytes),
                     frame.payload.body_fragment.len);
        if (body_.size() >= size_) Complete(on);
        return true;
      default:
        return false;
    }
  }
  // The tag to acknowledge (with `multiple`) what was read, once: 0 if
  // nothing was read since.
  uint64_t TakeAck() { return std::exchange(unacked_, 0); }

 private:
  template <class OnMessage>
  void Complete(OnMessage&& on) {
    on(std::string_view(body_));
    unacked_ = tag_;
  }
  uint64_t tag_ = 0, unacked_ = 0;
  uint64_t size_ = 0;
  std::string body_;
};

// Polls `conns` once (up to timeout_ms, none if one has buffered frames)
// and hands each the frames that are there: on(k, frame) for conns[k]
// (false: a failure). "" or why a connection failed.
template <class OnFrame>
std::string PumpAmqp(const std::vector<AmqpConn*>& conns,
                     std::vector<pollfd>& fds, int timeout_ms, OnFrame&& on) {
  fds.resize(conns.size());
  bool buffered = false;
  for (size_t k = 0; k < conns.size(); ++k) {
    fds[k] = {conns[k]->fd(), POLLIN, 0};
    buffered = buffered || conns[k]->buffered();
  }
  if (poll(fds.data(), fds.size(), buffered ? 0 : timeout_ms) < 0 &&
      errno != EINTR) {
    return "poll failed";
  }
  for (size_t k = 0; k < conns.size(); ++k) {
    if ((fds[k].revents & (POLLIN | POLLERR | POLLHUP)) == 0 &&
        !conns[k]->buffered()) {
      continue;
    }
    if (!conns[k]->ReadReady(
            [&](const amqp_frame_t& frame) { return on(k, frame); })) {
      return conns[k]->error().empty() ? "an unexpected frame"
                                       : conns[k]->error();
    }
  }
  return "";
}

#endif  // ZCHAT_BENCH_RABBITMQ

}  // namespace

std::string RabbitMqUnavailable() {
#ifndef ZCHAT_BENCH_RABBITMQ
  return "built without librabbitmq (librabbitmq-dev)";
#else
  if (access(kServerScript, X_OK) != 0) {
    return std::string("no ") + kServerScript + " (rabbitmq-server)";
  }
  if (EpmdBinary().empty()) return "no epmd executable (erlang-base)";
  return "";
#endif
}

bool StartRabbitMq(testing::ChildProcess& child, const std::string& dir,
                   Target* target, std::string* why) {
  if (const std::string no = RabbitMqUnavailable(); !no.empty()) {
    *why = no;
    return false;
  }
  const int epmd_port = EnsureEpmd(dir, why);
  if (epmd_port == 0) return false;
  const std::string data = dir + "/rabbitmq";
  fs::remove_all(data);
  fs::create_directories(data);
  std::ofstream(data + "/enabled_plugins") << "[].\n";
  const std::string log = data + "/stdout.log";
  // Its settings through the environment (rabbitmq-env), its stdout (a
  // banner) to a file; RUNNING_UNDER_SYSTEMD makes the script exec the
  // Erlang VM, so the child's pid is the broker's (its CPU time is read
  // from it) and SIGTERM stops it cleanly. The distribution port is bound
  // to loopback only.
  auto argv_for = [&](int port) -> std::vector<std::string> {
    std::ofstream(data + "/rabbitmq.conf")
        << "listeners.tcp.1 = 127.0.0.1:" << port << "\n";
    const int dist = FreeLoopbackPort();
    return {"/bin/sh",
            "-c",
            "log=$1; shift; exec env \"$@\" >>\"$log\" 2>&1",
            "sh",
            log,
            "HOME=" + data,
            "RUNNING_UNDER_SYSTEMD=1",
            "RABBITMQ_NODENAME=zchat-bench@localhost",
            "ERL_EPMD_PORT=" + std::to_string(epmd_port),
            "RABBITMQ_DIST_PORT=" + std::to_string(dist),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel "
            "inet_dist_use_interface {127,0,0,1}",
            "RABBITMQ_CONFIG_FILE=" + data + "/rabbitmq",
            "RABBITMQ_ENABLED_PLUGINS_FILE=" + data + "/enabled_plugins",
            "RABBITMQ_MNESIA_BASE=" + data + "/mnesia",
            "RABBITMQ_LOG_BASE=" + data + "/log",
            kServerScript};
  };
  // The Erlang VM and the broker's boot take some seconds.
  return StartOnFreePort(child, "RabbitMQ", argv_for, log, {log}, target, why,
                         std::chrono::seconds(60));
}

#ifndef ZCHAT_BENCH_RABBITMQ

CycleFigures RunRabbitMqCycle(const Target&, int, int, double,
                              const std::string&, int, const std::string&) {
  return {.failure = RabbitMqUnavailable()};
}

QueueFigures RunRabbitMqOffline(const Target&, uint64_t, int,
                                const std::string&) {
  return {.failure = RabbitMqUnavailable()};
}

#else

// The cycle over RabbitMQ, mirroring RunCycle (and RunNatsCycle):
//   SEND_MESSAGE        -> basic.publish, persistent, to the recipient's queue
//   MESSAGE_PENDING     -> the publisher confirm (basic.ack): stored
//   DISTRIBUTE_MESSAGE  -> basic.deliver to the recipient's consumer
//   MESSAGE_RECEIPT     -> basic.ack from the recipient (multiple: what it
//                          read together); the queue drops the message
//   MESSAGE_SUCCESS     -> no equivalent (ReferenceWindow)
CycleFigures RunRabbitMqCycle(const Target& target, int pairs, int window,
                              double seconds, const std::string& tag,
                              int threads, const std::string& queue_type) {
  threads = std::clamp(threads, 1, pairs);
  std::vector<std::unique_ptr<AmqpConn> > senders, recipients;
  std::vector<Confirms> confirms(pairs);
  std::vector<Deliveries> deliveries(pairs);
  std::vector<std::string> queues;
  std::string why;
  for (int i = 0; i < pairs; ++i) {
    queues.push_back("zb." + tag + ".r" + std::to_string(i));
    senders.push_back(std::make_unique<AmqpConn>());
    recipients.push_back(std::make_unique<AmqpConn>());
    if (!senders[i]->Open(target.port, &why) ||
        !senders[i]->ConfirmSelect(&why) ||
        !recipients[i]->Open(target.port, &why) ||
        !recipients[i]->Declare(queues[i], queue_type, &why) ||
        !recipients[i]->Consume(queues[i], 65535, &why)) {
      return {.failure = why};
    }
  }

  auto drive = [&](const CycleClock& clock, CyclePart& part,
                   const std::vector<int>& mine, std::atomic<bool>& abort) {
    ReferenceWindow window_of(
        part, clock, pairs, [&](int i, const std::string& body, uint64_t seq) {
          senders[i]->Publish(queues[i], body);
          confirms[i].Published(seq);
        });
    std::vector<AmqpConn*> conns;  // 2k: pair mine[k]'s sender, 2k + 1 its
                                   // recipient
    for (int i : mine) {
      conns.push_back(senders[i].get());
      conns.push_back(recipients[i].get());
    }
    auto on_frame = [&](size_t k, const amqp_frame_t& frame) {
      const int i = mine[k / 2];
      if (k % 2 == 0) {
        return confirms[i].Take(frame,
                                [&](uint64_t seq) { window_of.Acked(i, seq); });
      }
      return deliveries[i].Take(
          frame, [&](std::string_view body) { window_of.Received(i, body); });
    };
    std::vector<pollfd> fds;
    window_of.Run(mine, window, abort, [&]() -> std::string {
      std::string lost = PumpAmqp(conns, fds, 100, on_frame);
      // What each recipient read, acknowledged together.
      for (int i : mine) {
        if (const uint64_t last = deliveries[i].TakeAck()) {
          recipients[i]->Ack(last, true);
        }
      }
      for (const AmqpConn* c : conns) {
        if (lost.empty() && !c->error().empty()) lost = c->error();
      }
      return lost.empty() ? "" : "a connection to RabbitMQ failed: " + lost;
    });
  };
  return RunPairsCycle(target, pairs, threads, seconds, drive);
}

QueueFigures RunRabbitMqOffline(const Target& target, uint64_t messages,
                                int recipients, const std::string& queue_type) {
  QueueFigures out;
  out.messages = messages;
  AmqpConn sender;
  std::string why;
  if (!sender.Open(target.port, &why) || !sender.ConfirmSelect(&why)) {
    return {.failure = why};
  }
  std::vector<std::string> queues;
  for (int i = 0; i < recipients; ++i) {
    queues.push_back("zq." + std::to_string(i));
    if (!sender.Declare(queues.back(), queue_type, &why)) {
      return {.failure = why};
    }
  }

  // Enqueue: as zchat's, a window of 2000 publishes awaiting their confirm,
  // round robin over the recipients' queues, 64-byte bodies.
  const std::string body(64, 'q');
  constexpr uint64_t kWindow = 2000;
  uint64_t sent = 0, confirmed = 0;
  Confirms confirms;
  const std::vector<AmqpConn*> ss{&sender};
  std::vector<pollfd> fds;
  const QueuePhase enqueueing(target.pid);
  auto last_progress = Clock::now();
  while (confirmed < messages) {
    while (sent < messages && sent - confirmed < kWindow) {
      sender.Publish(queues[sent % recipients], body);
      confirms.Published(sent);
      ++sent;
    }
    why = PumpAmqp(ss, fds, 100, [&](size_t, const amqp_frame_t& frame) {
      return confirms.Take(frame, [&](uint64_t) {
        ++confirmed;
        last_progress = Clock::now();
      });
    });
    if (why.empty()) why = sender.error();
    if (!why.empty()) return {.failure = "enqueueing: " + why};
    if (Clock::now() - last_progress > kStall) {
      return {.failure = Stalled("enqueueing", confirmed, messages)};
    }
  }
  out.enqueue_per_s = enqueueing.PerSecond(messages);
  out.enqueue_cpu_us = enqueueing.CpuEach(messages);

  // Drain: each recipient comes and consumes its queue (up to 1000
  // unacknowledged, as Mosquitto's in-flight window), acknowledging what it
  // read together.
  std::vector<std::unique_ptr<AmqpConn> > rs;
  std::vector<AmqpConn*> rp;
  std::vector<Deliveries> deliveries(recipients);
  const QueuePhase draining(target.pid);
  for (int i = 0; i < recipients; ++i) {
    rs.push_back(std::make_unique<AmqpConn>());
    if (!rs.back()->Open(target.port, &why) ||
        !rs.back()->Consume(queues[i], 1000, &why)) {
      return {.failure = why};
    }
    rp.push_back(rs.back().get());
  }
  uint64_t drained = 0;
  auto on_frame = [&](size_t k, const amqp_frame_t& frame) {
    return deliveries[k].Take(frame, [&](std::string_view) {
      ++drained;
      last_progress = Clock::now();
    });
  };
  auto pump = [&](int timeout_ms) {
    std::string lost = PumpAmqp(rp, fds, timeout_ms, on_frame);
    for (int i = 0; i < recipients; ++i) {
      if (const uint64_t last = deliveries[i].TakeAck()) rp[i]->Ack(last, true);
      if (lost.empty()) lost = rp[i]->error();
    }
    return lost;
  };
  last_progress = Clock::now();
  while (drained < messages) {
    why = pump(100);
    if (!why.empty()) return {.failure = "draining: " + why};
    if (Clock::now() - last_progress > kStall) {
      return {.failure = Stalled("draining", drained, messages)};
    }
  }
  out.drain_per_s = draining.PerSecond(drained);
  out.drain_cpu_us = draining.CpuEach(drained);
  // Anything beyond `messages` would be a duplicate: give it a moment.
  for (int i = 0; i < 3; ++i) pump(50);
  if (drained != messages) {
    out.failure = std::to_string(messages) + " messages queued, " +
                  std::to_string(drained) + " delivered";
  }
  return out;
}

#endif  // ZCHAT_BENCH_RABBITMQ

}  // namespace zchat::bench
