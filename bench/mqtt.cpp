#include "bench/mqtt.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <thread>
#include <unordered_map>
#include <vector>

#ifdef ZCHAT_BENCH_MOSQUITTO
#include <mosquitto.h>
#endif

namespace zchat::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// The `mosquitto` executable: on PATH, else where Debian puts it.
[[maybe_unused]] std::string MosquittoBinary() {
  return FindExecutable("mosquitto", {"/usr/sbin", "/usr/local/sbin"});
}

}  // namespace

#ifndef ZCHAT_BENCH_MOSQUITTO

std::string MosquittoUnavailable() {
  return "built without libmosquitto (pkg-config did not find it)";
}
bool StartMosquitto(testing::ChildProcess&, const std::string&, Target*,
                    std::string* why) {
  *why = MosquittoUnavailable();
  return false;
}
CycleFigures RunMqttCycle(const Target&, int, int, double, const std::string&,
                          int) {
  return {.failure = MosquittoUnavailable()};
}
QueueFigures RunMqttOffline(const Target&, uint64_t, int) {
  return {.failure = MosquittoUnavailable()};
}

#else

namespace {

// One MQTT client, run without libmosquitto's thread: Pump polls its socket
// and calls the library's read and write steps, which run the callbacks.
struct Client {
  mosquitto* m = nullptr;
  bool connected = false, subscribed = false, lost = false;
  int connack = -1;
  std::function<void(int mid)> on_publish;  // PUBACK received
  std::function<void(const mosquitto_message*)> on_message;

