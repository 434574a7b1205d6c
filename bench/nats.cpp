#include "bench/nats.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

namespace zchat::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
constexpr auto kSetupWait = std::chrono::seconds(10);

std::string NatsBinary() {
  return FindExecutable("nats-server",
                        {"/usr/sbin", "/usr/bin", "/usr/local/bin"});
}

// One client connection, speaking the NATS protocol itself: a nonblocking
// TCP socket, what was read and not yet parsed, what waits to be written.
class NatsConn {
 public:
  struct Msg {
    std::string_view subject, reply, payload;
  };
  using OnMsg = std::function<void(const Msg&)>;

  NatsConn() = default;
  NatsConn(const NatsConn&) = delete;
  NatsConn& operator=(const NatsConn&) = delete;
  ~NatsConn() {
    if (fd_ >= 0) close(fd_);
  }

  // Connects, reads INFO, sends CONNECT and waits for the PONG of a PING.
  bool Open(int port, std::string* why) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd_ < 0) return Fail(why, "socket");
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    if (connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 &&
        errno != EINPROGRESS) {
      return Fail(why, "connect");
    }
    const int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    out_ +=
        "CONNECT {\"verbose\":false,\"pedantic\":false,\"echo\":false,"
        "\"lang\":\"c++\",\"version\":\"zchat-bench\",\"protocol\":1}\r\n";
    return Sync(why);
  }

  int fd() const { return fd_; }
  bool wants_write() const { return !out_.empty(); }
  const std::string& error() const { return error_; }

  void Sub(std::string_view subject, int sid) {
    out_.append("SUB ").append(subject).append(" ");
    out_.append(std::to_string(sid)).append("\r\n");
  }
  void Pub(std::string_view subject, std::string_view reply,
           std::string_view payload) {
    out_.append("PUB ").append(subject).append(" ");
    if (!reply.empty()) out_.append(reply).append(" ");
    out_.append(std::to_string(payload.size())).append("\r\n");
    out_.append(payload).append("\r\n");
  }

  // Writes what it can without blocking; false if the connection failed.
  bool Write() {
    while (!out_.empty()) {
      const ssize_t n = send(fd_, out_.data(), out_.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
        if (errno == EINTR) continue;
        error_ = "send failed";
        return false;
      }
      out_.erase(0, static_cast<size_t>(n));
    }
    return true;
  }

  // Reads what is there, answers PINGs and calls on_msg for each MSG; false
  // if the connection closed or the server sent -ERR (error() says).
  bool Read(const OnMsg& on_msg) {
    char buf[64 * 1024];
    for (;;) {
      const ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n > 0) {
        in_.append(buf, static_cast<size_t>(n));
        if (static_cast<size_t>(n) < sizeof buf) break;
        continue;
      }
      if (n == 0) {
        error_ = "the server closed the connection";
        return false;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      error_ = "recv failed";
      return false;
    }
    return Parse(on_msg);
  }

  // Sends PING after what waits and waits for its PONG, handing MSGs that
  // come meanwhile to on_msg.
  bool Sync(std::string* why, const OnMsg& on_msg = nullptr) {
    out_ += "PING\r\n";
    const uint64_t want = pongs_ + 1;
    const auto deadline = Clock::now() + kSetupWait;
    while (pongs_ < want) {
      if (!Write()) return Fail(why, error_);
      pollfd p{fd_, static_cast<short>(POLLIN | (out_.empty() ? 0 : POLLOUT)),
               0};
      if (Clock::now() > deadline) return Fail(why, "no PONG in time");
      if (poll(&p, 1, 100) < 0 && errno != EINTR) return Fail(why, "poll");
      if (!Read(on_msg ? on_msg : [](const Msg&) {})) {
        return Fail(why, error_);
      }
    }
    return true;
  }

  // A request on this connection's inbox; the reply's payload, or nullopt
  // (with *why) after kSetupWait.
  std::optional<std::string> Request(std::string_view subject,
                                     std::string_view payload,
                                     std::string* why) {
    if (!inbox_) {
      Sub("_R.*", kInboxSid);
      inbox_ = true;
    }
    const std::string reply = "_R." + std::to_string(++requests_);
    Pub(subject, reply, payload);
    std::optional<std::string> answer;
    const auto deadline = Clock::now() + kSetupWait;
    while (!answer) {
      if (!Write()) {
        Fail(why, error_);
        return std::nullopt;
      }
      if (Clock::now() > deadline) {
        Fail(why, "no answer to " + std::string(subject));
        return std::nullopt;
      }
      pollfd p{fd_, static_cast<short>(POLLIN | (out_.empty() ? 0 : POLLOUT)),
               0};
      poll(&p, 1, 100);
      if (!Read([&](const Msg& m) {
            if (m.subject == reply) answer.emplace(m.payload);
          })) {
        Fail(why, error_);
        return std::nullopt;
      }
    }
    return answer;
  }

 private:
  static constexpr int kInboxSid = 999999;

  bool Fail(std::string* why, const std::string& what) {
    if (why) *why = "NATS: " + what;
    return false;
  }

  bool Parse(const OnMsg& on_msg) {
    for (;;) {
      const size_t eol = in_.find("\r\n", pos_);
      if (eol == std::string::npos) break;
      std::string_view line(in_.data() + pos_, eol - pos_);
      if (line.starts_with("MSG ")) {
        // MSG <subject> <sid> [reply-to] <#bytes>
        std::string_view parts[5];
        size_t n = 0;
        for (size_t at = 4; at < line.size() && n < 5;) {
          const size_t end = std::min(line.find(' ', at), line.size());
          if (end > at) parts[n++] = line.substr(at, end - at);
          at = end + 1;
        }
        if (n < 3) {
          error_ = "a MSG line without its size";
          return false;
        }
        const size_t size = std::strtoull(parts[n - 1].data(), nullptr, 10);
        if (in_.size() < eol + 2 + size + 2) break;  // payload not all here
        Msg m{parts[0], n == 4 ? parts[2] : std::string_view(),
              std::string_view(in_.data() + eol + 2, size)};
        if (on_msg) on_msg(m);
        pos_ = eol + 2 + size + 2;
        continue;
      }
      if (line == "PING") {
        out_ += "PONG\r\n";
      } else if (line == "PONG") {
        ++pongs_;
      } else if (line.starts_with("-ERR")) {
        error_ = std::string(line);
        return false;
      }  // INFO, +OK: nothing to do
      pos_ = eol + 2;
    }
    if (pos_ > 0 && (pos_ == in_.size() || pos_ > 64 * 1024)) {
      in_.erase(0, pos_);
      pos_ = 0;
    }
    return true;
  }

  int fd_ = -1;
  std::string in_, out_;
  size_t pos_ = 0;  // in_ before it is parsed
  uint64_t pongs_ = 0, requests_ = 0;
  bool inbox_ = false;
  std::string error_;
};

