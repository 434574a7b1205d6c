// Load generation: raw DEALER connections (the test support library's
// RawClient), and the scenarios of the benchmark. The online cycle spreads
// its pairs over load threads (--load-threads); the other scenarios drive
// their sockets from one thread. Each scenario runs against a Target (the
// broker, the baseline, Mosquitto or NATS, each a separate process) and returns
// its figures, with `failure` saying why it did not complete ("" if it did:
// every request answered as expected, no message lost, nothing stalled past its
// deadline).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tests/support/child_process.h"

namespace zchat::bench {

// A scenario that makes no progress for this long has failed (zchat's and
// Mosquitto's alike).
inline constexpr auto kStall = std::chrono::seconds(30);

struct Target {
  std::string name;  // "zchat", "baseline", "Mosquitto", "NATS", "RabbitMQ"
  pid_t pid = -1;
  std::string endpoint;  // ZeroMQ endpoint; for Mosquitto "127.0.0.1:PORT"
  int port = 0;          // a reference broker's TCP port
  // Several brokers sharing one store: every broker's endpoint and pid
  // (endpoint and pid are the first's). The online cycle puts each sender
  // on one broker and its recipient on the next, and counts the CPU of all.
  std::vector<std::string> endpoints;
  std::vector<pid_t> pids;
  // A database server the brokers use (PostgreSQL's main process), whose
  // CPU, with its children's, is reported apart; -1: none.
  pid_t server_pid = -1;
  // Recipients confirm the messages they read together in one
  // MESSAGE_RECEIPT, senders acknowledge their notices in one NOTICE_RECEIPT
  // (message_ids); else one each.
  bool batch_acks = false;
  // Clients log in with batch_pushes: one MESSAGE_SUCCESS may tell of
  // several deliveries.
  bool batch_pushes = false;
  // The online cycle's senders send what they have to send at once (a
  // window's start, the refills one read of notices frees) in one
  // SEND_MESSAGE of the batch form (one message alone in the single form),
  // and the offline sender a refill of its window in one a recipient; else
  // one SEND_MESSAGE a message.
  bool batch_sends = false;
  // A message leaves its sender's window in the online cycle when both its
  // MESSAGE_PENDING and its DISTRIBUTE_MESSAGE have come (the broker has it
  // and the recipient too, the rule the reference brokers are measured by);
  // else when its MESSAGE_SUCCESS comes. MESSAGE_SUCCESS is awaited and
  // acknowledged either way.
  bool window_until_delivered = false;
};

struct Latency {
  double p50_us = 0, p99_us = 0, p999_us = 0;
  size_t samples = 0;
};

// One group of a target's threads (testing::ThreadCpuTimes: "main", or
// threads of one name) over a measuring window.
struct ThreadShare {
  std::string name;
  double cpu_us = 0;              // its CPU time in the window
  double cores = 0;               // that over the window's length
  double cpu_us_per_message = 0;  // and over the messages
};

struct CycleFigures {
  double messages_per_s = 0;
  double cpu_us_per_message = 0;  // the target process's CPU time
  double cpu_cores = 0;  // its CPU time over the measuring window's length
  Latency delivered;     // SEND_MESSAGE -> DISTRIBUTE_MESSAGE
  Latency confirmed;     // SEND_MESSAGE -> MESSAGE_SUCCESS
  uint64_t messages = 0;
  // The database server's (Target::server_pid), when there is one.
  double server_cpu_us_per_message = 0;
  double server_cpu_cores = 0;
  // The target's CPU time by thread (its live threads; most first).
  std::vector<ThreadShare> threads;
  std::string failure;
};

// Scenario 1 and 2: `pairs` senders each keep `window` messages in flight
// through the full cycle for `seconds` (after a short warm-up), the pairs
// spread over `threads` load threads.
CycleFigures RunCycle(const Target& target, int pairs, int window,
                      double seconds, const std::string& tag, int threads);

// What the load threads of a cycle share: the measuring window, a 0.5 s
// warm-up after construction then `seconds`. A message counts (and its
// latency is sampled) if it completes inside the window; senders stop at its
// end and the messages in flight then must still complete.
struct CycleClock {
  using Clock = std::chrono::steady_clock;
  explicit CycleClock(double seconds)
      : from(Clock::now() + std::chrono::milliseconds(500)),
        to(from +
           std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000))) {}
  bool Measuring(Clock::time_point now) const {
    return now >= from && now < to;
  }
  Clock::time_point from, to;
};
// One load thread's share of a cycle.
struct CyclePart {
  std::vector<int64_t> delivered, confirmed;  // ns, inside the window
  uint64_t sent = 0, distributed = 0;
  uint64_t completed = 0;  // inside the window
  std::string failure;
};
struct CpuWindow {
  int64_t begin_us = 0, end_us = 0;  // the target's CPU time at from, to
  int64_t server_begin_us = 0, server_end_us = 0;  // the server's, if any
  // The target's CPU time by thread group at from, to (summed over pids).
  std::map<std::string, int64_t> threads_begin, threads_end;
};
// Runs drive(0) .. drive(threads - 1) on their own threads and reads the
// CPU time of `pids` (and of `server`'s process tree, if not -1) at the
// window's ends meanwhile.
CpuWindow RunLoadThreads(const CycleClock& clock, int threads,
                         const std::vector<pid_t>& pids,
                         const std::function<void(int)>& drive,
                         pid_t server = -1);
