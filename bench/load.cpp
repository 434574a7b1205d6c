#include "bench/load.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sodium.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <memory>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <zmq.hpp>

#include "broker/broker_core.h"
#include "broker/store.h"
#include "broker/unique_fd.h"
#include "messages/codec.h"
#include "tests/support/child_process.h"
#include "tests/support/fd_limit.h"
#include "tests/support/raw_client.h"

namespace zchat::bench {
namespace {

using Clock = std::chrono::steady_clock;
using testing::CpuTime;
constexpr const char* kPassword = "benchpass1";

// CPU time of the target process, in microseconds.
int64_t CpuMicros(pid_t pid) { return CpuTime(pid).count(); }
std::map<std::string, int64_t> ThreadMicros(const std::vector<pid_t>& pids) {
  std::map<std::string, int64_t> out;
  for (pid_t p : pids) {
    for (const auto& [name, us] : testing::ThreadCpuTimes(p)) {
      out[name] += us.count();
    }
  }
  return out;
}
int64_t CpuMicros(const std::vector<pid_t>& pids) {
  int64_t total = 0;
  for (pid_t p : pids) total += CpuMicros(p);
  return total;
}
std::vector<pid_t> AllPids(const Target& t) {
  return t.pids.empty() ? std::vector<pid_t>{t.pid} : t.pids;
}

// One raw DEALER connection, with room for a deep window of messages.
using Conn = testing::RawClient;
std::unique_ptr<Conn> NewConn(zmq::context_t& ctx,
                              const std::string& endpoint) {
  return std::make_unique<Conn>(
      ctx, endpoint,
      testing::RawClientOptions{.sndhwm = 100'000, .rcvhwm = 100'000});
}

// A reply that says something went wrong, for the failure message.
std::string Describe(const Message& m) {
  std::string out(MessageTypeName(TypeOf(m.body)));
  if (auto* e = std::get_if<Error>(&m.body)) out += ": " + e->reason;
  if (auto* f = std::get_if<MessageFailure>(&m.body)) out += ": " + f->reason;
  if (auto* f = std::get_if<CreateFailure>(&m.body)) out += ": " + f->reason;
  if (auto* f = std::get_if<LoginFailure>(&m.body)) out += ": " + f->reason;
  return out;
}

// Which of many sockets to read, found with epoll on their ZMQ_FDs, so that
// a wait is one system call whatever their number, and a round reads only
// the sockets that may hold something. (zmq_poll asks every socket in turn,
// and one with nothing pending answers with two system calls of its own:
// with 50 sockets a load thread spent most of its time asking; so does
// reading every socket until EAGAIN.) A socket's ZMQ_FD only tells that
// commands came for it, so a socket handed out must be read until EAGAIN,
// and one written to must be asked (ZMQ_EVENTS) whether input came
// meanwhile: the write may have taken in the command that said so.
class ReadySockets {
 public:
  // Every socket is handed out in the first round.
  explicit ReadySockets(std::vector<zmq::socket_t*> sockets)
      : sockets_(std::move(sockets)),
        epoll_(epoll_create1(EPOLL_CLOEXEC)),
        marked_(sockets_.size(), 0) {
    for (uint32_t i = 0; i < sockets_.size(); ++i) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u32 = i;
      if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD,
                    sockets_[i]->get(zmq::sockopt::fd), &ev) != 0) {
        std::perror("bench: epoll_ctl");
        std::exit(1);
      }
      Mark(i);
    }
  }

  // The sockets (indexes) to read now: those marked, or else those whose
  // descriptor turns readable within `timeout_ms`, or else (a quiet spell:
  // cheap insurance against a missed notification) all of them.
  const std::vector<uint32_t>& Next(int timeout_ms) {
    now_.clear();
    now_.swap(next_);
    if (now_.empty()) {
      epoll_event events[64];
      const int n = epoll_wait(epoll_.get(), events, 64, timeout_ms);
      for (int k = 0; k < n; ++k) now_.push_back(events[k].data.u32);
      if (n == 0) {
        for (uint32_t i = 0; i < sockets_.size(); ++i) now_.push_back(i);
      }
    }
    for (uint32_t i : now_) marked_[i] = 0;
    return now_;
  }

  // Hands socket i out in the next round.
  void Mark(uint32_t i) {
    if (!marked_[i]) {
      marked_[i] = 1;
      next_.push_back(i);
    }
  }

  // After writing to socket i: marks it if input is waiting.
  void CheckAfterWrite(uint32_t i) {
    if (sockets_[i]->get(zmq::sockopt::events) & ZMQ_POLLIN) Mark(i);
  }

 private:
  std::vector<zmq::socket_t*> sockets_;
  UniqueFd epoll_;
  std::vector<char> marked_;
  std::vector<uint32_t> next_, now_;
};

void Poll(std::vector<zmq::pollitem_t>& items, int timeout_ms) {
  try {
    zmq::poll(items.data(), items.size(),
              std::chrono::milliseconds(timeout_ms));
  } catch (const zmq::error_t&) {
  }
}

// Sends receipts of type R (MESSAGE_RECEIPT, NOTICE_RECEIPT) for `ids`
// (then cleared) as `target` wants: one request for all of them, or one
// each.
template <class R>
void SendReceipts(const Target& target, Conn& conn,
                  std::vector<uint64_t>& ids) {
  if (ids.empty()) return;
  if (target.batch_acks) {
    for (size_t from = 0; from < ids.size(); from += kMaxReceiptIds) {
      R receipt;
      receipt.message_ids.assign(
          ids.begin() + from,
          ids.begin() + std::min(ids.size(), from + kMaxReceiptIds));
      conn.Send(std::move(receipt));
    }
  } else {
    for (uint64_t id : ids) conn.Send(R{id});
  }
  ids.clear();
}