// A JetStream API request; "" if it succeeded, else why not.
std::string JsApi(NatsConn& control, const std::string& subject,
                  const std::string& json) {
  std::string why;
  std::optional<std::string> answer = control.Request(subject, json, &why);
  if (!answer) return why;
  if (answer->find("\"error\"") != std::string::npos) {
    return "NATS: " + subject + ": " + answer->substr(0, 300);
  }
  return "";
}

// A stream on file storage that keeps each message until its consumer
// acknowledges it.
std::string CreateStream(NatsConn& control, const std::string& name,
                         const std::string& subjects) {
  return JsApi(control, "$JS.API.STREAM.CREATE." + name,
               "{\"name\":\"" + name + "\",\"subjects\":[\"" + subjects +
                   "\"],\"storage\":\"file\",\"retention\":\"workqueue\"}");
}

// A durable push consumer of `filter`, delivering to `deliver`, each
// message to be acknowledged, up to `max_pending` unacknowledged.
std::string CreateConsumer(NatsConn& control, const std::string& stream,
                           const std::string& name, const std::string& filter,
                           const std::string& deliver, int max_pending) {
  return JsApi(
      control, "$JS.API.CONSUMER.DURABLE.CREATE." + stream + "." + name,
      "{\"stream_name\":\"" + stream + "\",\"config\":{\"durable_name\":\"" +
          name + "\",\"deliver_subject\":\"" + deliver +
          "\",\"filter_subject\":\"" + filter +
          "\",\"ack_policy\":\"explicit\",\"deliver_policy\":\"all\","
          "\"max_ack_pending\":" +
          std::to_string(max_pending) + "}}");
}

// Polls `conns` once (up to timeout_ms), reads and writes what is ready;
// "" or why a connection failed.
std::string PumpOnce(
    std::vector<NatsConn*>& conns, std::vector<pollfd>& fds, int timeout_ms,
    const std::function<void(size_t, const NatsConn::Msg&)>& on) {
  fds.resize(conns.size());
  for (size_t k = 0; k < conns.size(); ++k) {
    fds[k] = {
        conns[k]->fd(),
        static_cast<short>(POLLIN | (conns[k]->wants_write() ? POLLOUT : 0)),
        0};
  }
  if (poll(fds.data(), fds.size(), timeout_ms) < 0 && errno != EINTR) {
    return "poll failed";
  }
  for (size_t k = 0; k < conns.size(); ++k) {
    if (fds[k].revents & (POLLIN | POLLERR | POLLHUP)) {
      if (!conns[k]->Read([&](const NatsConn::Msg& m) { on(k, m); })) {
        return conns[k]->error();
      }
    }
  }
  for (NatsConn* c : conns) {
    if (c->wants_write() && !c->Write()) return c->error();
  }
  return "";
}