// One load thread's share of a reference broker's online cycle (Mosquitto,
// NATS): the messages in flight of its pairs. No reference broker tells a
// sender of the delivery, so a message completes, and frees its slot in
// its pair's window, once the broker acknowledged it to the sender and the
// recipient has it; "confirmed" is the time to that point. Same 68-byte
// body (its send time and sequence number first) as zchat's cycle.
class ReferenceWindow {
 public:
  // publish(i, body, seq) sends pair i's message number seq.
  using Publish = std::function<void(int, const std::string&, uint64_t)>;
  ReferenceWindow(CyclePart& part, const CycleClock& clock, int pairs,
                  Publish publish);
  // The broker acknowledged pair i's message seq to its sender.
  void Acked(int i, uint64_t seq);
  // Pair i's recipient got `body`.
  void Received(int i, std::string_view body);
  // Sends `window` messages for each of `mine`, then calls step() (wait for
  // what arrives, handle it: "" or why a connection failed) until the
  // measuring window is over and every message completed, or until a
  // failure (in the part) or `abort`; a failure sets `abort`.
  void Run(const std::vector<int>& mine, int window, std::atomic<bool>& abort,
           const std::function<std::string()>& step);

 private:
  struct InFlight {
    int64_t sent_ns = 0;
    bool acked = false, received = false;
  };
  void Send(int i);
  void Complete(int i, uint64_t seq);

  CyclePart& part_;
  const CycleClock& clock_;
  Publish publish_;
  std::vector<uint64_t> next_seq_;                                 // by pair
  std::vector<std::unordered_map<uint64_t, InFlight>> in_flight_;  // by pair
  uint64_t total_ = 0;  // in flight, all pairs
  bool sending_ = true;
  std::chrono::steady_clock::time_point last_progress_;
};

// The figures of the parts together.
CycleFigures MergeCycle(const CycleClock& clock, const CpuWindow& cpu,
                        std::vector<CyclePart>& parts);
// A cycle of `seconds` over `threads` load threads: drive(clock, part,
// mine, abort) on each, thread t with its share of the figures and the
// pairs t, t + threads, ... (`abort`: set by a thread that failed, to stop
// the others), reading the CPU of the target's processes (and of its
// database server's) meanwhile. The figures of all.
using DrivePairs =
    std::function<void(const CycleClock& clock, CyclePart& part,
                       const std::vector<int>& mine, std::atomic<bool>& abort)>;
CycleFigures RunPairsCycle(const Target& target, int pairs, int threads,
                           double seconds, const DrivePairs& drive);

int64_t NowNs();  // steady clock
Latency Percentiles(std::vector<int64_t>& ns);