std::vector<zmq::pollitem_t> Items(std::vector<std::unique_ptr<Conn>>& conns) {
  std::vector<zmq::pollitem_t> items;
  for (auto& c : conns) {
    items.push_back({c->socket().handle(), 0, ZMQ_POLLIN, 0});
  }
  return items;
}

// Sends make(i) on conns[i] for every i and waits for every reply. Returns
// the replies (by connection) or an empty vector on timeout.
std::vector<Message> RequestAll(std::vector<std::unique_ptr<Conn>>& conns,
                                const std::function<Body(size_t)>& make,
                                double timeout_s = 120) {
  std::vector<uint64_t> want(conns.size());
  std::vector<std::optional<Message>> got(conns.size());
  for (size_t i = 0; i < conns.size(); ++i) want[i] = conns[i]->Send(make(i));
  size_t done = 0;
  auto items = Items(conns);
  const auto deadline =
      Clock::now() +
      std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  while (done < conns.size() && Clock::now() < deadline) {
    Poll(items, 100);
    for (size_t i = 0; i < conns.size(); ++i) {
      conns[i]->Drain([&](Message& m) {
        if (m.request_id == want[i] && !got[i]) {
          got[i] = std::move(m);
          ++done;
        }
      });
    }
  }
  if (done < conns.size()) return {};
  std::vector<Message> out;
  for (auto& g : got) out.push_back(std::move(*g));
  return out;
}

template <class T>
bool AllAre(const std::vector<Message>& replies) {
  if (replies.empty()) return false;
  for (const auto& r : replies) {
    if (!std::holds_alternative<T>(r.body)) {
      std::cerr << "bench: expected " << MessageTypeName(T::kType) << ", got "
                << Describe(r) << "\n";
      return false;
    }
  }
  return true;
}

// Sends make(i) on every connection, at most 32 at a time (the broker's
// password-hashing queue refuses more than it holds), and checks that every
// reply is a T.
bool IsBusy(const Message& m) {
  if (auto* f = std::get_if<CreateFailure>(&m.body))
    return f->code == ErrorCode::kBusy;
  if (auto* f = std::get_if<LoginFailure>(&m.body))
    return f->code == ErrorCode::kBusy;
  return false;
}

// Sends make(i) on every connection, at most 32 at a time, and checks that
// every reply is a T. Requests refused as busy (the broker's password-hashing
// queue is full: other processes load it too) are sent again.
template <class T>
bool InChunks(std::vector<std::unique_ptr<Conn>>& conns,
              const std::function<Body(size_t)>& make,
              std::vector<Message>* replies = nullptr) {
  constexpr size_t kChunk = 32;
  for (size_t from = 0; from < conns.size(); from += kChunk) {
    const size_t to = std::min(conns.size(), from + kChunk);
    std::vector<std::optional<Message>> got(to - from);
    for (int attempt = 0; attempt < 100; ++attempt) {
      std::vector<size_t> todo;
      for (size_t i = from; i < to; ++i) {
        if (!got[i - from] || IsBusy(*got[i - from])) todo.push_back(i);
      }
      if (todo.empty()) break;
      std::vector<std::unique_ptr<Conn>> part;
      for (size_t i : todo) part.push_back(std::move(conns[i]));
      std::vector<Message> answers =
          RequestAll(part, [&](size_t k) { return make(todo[k]); });
      for (size_t k = 0; k < todo.size(); ++k) {
        conns[todo[k]] = std::move(part[k]);
        if (!answers.empty()) got[todo[k] - from] = std::move(answers[k]);
      }
      if (answers.empty()) return false;  // timed out
    }
    std::vector<Message> chunk;
    for (auto& g : got) {
      if (!g) return false;
      chunk.push_back(std::move(*g));
    }
    if (!AllAre<T>(chunk)) return false;
    if (replies) replies->insert(replies->end(), chunk.begin(), chunk.end());
  }
  return true;
}

// Creates and logs in `names`, one connection each; the LOGIN_SUCCESS
// replies go to *logins if given.
bool Enter(std::vector<std::unique_ptr<Conn>>& conns,
           const std::vector<std::string>& names,
           std::vector<Message>* logins = nullptr, bool batch_pushes = false) {
  return InChunks<CreateSuccess>(
             conns,
             [&](size_t i) {
               return Body(CreateAccount{names[i], kPassword});
             }) &&
         InChunks<LoginSuccess>(
             conns,
             [&](size_t i) {
               return Body(LoginRequest{names[i], kPassword, std::nullopt,
                                        batch_pushes});
             },
             logins);
}

int64_t FileSize(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 ? st.st_size : 0;
}

// The database's files with their WALs: `<db>` and, with --partitions,
// `<db>.p1` ... beside it.
int64_t DatabaseSize(const std::string& db_path) {
  int64_t bytes = FileSize(db_path) + FileSize(db_path + "-wal");
  for (int p = 1;; ++p) {
    const std::string part = db_path + ".p" + std::to_string(p);
    const int64_t size = FileSize(part);  // 0: no such partition
    if (size == 0) break;
    bytes += size + FileSize(part + "-wal");
  }
  return bytes;
}

}  // namespace

int FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  close(fd);
  return port;
}