uint64_t SeqAfterLastDot(std::string_view subject) {
  const size_t dot = subject.rfind('.');
  return std::strtoull(subject.data() + dot + 1, nullptr, 10);
}

}  // namespace

std::string NatsUnavailable() {
  if (NatsBinary().empty()) return "no nats-server executable on PATH";
  return "";
}

bool StartNats(testing::ChildProcess& child, const std::string& dir,
               Target* target, std::string* why) {
  const std::string binary = NatsBinary();
  if (binary.empty()) {
    *why = NatsUnavailable();
    return false;
  }
  const std::string data = dir + "/nats";
  fs::remove_all(data);
  fs::create_directories(data);
  // JetStream's file store (its default sync: every 2 minutes, not a write
  // per message). No HTTP monitor, no cluster.
  auto argv_for = [&](int port) -> std::vector<std::string> {
    return {binary, "-a",  "127.0.0.1", "-p", std::to_string(port),
            "-js",  "-sd", data,        "-l", data + "/nats.log"};
  };
  return StartOnFreePort(child, "NATS", argv_for, data + "/stderr.log",
                         {data + "/nats.log", data + "/stderr.log"}, target,
                         why);
}

// The cycle over JetStream, mirroring RunCycle (and RunMqttCycle):
//   SEND_MESSAGE        -> PUB to the recipient's subject, with a reply
//                          subject for JetStream's acknowledgement
//   MESSAGE_PENDING     -> that acknowledgement ({"stream", "seq"}: stored)
//   DISTRIBUTE_MESSAGE  -> the recipient's durable push consumer delivers it
//   MESSAGE_RECEIPT     -> the recipient acknowledges it (an empty PUB to the
//                          message's reply subject); the work queue drops it
//   MESSAGE_SUCCESS     -> no equivalent (ReferenceWindow)
CycleFigures RunNatsCycle(const Target& target, int pairs, int window,
                          double seconds, const std::string& tag, int threads) {
  CycleFigures out;
  threads = std::clamp(threads, 1, pairs);
  NatsConn control;
  std::string why;
  if (!control.Open(target.port, &why)) return {.failure = why};
  why = CreateStream(control, "ZB" + tag, "zb" + tag + ".>");
  if (!why.empty()) return {.failure = why};
  std::vector<std::unique_ptr<NatsConn>> senders, recipients;
  auto name = [&](int i) { return tag + "r" + std::to_string(i); };
  auto subject = [&](int i) { return "zb" + tag + "." + name(i); };
  for (int i = 0; i < pairs && why.empty(); ++i) {
    senders.push_back(std::make_unique<NatsConn>());
    recipients.push_back(std::make_unique<NatsConn>());
    if (!senders[i]->Open(target.port, &why) ||
        !recipients[i]->Open(target.port, &why)) {
      break;
    }
    senders[i]->Sub("_A." + tag + "s" + std::to_string(i) + ".*", 1);
    recipients[i]->Sub("dlv." + name(i), 1);
    if (!senders[i]->Sync(&why) || !recipients[i]->Sync(&why)) break;
    why = CreateConsumer(control, "ZB" + tag, name(i), subject(i),
                         "dlv." + name(i), 1 << 20);
  }
  if (!why.empty()) return {.failure = why};

  auto drive = [&](const CycleClock& clock, CyclePart& part,
                   const std::vector<int>& mine, std::atomic<bool>& abort) {
    ReferenceWindow window_of(
        part, clock, pairs, [&](int i, const std::string& body, uint64_t seq) {
          senders[i]->Pub(
              subject(i),
              "_A." + tag + "s" + std::to_string(i) + "." + std::to_string(seq),
              body);
        });
    std::vector<NatsConn*>
        conns;  // 2k: pair mine[k]'s sender, 2k + 1 recipient
    for (int i : mine) {
      conns.push_back(senders[i].get());
      conns.push_back(recipients[i].get());
    }
    auto on_msg = [&](size_t k, const NatsConn::Msg& m) {
      const int i = mine[k / 2];
      if (k % 2 == 0) {  // the stream's acknowledgement of a publish
        if (m.payload.find("\"error\"") != std::string_view::npos) {
          if (part.failure.empty()) {
            part.failure = "JetStream refused: " + std::string(m.payload);
          }
          return;
        }
        window_of.Acked(i, SeqAfterLastDot(m.subject));
        return;
      }
      recipients[i]->Pub(m.reply, "", "");  // the acknowledgement
      window_of.Received(i, m.payload);
    };
    std::vector<pollfd> fds;
    window_of.Run(mine, window, abort, [&]() -> std::string {
      const std::string lost = PumpOnce(conns, fds, 100, on_msg);
      return lost.empty() ? "" : "a connection to NATS failed: " + lost;
    });
  };
  return RunPairsCycle(target, pairs, threads, seconds, drive);
}