// For the reference brokers the bench starts (Mosquitto, NATS): a loopback
// port that was free a moment ago (0 if none was found), whether something
// accepts connections on a loopback port now, and an executable `name` on
// PATH or in one of `also` ("" if none).
int FreeLoopbackPort();
bool LoopbackAccepts(int port);
std::string FindExecutable(const std::string& name,
                           const std::vector<std::string>& also);
// Starts the reference broker `name` as `child`: argv_for(port) on a
// loopback port free a moment ago (it may write a config file first; its
// stderr goes to `stderr_path`), waiting up to `wait` until it accepts
// connections, with another port if it exits first (up to five). Fills
// *target; else false, with *why quoting the end of `logs`.
bool StartOnFreePort(
    testing::ChildProcess& child, const std::string& name,
    const std::function<std::vector<std::string>(int port)>& argv_for,
    const std::string& stderr_path, const std::vector<std::string>& logs,
    Target* target, std::string* why,
    std::chrono::seconds wait = std::chrono::seconds(10));

struct QueueFigures {
  uint64_t messages = 0;
  double enqueue_per_s = 0, enqueue_cpu_us = 0;
  double drain_per_s = 0, drain_cpu_us = 0;
  // Enqueue rate in each decade of queue depth (1k, 10k, 100k, ...).
  std::vector<std::pair<uint64_t, double>> enqueue_by_depth;
  int64_t db_bytes = 0;
  std::string failure;
};

// One phase of an offline queue (enqueueing or draining), timed from its
// construction: how fast `n` messages went, and the target's CPU for each.
class QueuePhase {
 public:
  explicit QueuePhase(pid_t pid);
  double PerSecond(uint64_t n) const;
  double CpuEach(uint64_t n) const;  // microseconds; 0 when n is 0

 private:
  pid_t pid_;
  int64_t cpu0_us_;
  std::chrono::steady_clock::time_point t0_;
};
// Why a phase failed that made no progress for kStall: "enqueueing stalled
// at 12 of 1000".
std::string Stalled(const std::string& phase, uint64_t done, uint64_t total);

// Scenario 3: `messages` to offline recipients, then they fetch and confirm.
QueueFigures RunOfflineQueue(const Target& target, uint64_t messages,
                             int recipients, const std::string& db_path);

struct ListFigures {
  uint64_t accounts = 0;
  struct Row {
    std::string pattern;
    double broker_us = 0;  // CPU per request
    double wall_p50_us = 0;
    double names_per_page = 0;
  };
  std::vector<Row> rows;
  std::string failure;
};

// Scenario 5: pages of 100 from a broker whose database holds `accounts`
// accounts (filled by PrefillAccounts before the broker starts).
ListFigures RunListing(const Target& target, uint64_t accounts, int requests);
// Writes `count` accounts (and one "lister" with password "benchpass1")
// straight into a new database.
bool PrefillAccounts(const std::string& db_path, uint64_t count);

struct LoginFigures {
  int logins = 0;
  double per_s = 0;
  double p50_ms = 0;
  std::string failure;
};

// Scenario 6: password logins with the broker's real hashing cost.
LoginFigures RunLogins(const Target& target, int accounts, int rounds);

struct ConnectionFigures {
  int clients = 0;
  int64_t rss_kib = 0;
  Latency ping;
  double relogin_s = -1;  // after a restart; -1 if not measured
  double restart_s = -1;  // of relogin_s: stopping and starting the broker
  std::string failure;
};

// Scenario 4: `clients` connections logged in, spread over helper processes
// (file-descriptor limits). Restart (if given) restarts the target on the
// same endpoint and measures how long until every client is logged in again.
// `restart` (if set) stops the target, starts it again on the same endpoint
// and database, and returns its new pid (-1 if it did not come back).
ConnectionFigures RunConnections(Target& target, int clients,
                                 const std::function<pid_t()>& restart);
// The helper process side of RunConnections.
int RunConnector(const std::string& endpoint, int first, int count);

}  // namespace zchat::bench