bool LoopbackAccepts(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

std::string FindExecutable(const std::string& name,
                           const std::vector<std::string>& also) {
  std::vector<std::string> dirs;
  if (const char* path = std::getenv("PATH")) {
    std::string p = path;
    for (size_t from = 0; from <= p.size();) {
      size_t to = p.find(':', from);
      if (to == std::string::npos) to = p.size();
      dirs.push_back(p.substr(from, to - from));
      from = to + 1;
    }
  }
  dirs.insert(dirs.end(), also.begin(), also.end());
  for (const std::string& d : dirs) {
    const std::string f = d + "/" + name;
    if (!d.empty() && access(f.c_str(), X_OK) == 0) return f;
  }
  return "";
}

bool StartOnFreePort(
    testing::ChildProcess& child, const std::string& name,
    const std::function<std::vector<std::string>(int port)>& argv_for,
    const std::string& stderr_path, const std::vector<std::string>& logs,
    Target* target, std::string* why, std::chrono::seconds wait) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    const int port = FreeLoopbackPort();
    if (port == 0) continue;
    const std::vector<std::string> argv = argv_for(port);
    if (!child.Start(argv, {.stderr_path = stderr_path})) {
      *why = "could not run " + argv[0];
      return false;
    }
    const auto deadline = std::chrono::steady_clock::now() + wait;
    while (std::chrono::steady_clock::now() < deadline) {
      if (child.Wait(std::chrono::milliseconds(0))) break;  // exited
      if (LoopbackAccepts(port)) {
        target->name = name;
        target->pid = child.pid();
        target->port = port;
        target->endpoint = "127.0.0.1:" + std::to_string(port);
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    child.Stop();  // exited (port taken meanwhile?) or never listened
  }
  // The temporary directory goes at the end: quote the logs here.
  std::string log;
  for (const std::string& f : logs) {
    std::ifstream in(f);
    log.append(std::istreambuf_iterator<char>(in), {});
  }
  if (log.size() > 400) log = log.substr(log.size() - 400);
  *why = name + " did not start: " + (log.empty() ? "no log" : log);
  return false;
}

QueuePhase::QueuePhase(pid_t pid)
    : pid_(pid), cpu0_us_(CpuMicros(pid)), t0_(Clock::now()) {}

double QueuePhase::PerSecond(uint64_t n) const {
  return n / std::chrono::duration<double>(Clock::now() - t0_).count();
}

double QueuePhase::CpuEach(uint64_t n) const {
  return n ? static_cast<double>(CpuMicros(pid_) - cpu0_us_) / n : 0;
}

std::string Stalled(const std::string& phase, uint64_t done, uint64_t total) {
  return phase + " stalled at " + std::to_string(done) + " of " +
         std::to_string(total);
}

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             Clock::now().time_since_epoch())
      .count();
}

Latency Percentiles(std::vector<int64_t>& ns) {
  Latency l;
  l.samples = ns.size();
  if (ns.empty()) return l;
  std::sort(ns.begin(), ns.end());
  auto at = [&](double q) {
    size_t i = std::min(ns.size() - 1, static_cast<size_t>(q * ns.size()));
    return ns[i] / 1000.0;
  };
  l.p50_us = at(0.50);
  l.p99_us = at(0.99);
  l.p999_us = at(0.999);
  return l;
}