QueueFigures RunNatsOffline(const Target& target, uint64_t messages,
                            int recipients) {
  QueueFigures out;
  out.messages = messages;
  NatsConn control, sender;
  std::string why;
  if (!control.Open(target.port, &why) || !sender.Open(target.port, &why)) {
    return {.failure = why};
  }
  why = CreateStream(control, "ZQ", "zq.>");
  if (!why.empty()) return {.failure = why};
  sender.Sub("_A.q.*", 1);
  if (!sender.Sync(&why)) return {.failure = why};

  // Enqueue: as zchat's, a window of 2000 publishes awaiting their
  // acknowledgement, round robin over the recipients, 64-byte bodies.
  const std::string body(64, 'q');
  constexpr uint64_t kWindow = 2000;
  uint64_t sent = 0, acked = 0;
  std::vector<NatsConn*> ss{&sender};
  std::vector<pollfd> fds;
  const QueuePhase enqueueing(target.pid);
  auto last_progress = Clock::now();
  while (acked < messages) {
    while (sent < messages && sent - acked < kWindow) {
      sender.Pub("zq." + std::to_string(sent % recipients),
                 "_A.q." + std::to_string(sent), body);
      ++sent;
    }
    std::string failure;
    why = PumpOnce(ss, fds, 100, [&](size_t, const NatsConn::Msg& m) {
      if (m.payload.find("\"error\"") != std::string_view::npos) {
        failure = "a bad acknowledgement: " + std::string(m.payload);
      }
      ++acked;
      last_progress = Clock::now();
    });
    if (!why.empty() || !failure.empty()) {
      return {.failure = why.empty() ? failure : why};
    }
    if (Clock::now() - last_progress > kStall) {
      return {.failure = Stalled("enqueueing", acked, messages)};
    }
  }
  out.enqueue_per_s = enqueueing.PerSecond(messages);
  out.enqueue_cpu_us = enqueueing.CpuEach(messages);

  // Drain: each recipient comes, with a durable consumer of its subject
  // (up to 1000 unacknowledged, as Mosquitto's in-flight window), and
  // acknowledges each message.
  std::vector<std::unique_ptr<NatsConn>> rs;
  std::vector<NatsConn*> rp;
  for (int i = 0; i < recipients; ++i) {
    rs.push_back(std::make_unique<NatsConn>());
    if (!rs.back()->Open(target.port, &why)) return {.failure = why};
    rs.back()->Sub("dq." + std::to_string(i), 1);
    if (!rs.back()->Sync(&why)) return {.failure = why};
    rp.push_back(rs.back().get());
  }
  uint64_t drained = 0;
  auto on_msg = [&](size_t k, const NatsConn::Msg& m) {
    rp[k]->Pub(m.reply, "", "");
    ++drained;
    last_progress = Clock::now();
  };
  const QueuePhase draining(target.pid);
  for (int i = 0; i < recipients; ++i) {
    why = CreateConsumer(control, "ZQ", "q" + std::to_string(i),
                         "zq." + std::to_string(i), "dq." + std::to_string(i),
                         1000);
    if (!why.empty()) return {.failure = why};
  }
  last_progress = Clock::now();
  while (drained < messages) {
    why = PumpOnce(rp, fds, 100, on_msg);
    if (!why.empty()) return {.failure = why};
    if (Clock::now() - last_progress > kStall) {
      return {.failure = Stalled("draining", drained, messages)};
    }
  }
  out.drain_per_s = draining.PerSecond(drained);
  out.drain_cpu_us = draining.CpuEach(drained);
  // Anything beyond `messages` would be a duplicate: give it a moment.
  for (int i = 0; i < 3; ++i) PumpOnce(rp, fds, 50, on_msg);
  if (drained != messages) {
    out.failure = std::to_string(messages) + " messages queued, " +
                  std::to_string(drained) + " delivered";
  }
  return out;
}

}  // namespace zchat::bench
