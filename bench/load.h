// Load generation: raw DEALER connections (the test support library's
// RawClient) driven from one thread, and the scenarios of the benchmark.
// Each scenario runs against a Target (the broker or the baseline, each a
// separate process) and returns its figures, with `failure` saying why it
// did not complete ("" if it did: every request answered as expected, no
// message lost, nothing stalled past its deadline).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace zchat::bench {

struct Target {
  std::string name;  // "zchat" or "baseline"
  pid_t pid = -1;
  std::string endpoint;
};

struct Latency {
  double p50_us = 0, p99_us = 0, p999_us = 0;
  size_t samples = 0;
};

struct CycleFigures {
  double messages_per_s = 0;
  double cpu_us_per_message = 0;  // the target process's CPU time
  Latency delivered;              // SEND_MESSAGE -> DISTRIBUTE_MESSAGE
  Latency confirmed;              // SEND_MESSAGE -> MESSAGE_SUCCESS
  uint64_t messages = 0;
  std::string failure;
};

// Scenario 1 and 2: `pairs` senders each keep `window` messages in flight
// through the full cycle for `seconds` (after a short warm-up).
CycleFigures RunCycle(const Target& target, int pairs, int window,
                      double seconds, const std::string& tag);

struct QueueFigures {
  uint64_t messages = 0;
  double enqueue_per_s = 0, enqueue_cpu_us = 0;
  double drain_per_s = 0, drain_cpu_us = 0;
  // Enqueue rate in each decade of queue depth (1k, 10k, 100k, ...).
  std::vector<std::pair<uint64_t, double>> enqueue_by_depth;
  int64_t db_bytes = 0;
  std::string failure;
};

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