CycleFigures RunCycle(const Target& target, int pairs, int window,
                      double seconds, const std::string& tag, int threads) {
  CycleFigures out;
  threads = std::clamp(threads, 1, pairs);
  // One I/O thread per load thread: a single one would serialize them.
  zmq::context_t ctx(threads);
  ctx.set(zmq::ctxopt::max_sockets, 4 * pairs + 16);
  std::vector<std::unique_ptr<Conn>> conns;
  std::vector<std::string> names;
  for (int i = 0; i < pairs; ++i)
    names.push_back(tag + "s" + std::to_string(i));
  for (int i = 0; i < pairs; ++i)
    names.push_back(tag + "r" + std::to_string(i));
  // With several brokers, sender i on broker i and its recipient on the
  // next one: every message crosses brokers.
  const size_t brokers = std::max<size_t>(1, target.endpoints.size());
  for (size_t i = 0; i < names.size(); ++i) {
    const size_t pair = i % static_cast<size_t>(pairs);
    const size_t b =
        (pair + (i >= static_cast<size_t>(pairs) ? 1 : 0)) % brokers;
    conns.push_back(NewConn(
        ctx, target.endpoints.empty() ? target.endpoint : target.endpoints[b]));
  }
  if (!Enter(conns, names, nullptr, target.batch_pushes)) {
    out.failure =
        "could not log in " + std::to_string(names.size()) + " clients";
    return out;
  }

  // Load thread t drives pairs t, t + threads, ... (a sender's and its
  // recipient's socket both): the sockets are handed over when the thread
  // starts and used by it alone.
  auto drive = [&](const CycleClock& clock, CyclePart& part,
                   const std::vector<int>& mine, std::atomic<bool>& abort) {
    struct Sender {
      uint64_t next_cmid = 1;
      int in_flight = 0;
      std::unordered_map<uint64_t, int64_t> sent_at;  // client_msg_id -> ns
      // With window_until_delivered: what came of the messages still in
      // the window, by message id: the client_msg_id of those whose
      // MESSAGE_PENDING came first, the ids of those delivered first.
      std::unordered_map<uint64_t, uint64_t> pending;
      std::unordered_set<uint64_t> delivered;
    };
    std::vector<Sender> senders(pairs);  // indexed by pair, only mine used
    const std::string padding(48, '.');
    uint64_t in_flight = 0;
    bool sending = true;

    SendMessage outgoing;  // with batch_sends: what send_one gathered
    auto send_one = [&](int i) {
      Sender& s = senders[i];
      const uint64_t cmid = s.next_cmid++;
      const int64_t now = NowNs();
      s.sent_at[cmid] = now;
      ++s.in_flight;
      ++in_flight;
      ++part.sent;
      std::string body = std::to_string(now) + " " + padding;
      if (!target.batch_sends) {
        conns[i]->Send(SendMessage{names[pairs + i], std::move(body), cmid});
        return;
      }
      outgoing.bodies.push_back(std::move(body));
      outgoing.client_msg_ids.push_back(cmid);
    };
    // Sends what send_one gathered for pair i's sender.
    auto flush_sends = [&](int i) {
      if (outgoing.bodies.empty()) return;
      outgoing.recipient = names[pairs + i];
      if (outgoing.bodies.size() == 1) {
        conns[i]->Send(SendMessage{outgoing.recipient,
                                   std::move(outgoing.bodies[0]),
                                   outgoing.client_msg_ids[0]});
      } else {
        conns[i]->Send(outgoing);
      }
      outgoing.bodies.clear();
      outgoing.client_msg_ids.clear();
    };
    auto last_progress = Clock::now();
    for (int i : mine) {
      for (int w = 0; w < window; ++w) send_one(i);
      flush_sends(i);
    }
    // With window_until_delivered, a message leaves pair i's window once its
    // MESSAGE_PENDING and its DISTRIBUTE_MESSAGE have both come: counted,
    // timed, and replaced while measuring. (Else at its MESSAGE_SUCCESS,
    // below.)
    auto leaves_window = [&](int i, uint64_t client_msg_id) {
      Sender& s = senders[i];
      auto it = s.sent_at.find(client_msg_id);
      if (it == s.sent_at.end()) return;  // reported where it came
      if (clock.Measuring(Clock::now())) {
        part.confirmed.push_back(NowNs() - it->second);
        ++part.completed;
      }
      last_progress = Clock::now();
      if (sending) send_one(i);
    };
    // Socket 2k is pair mine[k]'s sender, 2k + 1 its recipient.
    std::vector<zmq::socket_t*> sockets;
    for (int i : mine) {
      sockets.push_back(&conns[i]->socket());
      sockets.push_back(&conns[pairs + i]->socket());
    }
    ReadySockets ready(std::move(sockets));
    // After measuring, the messages still in flight must complete too: the
    // cycle stops sending and waits for them (a lost one is a failure).
    std::vector<uint64_t> acks;      // a sender's notices read together
    std::vector<uint64_t> confirms;  // a recipient's messages read together
    while (sending || in_flight > 0) {
      if (abort) return;
      const std::vector<uint32_t>& now_ready = ready.Next(100);
      const auto now = Clock::now();
      if (now - last_progress > kStall) {
        part.failure = std::to_string(in_flight) + " of " +
                       std::to_string(part.sent) +
                       " messages stalled in flight " +
                       (sending ? "while measuring" : "after measuring");
        abort = true;
        return;
      }
      if (sending && now >= clock.to) sending = false;
      for (uint32_t socket : now_ready) {
        const int i = mine[socket / 2];
        if (socket % 2 == 1) {
          conns[pairs + i]->Drain([&](Message& m) {
            if (auto* d = std::get_if<DistributeMessage>(&m.body)) {
              const bool measuring = clock.Measuring(Clock::now());
              ForEachMessage(*d, [&](uint64_t id, const std::string&,
                                     const std::string& body, uint64_t) {
                if (measuring) {
                  part.delivered.push_back(NowNs() - std::stoll(body));
                }
                ++part.distributed;
                confirms.push_back(id);
                if (target.window_until_delivered) {
                  Sender& s = senders[i];
                  if (auto p = s.pending.find(id); p != s.pending.end()) {
                    leaves_window(i, p->second);
                    s.pending.erase(p);
                  } else {
                    s.delivered.insert(id);
                  }
                }
              });
            } else if (part.failure.empty()) {
              part.failure = "a recipient got " + Describe(m);
            }
          });
          SendReceipts<MessageReceipt>(target, *conns[pairs + i], confirms);
          ready.CheckAfterWrite(socket);
          if (target.window_until_delivered) {  // the refills it freed
            flush_sends(i);
            ready.CheckAfterWrite(socket - 1);
          }
          continue;
        }
        conns[i]->Drain([&](Message& m) {
          if (auto* ok = std::get_if<MessageSuccess>(&m.body)) {
            Sender& s = senders[i];
            const int64_t at = NowNs();
            const bool measuring = clock.Measuring(Clock::now());
            ForEachDelivered(*ok, [&](uint64_t id, uint64_t client_msg_id) {
              auto it = s.sent_at.find(client_msg_id);
              if (it == s.sent_at.end()) {
                if (part.failure.empty()) {
                  part.failure = "MESSAGE_SUCCESS for a message not in flight";
                }
                return;
              }
              if (measuring && !target.window_until_delivered) {
                part.confirmed.push_back(at - it->second);
                ++part.completed;
              }
              // As a client does: the broker keeps the notice until then.
              acks.push_back(id);
              s.sent_at.erase(it);
              --s.in_flight;
              --in_flight;
              last_progress = Clock::now();
              if (sending && !target.window_until_delivered) send_one(i);
            });
          } else if (auto* p = std::get_if<MessagePending>(&m.body)) {
            if (!target.window_until_delivered) return;
            Sender& s = senders[i];
            ForEachPending(*p, [&](uint64_t id, uint64_t client_msg_id) {
              if (auto d = s.delivered.find(id); d != s.delivered.end()) {
                leaves_window(i, client_msg_id);
                s.delivered.erase(d);
              } else {
                s.pending.emplace(id, client_msg_id);
              }
            });
          } else if (part.failure.empty()) {
            part.failure = "a sender got " + Describe(m);
          }
        });
        flush_sends(i);
        SendReceipts<NoticeReceipt>(target, *conns[i], acks);
        ready.CheckAfterWrite(socket);
      }
      if (!part.failure.empty()) {
        abort = true;
        return;
      }
    }
  };
  return RunPairsCycle(target, pairs, threads, seconds, drive);
}