  Client(const std::string& id, bool clean_session) {
    m = mosquitto_new(id.c_str(), clean_session, this);
    if (!m) return;
    // No client-side cap: the bench's window is the cap, as for zchat.
    mosquitto_max_inflight_messages_set(m, 0);
    mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_connect_callback_set(m, [](mosquitto*, void* c, int rc) {
      static_cast<Client*>(c)->connack = rc;
      static_cast<Client*>(c)->connected = rc == 0;
    });
    mosquitto_disconnect_callback_set(m, [](mosquitto*, void* c, int rc) {
      static_cast<Client*>(c)->connected = false;
      if (rc != 0) static_cast<Client*>(c)->lost = true;
    });
    mosquitto_subscribe_callback_set(
        m, [](mosquitto*, void* c, int, int, const int*) {
          static_cast<Client*>(c)->subscribed = true;
        });
    mosquitto_publish_callback_set(m, [](mosquitto*, void* c, int mid) {
      auto* self = static_cast<Client*>(c);
      if (self->on_publish) self->on_publish(mid);
    });
    mosquitto_message_callback_set(
        m, [](mosquitto*, void* c, const mosquitto_message* msg) {
          auto* self = static_cast<Client*>(c);
          if (self->on_message) self->on_message(msg);
        });
  }
  ~Client() {
    if (m) mosquitto_destroy(m);
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
};

using Clients = std::vector<std::unique_ptr<Client> >;

// Polls the clients' sockets once (up to `timeout_ms`) and lets libmosquitto
// read and write; false if a connection was lost.
bool Pump(const std::vector<Client*>& cs, int timeout_ms) {
  std::vector<pollfd> fds;
  std::vector<Client*> who;
  for (Client* c : cs) {
    const int fd = mosquitto_socket(c->m);
    if (fd < 0) continue;
    fds.push_back({fd,
                   static_cast<short>(
                       POLLIN | (mosquitto_want_write(c->m) ? POLLOUT : 0)),
                   0});
    who.push_back(c);
  }
  if (fds.empty()) return true;
  if (poll(fds.data(), fds.size(), timeout_ms) < 0) return true;  // EINTR
  bool ok = true;
  for (size_t i = 0; i < fds.size(); ++i) {
    int rc = MOSQ_ERR_SUCCESS;
    if (fds[i].revents & (POLLIN | POLLERR | POLLHUP)) {
      rc = mosquitto_loop_read(who[i]->m, 1);
    }
    if (rc == MOSQ_ERR_SUCCESS && (fds[i].revents & POLLOUT)) {
      rc = mosquitto_loop_write(who[i]->m, 1);
    }
    if (rc != MOSQ_ERR_SUCCESS || who[i]->lost) ok = false;
  }
  return ok;
}

std::vector<Client*> Ptrs(const Clients& cs) {
  std::vector<Client*> out;
  for (auto& c : cs) out.push_back(c.get());
  return out;
}

// Pumps until done() or 30 s; "" or why not.
std::string PumpUntil(const std::vector<Client*>& cs,
                      const std::function<bool()>& done,
                      const std::string& what) {
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (!done()) {
    if (Clock::now() > deadline) return what + " timed out";
    if (!Pump(cs, 100)) return "a connection was lost while " + what;
  }
  return "";
}

std::string ConnectAll(const Target& target, const Clients& cs) {
  for (auto& c : cs) {
    if (!c->m) return "mosquitto_new failed";
    c->connack = -1;
    const int rc = mosquitto_connect(c->m, "127.0.0.1", target.port, 60);
    if (rc != MOSQ_ERR_SUCCESS) {
      return std::string("mosquitto_connect: ") + mosquitto_strerror(rc);
    }
  }
  return PumpUntil(
      Ptrs(cs),
      [&] {
        for (auto& c : cs) {
          if (c->connack > 0) return true;  // refused: checked below
          if (!c->connected) return false;
        }
        return true;
      },
      "connecting");
}

std::string CheckConnected(const Clients& cs) {
  for (auto& c : cs) {
    if (!c->connected) {
      return "a connection was refused (CONNACK " + std::to_string(c->connack) +
             ")";
    }
  }
  return "";
}

std::string SubscribeAll(const Clients& cs,
                         const std::function<std::string(size_t)>& topic) {
  for (size_t i = 0; i < cs.size(); ++i) {
    if (mosquitto_subscribe(cs[i]->m, nullptr, topic(i).c_str(), 1) !=
        MOSQ_ERR_SUCCESS) {
      return "mosquitto_subscribe failed";
    }
  }
  return PumpUntil(
      Ptrs(cs),
      [&] {
        for (auto& c : cs) {
          if (!c->subscribed) return false;
        }
        return true;
      },
      "subscribing");
}

std::string DisconnectAll(const Clients& cs) {
  for (auto& c : cs) mosquitto_disconnect(c->m);
  return PumpUntil(
      Ptrs(cs),
      [&] {
        for (auto& c : cs) {
          if (c->connected || mosquitto_socket(c->m) >= 0) return false;
        }
        return true;
      },
      "disconnecting");
}

struct LibInit {
  LibInit() { mosquitto_lib_init(); }
};

}  // namespace

std::string MosquittoUnavailable() {
  if (MosquittoBinary().empty()) {
    return "no mosquitto executable on PATH or in /usr/sbin";
  }
  return "";
}

bool StartMosquitto(testing::ChildProcess& child, const std::string& dir,
                    Target* target, std::string* why) {
  const std::string binary = MosquittoBinary();
  if (binary.empty()) {
    *why = MosquittoUnavailable();
    return false;
  }
  const std::string data = dir + "/mosquitto";
  fs::remove_all(data);
  fs::create_directories(data);
  const passwd* pw = getpwuid(geteuid());
  // mosquitto 2.0.11 takes "listener 0" as a Unix socket path, not as "any
  // port": a config file for each port tried.
  auto argv_for = [&](int port) -> std::vector<std::string> {
    const std::string conf = data + "/mosquitto.conf";
    std::ofstream f(conf);
    f << "listener " << port << " 127.0.0.1\n"
      << "allow_anonymous true\n"
      // Messages to offline persistent sessions are kept in memory and
      // written to mosquitto.db at shutdown and every autosave_interval
      // (default 30 min): not a write per message, unlike zchat.
      << "persistence true\n"
      << "persistence_location " << data
      << "/\n"
      // Outgoing QoS 1 messages in flight per client (default 20): above
      // the cycle's windows.
      << "max_inflight_messages 1000\n"
      // No cap on what waits for an offline session (default 1000).
      << "max_queued_messages 0\n"
      << "set_tcp_nodelay true\n"
      << "log_dest file " << data << "/mosquitto.log\n"
      << "log_type error\nlog_type warning\n";
    // As root mosquitto would switch to the "mosquitto" user, which cannot
    // write in our temporary directory.
    if (pw) f << "user " << pw->pw_name << "\n";
    return {binary, "-c", conf};
  };
  return StartOnFreePort(child, "Mosquitto", argv_for, data + "/stderr.log",
                         {data + "/mosquitto.log", data + "/stderr.log"},
                         target, why);
}

// The cycle over MQTT, mirroring RunCycle:
//   SEND_MESSAGE             -> PUBLISH QoS 1 to the recipient's topic
//   MESSAGE_PENDING          -> PUBACK to the sender (the broker has it)
//   DISTRIBUTE_MESSAGE       -> PUBLISH QoS 1 to the subscribed recipient
//   MESSAGE_RECEIPT          -> the recipient's PUBACK (libmosquitto sends it)
//   MESSAGE_SUCCESS          -> no MQTT equivalent (ReferenceWindow)
CycleFigures RunMqttCycle(const Target& target, int pairs, int window,
                          double seconds, const std::string& tag, int threads) {
  static LibInit init;
  CycleFigures out;
  threads = std::clamp(threads, 1, pairs);
  Clients senders, recipients;
  for (int i = 0; i < pairs; ++i) {
    senders.push_back(std::make_unique<Client>(tag + "s" + std::to_string(i),
                                               /*clean_session=*/true));
    recipients.push_back(std::make_unique<Client>(tag + "r" + std::to_string(i),
                                                  /*clean_session=*/true));
  }
  auto topic = [&](size_t i) { return "z/" + tag + "r" + std::to_string(i); };
  std::string why = ConnectAll(target, senders);
  if (why.empty()) why = ConnectAll(target, recipients);
  if (why.empty()) why = CheckConnected(senders);
  if (why.empty()) why = CheckConnected(recipients);
  if (why.empty()) why = SubscribeAll(recipients, topic);
  if (!why.empty()) {
    out.failure = why;
    return out;
  }

  auto drive = [&](const CycleClock& clock, CyclePart& part,
                   const std::vector<int>& mine, std::atomic<bool>& abort) {
    // MQTT's packet ids -> the window's sequence numbers, by pair.
    std::vector<std::unordered_map<int, uint64_t> > seq_of_mid(pairs);
    ReferenceWindow window_of(
        part, clock, pairs, [&](int i, const std::string& body, uint64_t seq) {
          int mid = 0;
          const int rc = mosquitto_publish(
              senders[i]->m, &mid, topic(i).c_str(),
              static_cast<int>(body.size()), body.data(), 1, false);
          if (rc != MOSQ_ERR_SUCCESS && part.failure.empty()) {
            part.failure =
                std::string("mosquitto_publish: ") + mosquitto_strerror(rc);
            return;
          }
          seq_of_mid[i][mid] = seq;
        });
    std::vector<Client*> clients;
    for (int i : mine) {
      clients.push_back(senders[i].get());
      clients.push_back(recipients[i].get());
      senders[i]->on_publish = [&, i](int mid) {
        auto it = seq_of_mid[i].find(mid);
        if (it == seq_of_mid[i].end()) {
          if (part.failure.empty()) part.failure = "PUBACK for no message";
          return;
        }
        const uint64_t seq = it->second;
        seq_of_mid[i].erase(it);
        window_of.Acked(i, seq);
      };
      recipients[i]->on_message = [&, i](const mosquitto_message* msg) {
        window_of.Received(
            i, std::string_view(static_cast<const char*>(msg->payload),
                                static_cast<size_t>(msg->payloadlen)));
      };
    }
    auto misc_at = Clock::now();
    window_of.Run(mine, window, abort, [&]() -> std::string {
      const bool ok = Pump(clients, 100);
      if (Clock::now() - misc_at > std::chrono::seconds(1)) {  // keepalive
        for (Client* c : clients) mosquitto_loop_misc(c->m);
        misc_at = Clock::now();
      }
      return ok ? "" : "a connection to Mosquitto was lost";
    });
  };
  out = RunPairsCycle(target, pairs, threads, seconds, drive);
  DisconnectAll(senders);
  DisconnectAll(recipients);
  return out;
}

QueueFigures RunMqttOffline(const Target& target, uint64_t messages,
                            int recipients) {
  static LibInit init;
  QueueFigures out;
  out.messages = messages;
  Clients rs, sender;
  for (int i = 0; i < recipients; ++i) {
    rs.push_back(std::make_unique<Client>("qr" + std::to_string(i),
                                          /*clean_session=*/false));
  }
  sender.push_back(std::make_unique<Client>("qsender", true));
  auto topic = [](uint64_t i) { return "q/" + std::to_string(i); };
  // The recipients' sessions: subscribed with QoS 1, then offline.
  std::string why = ConnectAll(target, rs);
  if (why.empty()) why = CheckConnected(rs);
  if (why.empty()) why = SubscribeAll(rs, topic);
  if (why.empty()) why = DisconnectAll(rs);
  if (why.empty()) why = ConnectAll(target, sender);
  if (why.empty()) why = CheckConnected(sender);
  if (!why.empty()) {
    out.failure = why;
    return out;
  }

  // Enqueue: as zchat's, a window of 2000 publishes awaiting their PUBACK,
  // round robin over the recipients, 64-byte bodies.
  const std::string body(64, 'q');
  constexpr uint64_t kWindow = 2000;
  uint64_t sent = 0, acked = 0;
  sender[0]->on_publish = [&](int) { ++acked; };
  auto ss = Ptrs(sender);
  const QueuePhase enqueueing(target.pid);
  auto last_progress = Clock::now();
  uint64_t last_acked = 0;
  while (acked < messages) {
    while (sent < messages && sent - acked < kWindow) {
      if (mosquitto_publish(sender[0]->m, nullptr,
                            topic(sent % recipients).c_str(),
                            static_cast<int>(body.size()), body.data(), 1,
                            false) != MOSQ_ERR_SUCCESS) {
        out.failure = "mosquitto_publish failed";
        return out;
      }
      ++sent;
    }
    if (!Pump(ss, 100)) {
      out.failure = "the sender's connection was lost";
      return out;
    }
    if (acked != last_acked) last_acked = acked, last_progress = Clock::now();
    if (Clock::now() - last_progress > kStall) {
      out.failure = Stalled("enqueueing", acked, messages);
      return out;
    }
  }
  out.enqueue_per_s = enqueueing.PerSecond(messages);
  out.enqueue_cpu_us = enqueueing.CpuEach(messages);
  DisconnectAll(sender);

  // Drain: the recipients come back (same client ids, clean session off)
  // and Mosquitto sends what it kept; libmosquitto PUBACKs each.
  uint64_t drained = 0;
  for (auto& c : rs) {
    c->on_message = [&](const mosquitto_message*) {
      ++drained;
      last_progress = Clock::now();
    };
  }
  const QueuePhase draining(target.pid);
  for (auto& c : rs) {
    c->connack = -1;
    if (mosquitto_reconnect(c->m) != MOSQ_ERR_SUCCESS) {
      out.failure = "a recipient could not reconnect";
      return out;
    }
  }
  auto rp = Ptrs(rs);
  last_progress = Clock::now();
  while (drained < messages) {
    if (!Pump(rp, 100)) {
      out.failure = "a recipient's connection was lost while draining";
      return out;
    }
    if (Clock::now() - last_progress > kStall) {
      out.failure = Stalled("draining", drained, messages);
      return out;
    }
  }
  out.drain_per_s = draining.PerSecond(drained);
  out.drain_cpu_us = draining.CpuEach(drained);
  // Anything beyond `messages` would be a duplicate: give it a moment.
  for (int i = 0; i < 3; ++i) Pump(rp, 50);
  if (drained != messages) {
    out.failure = std::to_string(messages) + " messages queued, " +
                  std::to_string(drained) + " delivered";
  }
  DisconnectAll(rs);
  return out;
}

#endif  // ZCHAT_BENCH_MOSQUITTO

}  // namespace zchat::bench
