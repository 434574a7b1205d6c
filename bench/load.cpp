#include "bench/load.h"

#include <fcntl.h>
#include <signal.h>
#include <sodium.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <iostream>
#include <unordered_map>
#include <zmq.hpp>

#include "bench/process.h"
#include "broker/broker_core.h"
#include "broker/store.h"
#include "messages/codec.h"

extern char** environ;

namespace zchat::bench {
namespace {

using Clock = std::chrono::steady_clock;
constexpr const char* kPassword = "benchpass1";

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             Clock::now().time_since_epoch())
      .count();
}

// One raw DEALER connection.
struct Conn {
  Conn(zmq::context_t& ctx, const std::string& endpoint)
      : socket(ctx, zmq::socket_type::dealer) {
    socket.set(zmq::sockopt::linger, 0);
    socket.set(zmq::sockopt::sndhwm, 100'000);
    socket.set(zmq::sockopt::rcvhwm, 100'000);
    socket.connect(endpoint);
  }
  uint64_t Send(Body body) {
    const uint64_t req = next_req++;
    const std::string frame = Encode(Message{req, std::move(body)});
    socket.send(zmq::buffer(frame), zmq::send_flags::none);
    return req;
  }
  // Calls `on` for every frame waiting, without blocking.
  void Drain(const std::function<void(Message&)>& on) {
    zmq::message_t frame;
    while (socket.recv(frame, zmq::recv_flags::dontwait)) {
      Result<Message> m = Decode(frame.to_string_view());
      if (m.ok()) on(*m);
    }
  }
  zmq::socket_t socket;
  uint64_t next_req = 1;
};

void Poll(std::vector<zmq::pollitem_t>& items, int timeout_ms) {
  try {
    zmq::poll(items.data(), items.size(),
              std::chrono::milliseconds(timeout_ms));
  } catch (const zmq::error_t&) {
  }
}

std::vector<zmq::pollitem_t> Items(std::vector<std::unique_ptr<Conn>>& conns) {
  std::vector<zmq::pollitem_t> items;
  for (auto& c : conns) items.push_back({c->socket.handle(), 0, ZMQ_POLLIN, 0});
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
      if (auto* e = std::get_if<Error>(&r.body)) {
        std::cerr << "bench: " << e->reason << "\n";
      }
      return false;
    }
  }
  return true;
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
           std::vector<Message>* logins = nullptr) {
  return InChunks<CreateSuccess>(
             conns,
             [&](size_t i) {
               return Body(CreateAccount{names[i], kPassword});
             }) &&
         InChunks<LoginSuccess>(
             conns,
             [&](size_t i) {
               return Body(LoginRequest{names[i], kPassword, std::nullopt});
             },
             logins);
}

void RaiseFdLimit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
}

int64_t FileSize(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 ? st.st_size : 0;
}

}  // namespace

CycleFigures RunCycle(const Target& target, int pairs, int window,
                      double seconds, const std::string& tag) {
  CycleFigures out;
  zmq::context_t ctx(1);
  ctx.set(zmq::ctxopt::max_sockets, 4 * pairs + 16);
  std::vector<std::unique_ptr<Conn>> conns;
  std::vector<std::string> names;
  for (int i = 0; i < pairs; ++i)
    names.push_back(tag + "s" + std::to_string(i));
  for (int i = 0; i < pairs; ++i)
    names.push_back(tag + "r" + std::to_string(i));
  for (size_t i = 0; i < names.size(); ++i) {
    conns.push_back(std::make_unique<Conn>(ctx, target.endpoint));
  }
  if (!Enter(conns, names)) {
    std::cerr << "bench: could not log in " << names.size() << " clients\n";
    return out;
  }

  struct Sender {
    uint64_t next_cmid = 1;
    int in_flight = 0;
    std::unordered_map<uint64_t, int64_t> sent_at;  // client_msg_id -> ns
  };
  std::vector<Sender> senders(pairs);
  std::string padding(48, '.');
  bool sending = true, measuring = false;
  std::vector<int64_t> delivered, confirmed;
  uint64_t completed = 0;

  auto send_one = [&](int i) {
    Sender& s = senders[i];
    const uint64_t cmid = s.next_cmid++;
    const int64_t now = NowNs();
    s.sent_at[cmid] = now;
    ++s.in_flight;
    conns[i]->Send(SendMessage{names[pairs + i],
                               std::to_string(now) + " " + padding, cmid});
  };
  for (int i = 0; i < pairs; ++i) {
    for (int w = 0; w < window; ++w) send_one(i);
  }
  auto items = Items(conns);
  const auto start = Clock::now();
  const auto measure_from = start + std::chrono::milliseconds(500);
  const auto measure_to =
      measure_from +
      std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
  int64_t cpu0 = 0;
  uint64_t completed0 = 0;
  Clock::time_point t0;
  while (sending) {
    Poll(items, 100);
    const auto now = Clock::now();
    if (!measuring && now >= measure_from) {
      measuring = true;
      cpu0 = CpuMicros(target.pid);
      completed0 = completed;
      t0 = now;
    }
    if (measuring && now >= measure_to) {
      const int64_t cpu1 = CpuMicros(target.pid);
      const double elapsed = std::chrono::duration<double>(now - t0).count();
      out.messages = completed - completed0;
      out.messages_per_s = out.messages / elapsed;
      out.cpu_us_per_message =
          out.messages ? static_cast<double>(cpu1 - cpu0) / out.messages : 0;
      sending = false;
      break;
    }
    for (int i = 0; i < pairs; ++i) {
      conns[i]->Drain([&](Message& m) {
        if (auto* ok = std::get_if<MessageSuccess>(&m.body)) {
          Sender& s = senders[i];
          auto it = s.sent_at.find(ok->client_msg_id);
          if (it == s.sent_at.end()) return;
          if (measuring) confirmed.push_back(NowNs() - it->second);
          s.sent_at.erase(it);
          --s.in_flight;
          ++completed;
          send_one(i);
        }
      });
      conns[pairs + i]->Drain([&](Message& m) {
        if (auto* d = std::get_if<DistributeMessage>(&m.body)) {
          if (measuring) {
            delivered.push_back(NowNs() - std::stoll(d->body));
          }
          conns[pairs + i]->Send(MessageReceipt{d->message_id});
        }
      });
    }
  }
  out.delivered = Percentiles(delivered);
  out.confirmed = Percentiles(confirmed);
  return out;
}