CpuWindow RunLoadThreads(const CycleClock& clock, int threads,
                         const std::vector<pid_t>& pids,
                         const std::function<void(int)>& drive, pid_t server) {
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) workers.emplace_back(drive, t);
  CpuWindow cpu;
  std::this_thread::sleep_until(clock.from);
  cpu.begin_us = CpuMicros(pids);
  cpu.threads_begin = ThreadMicros(pids);
  if (server > 0) cpu.server_begin_us = testing::TreeCpuTime(server).count();
  std::this_thread::sleep_until(clock.to);
  cpu.end_us = CpuMicros(pids);
  cpu.threads_end = ThreadMicros(pids);
  if (server > 0) cpu.server_end_us = testing::TreeCpuTime(server).count();
  for (auto& w : workers) w.join();
  return cpu;
}

ReferenceWindow::ReferenceWindow(CyclePart& part, const CycleClock& clock,
                                 int pairs, Publish publish)
    : part_(part),
      clock_(clock),
      publish_(std::move(publish)),
      next_seq_(pairs, 0),
      in_flight_(pairs),
      last_progress_(std::chrono::steady_clock::now()) {}

void ReferenceWindow::Send(int i) {
  const uint64_t seq = next_seq_[i]++;
  const int64_t now = NowNs();
  std::string body = std::to_string(now) + " " + std::to_string(seq) + " ";
  body.resize(68, '.');
  in_flight_[i][seq].sent_ns = now;
  ++total_;
  ++part_.sent;
  publish_(i, body, seq);
}

void ReferenceWindow::Acked(int i, uint64_t seq) {
  auto it = in_flight_[i].find(seq);
  if (it == in_flight_[i].end() || it->second.acked) {
    if (part_.failure.empty()) {
      part_.failure = "an acknowledgement of no message in flight";
    }
    return;
  }
  it->second.acked = true;
  Complete(i, seq);
}

void ReferenceWindow::Received(int i, std::string_view body) {
  const std::string text(body.substr(0, 64));
  char* end = nullptr;
  const long long sent_ns = std::strtoll(text.c_str(), &end, 10);
  const unsigned long long seq = std::strtoull(end, nullptr, 10);
  auto it = in_flight_[i].find(seq);
  if (it == in_flight_[i].end() || it->second.received) {
    if (part_.failure.empty()) {
      part_.failure = "a recipient got a message not in flight";
    }
    return;
  }
  if (clock_.Measuring(std::chrono::steady_clock::now())) {
    part_.delivered.push_back(NowNs() - sent_ns);
  }
  ++part_.distributed;
  it->second.received = true;
  Complete(i, seq);
}

void ReferenceWindow::Complete(int i, uint64_t seq) {
  auto it = in_flight_[i].find(seq);
  if (!it->second.acked || !it->second.received) return;
  if (clock_.Measuring(std::chrono::steady_clock::now())) {
    part_.confirmed.push_back(NowNs() - it->second.sent_ns);
    ++part_.completed;
  }
  in_flight_[i].erase(it);
  --total_;
  last_progress_ = std::chrono::steady_clock::now();
  if (sending_) Send(i);
}

void ReferenceWindow::Run(const std::vector<int>& mine, int window,
                          std::atomic<bool>& abort,
                          const std::function<std::string()>& step) {
  for (int i : mine) {
    for (int w = 0; w < window; ++w) Send(i);
  }
  while (sending_ || total_ > 0) {
    if (abort) return;
    const std::string lost = step();
    if (!lost.empty() && part_.failure.empty()) part_.failure = lost;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_progress_ > kStall && part_.failure.empty()) {
      part_.failure = std::to_string(total_) + " of " +
                      std::to_string(part_.sent) + " messages stalled";
    }
    if (!part_.failure.empty()) {
      abort = true;
      return;
    }
    if (sending_ && now >= clock_.to) sending_ = false;
  }
}

CycleFigures RunPairsCycle(const Target& target, int pairs, int threads,
                           double seconds, const DrivePairs& drive) {
  const CycleClock clock(seconds);
  std::vector<CyclePart> parts(threads);
  std::atomic<bool> abort{false};
  const CpuWindow cpu = RunLoadThreads(
      clock, threads, AllPids(target),
      [&](int t) {
        std::vector<int> mine;
        for (int i = t; i < pairs; i += threads) mine.push_back(i);
        drive(clock, parts[t], mine, abort);
      },
      target.server_pid);
  return MergeCycle(clock, cpu, parts);
}

CycleFigures MergeCycle(const CycleClock& clock, const CpuWindow& cpu,
                        std::vector<CyclePart>& parts) {
  CycleFigures out;
  std::vector<int64_t> delivered, confirmed;
  uint64_t sent = 0, distributed = 0;
  for (CyclePart& p : parts) {
    if (out.failure.empty()) out.failure = p.failure;
    delivered.insert(delivered.end(), p.delivered.begin(), p.delivered.end());
    confirmed.insert(confirmed.end(), p.confirmed.begin(), p.confirmed.end());
    sent += p.sent;
    distributed += p.distributed;
    out.messages += p.completed;
  }
  if (!out.failure.empty()) return out;
  const double elapsed =
      std::chrono::duration<double>(clock.to - clock.from).count();
  const double cpu_us = static_cast<double>(cpu.end_us - cpu.begin_us);
  out.messages_per_s = out.messages / elapsed;
  out.cpu_us_per_message = out.messages ? cpu_us / out.messages : 0;
  out.cpu_cores = cpu_us / (elapsed * 1e6);
  const double server_us =
      static_cast<double>(cpu.server_end_us - cpu.server_begin_us);
  out.server_cpu_us_per_message = out.messages ? server_us / out.messages : 0;
  out.server_cpu_cores = server_us / (elapsed * 1e6);
  // A group absent at the start began inside the window: all its time is.
  for (const auto& [name, end_us] : cpu.threads_end) {
    const auto begin = cpu.threads_begin.find(name);
    // (Negative when a thread of the group ended inside the window.)
    const double us = std::max<double>(
        0, end_us - (begin == cpu.threads_begin.end() ? 0 : begin->second));
    out.threads.push_back(
        {name, us, us / (elapsed * 1e6), out.messages ? us / out.messages : 0});
  }
  std::sort(out.threads.begin(), out.threads.end(),
            [](const ThreadShare& a, const ThreadShare& b) {
              return a.cpu_us > b.cpu_us;
            });
  out.delivered = Percentiles(delivered);
  out.confirmed = Percentiles(confirmed);
  if (distributed != sent) {
    out.failure = std::to_string(sent) + " messages sent and confirmed, " +
                  std::to_string(distributed) + " delivered";
  } else if (out.messages == 0) {
    out.failure = "no message completed the cycle while measuring";
  }
  return out;
}

QueueFigures RunOfflineQueue(const Target& target, uint64_t messages,
                             int recipients, const std::string& db_path) {
  QueueFigures out;
  out.messages = messages;
  zmq::context_t ctx(1);
  std::vector<std::unique_ptr<Conn>> sender;
  sender.push_back(NewConn(ctx, target.endpoint));
  if (!Enter(sender, {"qsender"}, nullptr, target.batch_pushes)) {
    out.failure = "could not log in the sender";
    return out;
  }
  std::vector<std::unique_ptr<Conn>> rconns;
  std::vector<std::string> rnames;
  for (int i = 0; i < recipients; ++i) {
    rnames.push_back("qr" + std::to_string(i));
    rconns.push_back(NewConn(ctx, target.endpoint));
  }
  if (!InChunks<CreateSuccess>(rconns, [&](size_t i) {
        return Body(CreateAccount{rnames[i], kPassword});
      })) {
    out.failure = "could not create the recipients";
    return out;
  }

  // Enqueue: a window of sends in flight, round robin over the recipients.
  const std::string body(64, 'q');
  constexpr uint64_t kWindow = 2000;
  uint64_t sent = 0, acked = 0;
  auto items = Items(sender);
  uint64_t next_mark = 1000;
  auto mark_time = Clock::now();
  uint64_t mark_count = 0;
  const QueuePhase enqueueing(target.pid);
  auto last_progress = Clock::now();
  // With batch_sends, the window's refill goes as one SEND_MESSAGE of the
  // batch form per recipient (each recipient's messages in order).
  std::vector<SendMessage> refill(recipients);
  while (acked < messages) {
    while (sent < messages && sent - acked < kWindow) {
      const std::string& to = rnames[sent % recipients];
      if (target.batch_sends) {
        SendMessage& batch = refill[sent % recipients];
        batch.bodies.push_back(body);
        batch.client_msg_ids.push_back(sent + 1);
      } else {
        sender[0]->Send(SendMessage{to, body, sent + 1});
      }
      ++sent;
    }
    for (int i = 0; i < recipients; ++i) {
      SendMessage& batch = refill[i];
      if (batch.bodies.empty()) continue;
      batch.recipient = rnames[i];
      sender[0]->Send(batch);
      batch.bodies.clear();
      batch.client_msg_ids.clear();
    }
    Poll(items, 100);
    sender[0]->Drain([&](Message& m) {
      if (const auto* p = std::get_if<MessagePending>(&m.body)) {
        ForEachPending(*p, [&](uint64_t, uint64_t) { ++acked; });
        last_progress = Clock::now();
      } else if (out.failure.empty()) {
        out.failure = "enqueueing got " + Describe(m);
      }
    });
    if (!out.failure.empty()) return out;
    if (Clock::now() - last_progress > kStall) {
      out.failure = Stalled("enqueueing", acked, messages);
      return out;
    }
    if (acked >= next_mark) {
      const auto now = Clock::now();
      out.enqueue_by_depth.emplace_back(
          next_mark,
          (acked - mark_count) /
              std::chrono::duration<double>(now - mark_time).count());
      mark_time = now;
      mark_count = acked;
      next_mark *= 10;
    }
  }
  out.enqueue_per_s = enqueueing.PerSecond(messages);
  out.enqueue_cpu_us = enqueueing.CpuEach(messages);

  // Drain: every recipient logs in and fetches, confirming each message.
  const std::vector<Message> logins = RequestAll(rconns, [&](size_t i) {
    return Body(
        LoginRequest{rnames[i], kPassword, std::nullopt, target.batch_pushes});
  });
  if (!AllAre<LoginSuccess>(logins)) {
    out.failure = "the recipients could not log in";
    return out;
  }
  uint64_t pending = 0;
  for (const Message& m : logins)
    pending += std::get<LoginSuccess>(m.body).pending;
  if (pending != messages) {
    out.failure = std::to_string(messages) + " messages queued, " +
                  std::to_string(pending) + " pending at login";
    return out;
  }
  const QueuePhase draining(target.pid);
  std::vector<bool> done(recipients, false);
  int finished = 0;
  uint64_t drained = 0;
  std::unordered_set<uint64_t> distinct;
  std::vector<uint64_t> acks;      // the sender's notices read together
  std::vector<uint64_t> confirms;  // a recipient's messages read together
  for (auto& c : rconns) c->Send(FetchMessages{kMaxFetchLimit});
  // The sender, still logged in, hears of each delivery and acknowledges
  // it, as a client does (otherwise its notices pile up past their cap).
  // Socket i < recipients is recipient i's; the last, the sender's.
  std::vector<zmq::socket_t*> sockets;
  for (auto& c : rconns) sockets.push_back(&c->socket());
  sockets.push_back(&sender[0]->socket());
  ReadySockets ready(std::move(sockets));
  last_progress = Clock::now();
  while (finished < recipients) {
    for (uint32_t socket : ready.Next(100)) {
      if (socket == static_cast<uint32_t>(recipients)) {
        sender[0]->Drain([&](Message& m) {
          if (auto* ok = std::get_if<MessageSuccess>(&m.body)) {
            ForEachDelivered(
                *ok, [&](uint64_t id, uint64_t) { acks.push_back(id); });
          } else if (out.failure.empty()) {
            out.failure = "the sender got " + Describe(m) + " while draining";
          }
        });
        SendReceipts<NoticeReceipt>(target, *sender[0], acks);
        ready.CheckAfterWrite(socket);
        continue;
      }
      const int i = static_cast<int>(socket);
      rconns[i]->Drain([&](Message& m) {
        if (auto* d = std::get_if<DistributeMessage>(&m.body)) {
          ForEachMessage(*d, [&](uint64_t id, const std::string&,
                                 const std::string&, uint64_t) {
            confirms.push_back(id);
            ++drained;
            distinct.insert(id);
          });
          last_progress = Clock::now();
        } else if (auto* r = std::get_if<FetchResult>(&m.body)) {
          // The page's receipts go before the next fetch, which would
          // otherwise push the same messages again.
          SendReceipts<MessageReceipt>(target, *rconns[i], confirms);
          if (r->count == 0) {
            done[i] = true;
            ++finished;
          } else {
            rconns[i]->Send(FetchMessages{kMaxFetchLimit});
          }
        } else if (out.failure.empty()) {
          out.failure = "draining got " + Describe(m);
        }
      });
      SendReceipts<MessageReceipt>(target, *rconns[i], confirms);
      ready.CheckAfterWrite(socket);
    }
    if (!out.failure.empty()) return out;
    if (Clock::now() - last_progress > kStall) {
      out.failure = Stalled("draining", distinct.size(), messages);
      return out;
    }
  }
  if (distinct.size() != messages) {
    out.failure = std::to_string(messages) + " messages queued, " +
                  std::to_string(distinct.size()) + " delivered";
  }
  out.drain_per_s = draining.PerSecond(drained);
  out.drain_cpu_us = draining.CpuEach(drained);
  out.db_bytes = DatabaseSize(db_path);
  return out;
}