QueueFigures RunOfflineQueue(const Target& target, uint64_t messages,
                             int recipients, const std::string& db_path) {
  QueueFigures out;
  out.messages = messages;
  zmq::context_t ctx(1);
  std::vector<std::unique_ptr<Conn>> sender;
  sender.push_back(std::make_unique<Conn>(ctx, target.endpoint));
  if (!Enter(sender, {"qsender"})) return out;
  std::vector<std::unique_ptr<Conn>> rconns;
  std::vector<std::string> rnames;
  for (int i = 0; i < recipients; ++i) {
    rnames.push_back("qr" + std::to_string(i));
    rconns.push_back(std::make_unique<Conn>(ctx, target.endpoint));
  }
  if (!InChunks<CreateSuccess>(rconns, [&](size_t i) {
        return Body(CreateAccount{rnames[i], kPassword});
      })) {
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
  const int64_t cpu0 = CpuMicros(target.pid);
  const auto t0 = Clock::now();
  while (acked < messages) {
    while (sent < messages && sent - acked < kWindow) {
      sender[0]->Send(SendMessage{rnames[sent % recipients], body, sent + 1});
      ++sent;
    }
    Poll(items, 100);
    sender[0]->Drain([&](Message& m) {
      if (std::holds_alternative<MessagePending>(m.body)) ++acked;
    });
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
  const double enqueue_s =
      std::chrono::duration<double>(Clock::now() - t0).count();
  out.enqueue_per_s = messages / enqueue_s;
  out.enqueue_cpu_us =
      static_cast<double>(CpuMicros(target.pid) - cpu0) / messages;

  // Drain: every recipient logs in and fetches, confirming each message.
  if (!AllAre<LoginSuccess>(RequestAll(rconns, [&](size_t i) {
        return Body(LoginRequest{rnames[i], kPassword, std::nullopt});
      }))) {
    return out;
  }
  const int64_t cpu1 = CpuMicros(target.pid);
  const auto t1 = Clock::now();
  std::vector<bool> done(recipients, false);
  int finished = 0;
  uint64_t drained = 0;
  for (auto& c : rconns) c->Send(FetchMessages{kMaxFetchLimit});
  auto ritems = Items(rconns);
  while (finished < recipients) {
    Poll(ritems, 100);
    for (int i = 0; i < recipients; ++i) {
      rconns[i]->Drain([&](Message& m) {
        if (auto* d = std::get_if<DistributeMessage>(&m.body)) {
          rconns[i]->Send(MessageReceipt{d->message_id});
          ++drained;
        } else if (auto* r = std::get_if<FetchResult>(&m.body)) {
          if (r->count == 0) {
            done[i] = true;
            ++finished;
          } else {
            rconns[i]->Send(FetchMessages{kMaxFetchLimit});
          }
        }
      });
    }
  }
  const double drain_s =
      std::chrono::duration<double>(Clock::now() - t1).count();
  out.drain_per_s = drained / drain_s;
  out.drain_cpu_us =
      drained ? static_cast<double>(CpuMicros(target.pid) - cpu1) / drained : 0;
  out.db_bytes = FileSize(db_path) + FileSize(db_path + "-wal");
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
  conns.push_back(std::make_unique<Conn>(ctx, target.endpoint));
  if (!AllAre<LoginSuccess>(RequestAll(conns, [&](size_t) {
        return Body(LoginRequest{"lister", kPassword, std::nullopt});
      }))) {
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
      if (!r.empty()) {
        if (auto* page = std::get_if<AccountList>(&r[0].body)) {
          names += page->accounts.size();
        }
      }
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
    conns.push_back(std::make_unique<Conn>(ctx, target.endpoint));
  }
  if (!AllAre<CreateSuccess>(RequestAll(conns, [&](size_t i) {
        return Body(CreateAccount{names[i], kPassword});
      }))) {
    return out;
  }
  std::vector<int64_t> each;
  const auto t0 = Clock::now();
  for (int r = 0; r < rounds; ++r) {
    const int64_t start = NowNs();
    std::vector<Message> replies = RequestAll(conns, [&](size_t i) {
      return Body(LoginRequest{names[i], kPassword, std::nullopt});
    });
    if (!AllAre<LoginSuccess>(replies)) return out;
    for (int i = 0; i < accounts; ++i) each.push_back(NowNs() - start);
    RequestAll(conns, [&](size_t) { return Body(Logout{}); });
    out.logins += accounts;
  }
  out.per_s =
      out.logins / std::chrono::duration<double>(Clock::now() - t0).count();
  out.p50_ms = Percentiles(each).p50_us / 1000;
  return out;
}

// --- Scenario 4: many connections, over helper processes --------------------

namespace {

struct Helper {
  pid_t pid = -1;
  FILE* to = nullptr;    // its stdin
  FILE* from = nullptr;  // its stdout
};

Helper SpawnHelper(const std::string& endpoint, int first, int count) {
  int in[2], out[2];
  if (pipe(in) != 0 || pipe(out) != 0) return {};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_addclose(&fa, in[1]);
  posix_spawn_file_actions_addclose(&fa, out[0]);
  std::vector<std::string> argv = {
      SelfPath(), "connector",           "--endpoint", endpoint,
      "--first",  std::to_string(first), "--count",    std::to_string(count)};
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  Helper h;
  if (posix_spawn(&h.pid, args[0], &fa, nullptr, args.data(), environ) != 0) {
    h.pid = -1;
  }
  posix_spawn_file_actions_destroy(&fa);
  close(in[0]);
  close(out[1]);
  h.to = fdopen(in[1], "w");
  h.from = fdopen(out[0], "r");
  return h;
}

std::string ReadLine(FILE* f) {
  char buf[256];
  if (!fgets(buf, sizeof buf, f)) return "";
  std::string s(buf);
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

}  // namespace

ConnectionFigures RunConnections(Target& target, int clients,
                                 const std::function<pid_t()>& restart) {
  ConnectionFigures out;
  out.clients = clients;
  constexpr int kPerHelper = 4000;  // two descriptors per connection
  std::vector<Helper> helpers;
  for (int first = 0; first < clients; first += kPerHelper) {
    helpers.push_back(SpawnHelper(target.endpoint, first,
                                  std::min(kPerHelper, clients - first)));
  }
  for (auto& h : helpers) {
    if (ReadLine(h.from) != "ready") {
      std::cerr << "bench: a connector helper failed\n";
      return out;
    }
  }
  out.rss_kib = RssKib(target.pid);
  zmq::context_t ctx(1);
  std::vector<std::unique_ptr<Conn>> probe;
  probe.push_back(std::make_unique<Conn>(ctx, target.endpoint));
  std::vector<int64_t> pings;
  for (int i = 0; i < 200; ++i) {
    const int64_t t = NowNs();
    RequestAll(probe, [](size_t) { return Body(Ping{}); });
    pings.push_back(NowNs() - t);
  }
  out.ping = Percentiles(pings);
  if (restart) {
    const auto t0 = Clock::now();
    target.pid = restart();
    for (auto& h : helpers) {
      std::fputs("relogin\n", h.to);
      std::fflush(h.to);
    }
    bool ok = true;
    for (auto& h : helpers) ok &= ReadLine(h.from).rfind("relogged", 0) == 0;
    if (ok)
      out.relogin_s = std::chrono::duration<double>(Clock::now() - t0).count();
  }
  for (auto& h : helpers) {
    std::fputs("quit\n", h.to);
    std::fflush(h.to);
    waitpid(h.pid, nullptr, 0);
    std::fclose(h.to);
    std::fclose(h.from);
  }
  return out;
}

int RunConnector(const std::string& endpoint, int first, int count) {
  RaiseFdLimit();
  zmq::context_t ctx(1);
  ctx.set(zmq::ctxopt::max_sockets, count + 16);
  std::vector<std::unique_ptr<Conn>> conns;
  std::vector<std::string> names;
  for (int i = 0; i < count; ++i) {
    names.push_back("conn" + std::to_string(first + i));
    conns.push_back(std::make_unique<Conn>(ctx, endpoint));
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
  return 0;
}

}  // namespace zchat::bench