bool PrefillAccounts(const std::string& db_path, uint64_t count) {
  if (sodium_init() < 0) return false;
  auto store = Store::Open(db_path, StoreOptions{SyncMode::kNormal, 0});
  if (!store.ok()) {
    std::cerr << "bench: " << store.status().ToString() << "\n";
    return false;
  }
  char hash[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str(hash, kPassword, strlen(kPassword),
                        crypto_pwhash_OPSLIMIT_MIN,
                        crypto_pwhash_MEMLIMIT_MIN) != 0) {
    return false;
  }
  static constexpr char kDigits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
  uint64_t state = 0x9e3779b97f4a7c15ULL;
  if (!(*store)->Begin().ok()) return false;
  for (uint64_t i = 0; i < count; ++i) {
    // Six pseudo-random characters, then the index: unique, prefixes spread.
    std::string name;
    for (int k = 0; k < 6; ++k) {
      state ^= state << 13, state ^= state >> 7, state ^= state << 17;
      name.push_back(kDigits[state % 36]);
    }
    for (uint64_t v = i; v; v /= 36) name.push_back(kDigits[v % 36]);
    if (!(*store)->CreateAccount(name, name, hash, 0).ok()) return false;
  }
  if (!(*store)->CreateAccount("lister", "lister", hash, 0).ok()) return false;
  return (*store)->Commit().ok();
}

ListFigures RunListing(const Target& target, uint64_t accounts, int requests) {
  ListFigures out;
  out.accounts = accounts;
  zmq::context_t ctx(1);
  std::vector<std::unique_ptr<Conn>> conns;
  conns.push_back(NewConn(ctx, target.endpoint));
  if (!AllAre<LoginSuccess>(RequestAll(conns, [&](size_t) {
        return Body(LoginRequest{"lister", kPassword, std::nullopt});
      }))) {
    out.failure = "the lister could not log in";
    return out;
  }
  for (const char* pattern : {"ab*", "*ab*", "(none)"}) {
    std::optional<std::string> p;
    if (std::string(pattern) != "(none)") p = pattern;
    std::vector<int64_t> wall;
    uint64_t names = 0;
    const int64_t cpu0 = CpuMicros(target.pid);
    for (int i = 0; i < requests; ++i) {
      const int64_t t = NowNs();
      std::vector<Message> r = RequestAll(conns, [&](size_t) {
        return Body(ListAccounts{p, 100, std::nullopt});
      });
      wall.push_back(NowNs() - t);
      if (!AllAre<AccountList>(r)) {
        out.failure = std::string("listing '") + pattern + "' got no page";
        return out;
      }
      names += std::get<AccountList>(r[0].body).accounts.size();
    }
    ListFigures::Row row;
    row.pattern = pattern;
    row.broker_us =
        static_cast<double>(CpuMicros(target.pid) - cpu0) / requests;
    row.wall_p50_us = Percentiles(wall).p50_us;
    row.names_per_page = static_cast<double>(names) / requests;
    out.rows.push_back(row);
  }
  return out;
}

LoginFigures RunLogins(const Target& target, int accounts, int rounds) {
  LoginFigures out;
  zmq::context_t ctx(1);
  std::vector<std::unique_ptr<Conn>> conns;
  std::vector<std::string> names;
  for (int i = 0; i < accounts; ++i) {
    names.push_back("login" + std::to_string(i));
    conns.push_back(NewConn(ctx, target.endpoint));
  }
  if (!AllAre<CreateSuccess>(RequestAll(conns, [&](size_t i) {
        return Body(CreateAccount{names[i], kPassword});
      }))) {
    out.failure = "could not create the accounts";
    return out;
  }
  std::vector<int64_t> each;
  const auto t0 = Clock::now();
  for (int r = 0; r < rounds; ++r) {
    const int64_t start = NowNs();
    std::vector<Message> replies = RequestAll(conns, [&](size_t i) {
      return Body(LoginRequest{names[i], kPassword, std::nullopt});
    });
    if (!AllAre<LoginSuccess>(replies)) {
      out.failure = "logins failed in round " + std::to_string(r + 1);
      return out;
    }
    for (int i = 0; i < accounts; ++i) each.push_back(NowNs() - start);
    if (!AllAre<LogoutSuccess>(
            RequestAll(conns, [&](size_t) { return Body(Logout{}); }))) {
      out.failure = "logouts failed in round " + std::to_string(r + 1);
      return out;
    }
    out.logins += accounts;
  }
  out.per_s =
      out.logins / std::chrono::duration<double>(Clock::now() - t0).count();
  out.p50_ms = Percentiles(each).p50_us / 1000;
  return out;
}

// --- Scenario 4: many connections, over helper processes --------------------

namespace {

// A connector helper (this executable, "connector"), driven over its stdin
// and stdout.
std::unique_ptr<testing::ChildProcess> StartConnector(
    const std::string& endpoint, int first, int count) {
  auto helper = std::make_unique<testing::ChildProcess>();
  if (!helper->Start(
          {testing::SelfExe(), "connector", "--endpoint", endpoint, "--first",
           std::to_string(first), "--count", std::to_string(count)},
          {.pipe_stdio = true})) {
    return nullptr;
  }
  return helper;
}

// Logging in thousands of clients with argon2id takes a while.
constexpr auto kHelperWait = std::chrono::minutes(10);

}  // namespace

ConnectionFigures RunConnections(Target& target, int clients,
                                 const std::function<pid_t()>& restart) {
  ConnectionFigures out;
  out.clients = clients;
  constexpr int kPerHelper = 4000;  // two descriptors per connection
  std::vector<std::unique_ptr<testing::ChildProcess>> helpers;
  for (int first = 0; first < clients; first += kPerHelper) {
    helpers.push_back(StartConnector(target.endpoint, first,
                                     std::min(kPerHelper, clients - first)));
    if (!helpers.back()) {
      out.failure = "could not start a connector helper";
      return out;
    }
  }
  for (auto& h : helpers) {
    if (h->ReadLine(kHelperWait) != "ready") {
      out.failure = "a connector helper could not log its clients in";
      return out;
    }
  }
  out.rss_kib = testing::RssKib(target.pid);
  zmq::context_t ctx(1);
  std::vector<std::unique_ptr<Conn>> probe;
  probe.push_back(NewConn(ctx, target.endpoint));
  std::vector<int64_t> pings;
  for (int i = 0; i < 200; ++i) {
    const int64_t t = NowNs();
    if (!AllAre<Pong>(RequestAll(probe, [](size_t) { return Body(Ping{}); }))) {
      out.failure = "ping " + std::to_string(i) + " not answered";
      return out;
    }
    pings.push_back(NowNs() - t);
  }
  out.ping = Percentiles(pings);
  if (restart) {
    const auto t0 = Clock::now();
    target.pid = restart();
    if (target.pid <= 0) {
      out.failure = "the target did not come back after a restart";
      return out;
    }
    out.restart_s = std::chrono::duration<double>(Clock::now() - t0).count();
    for (auto& h : helpers) h->WriteLine("relogin");
    for (auto& h : helpers) {
      const std::optional<std::string> line = h->ReadLine(kHelperWait);
      if (!line || line->rfind("relogged", 0) != 0) {
        out.failure = "clients could not log in again after a restart";
        return out;
      }
    }
    out.relogin_s = std::chrono::duration<double>(Clock::now() - t0).count();
  }
  for (auto& h : helpers) {
    h->WriteLine("quit");
    const std::optional<int> status = h->Wait(std::chrono::seconds(30));
    if (status != 0 && out.failure.empty()) {
      out.failure = "a connector helper exited with status " +
                    (status ? std::to_string(*status) : "(still running)");
    }
  }
  return out;
}

int RunConnector(const std::string& endpoint, int first, int count) {
  testing::RaiseFdLimit();
  zmq::context_t ctx(1);
  ctx.set(zmq::ctxopt::max_sockets, count + 16);
  std::vector<std::unique_ptr<Conn>> conns;
  std::vector<std::string> names;
  for (int i = 0; i < count; ++i) {
    names.push_back("conn" + std::to_string(first + i));
    conns.push_back(NewConn(ctx, endpoint));
  }
  std::vector<Message> logins;
  if (!Enter(conns, names, &logins)) return 1;
  std::vector<std::string> tokens;
  for (auto& m : logins) tokens.push_back(std::get<LoginSuccess>(m.body).token);
  std::cout << "ready" << std::endl;
  for (std::string cmd; std::getline(std::cin, cmd);) {
    if (cmd == "relogin") {
      const auto t0 = Clock::now();
      // Sockets reconnect by themselves; a request sent meanwhile waits in
      // the socket until the connection is back.
      std::vector<Message> again = RequestAll(conns, [&](size_t i) {
        return Body(LoginRequest{names[i], std::nullopt, tokens[i]});
      });
      const bool ok = AllAre<LoginSuccess>(again);
      std::cout << (ok ? "relogged " : "failed ")
                << std::chrono::duration<double>(Clock::now() - t0).count()
                << std::endl;
    } else if (cmd == "quit") {
      break;
    }
  }
  return testing::ProblemCount() == 0 ? 0 : 1;  // e.g. undecodable frames
}

}  // namespace zchat::bench
