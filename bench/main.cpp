// zchat-bench: drives a zchat broker and the built-in baseline forwarder with
// many DEALER clients on loopback and prints a table (and JSON with --json).
// Exits 1 if any scenario did not complete (a process that did not start or
// stop cleanly, a request refused or unanswered, a message lost, a stall):
// the figures of a broken run are not figures.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "bench/forwarder.h"
#include "bench/load.h"
#include "bench/mqtt.h"
#include "bench/nats.h"
#include "bench/rabbitmq.h"
#include "broker/sqlite_store.h"
#include "broker/store.h"
#include "tests/support/child_process.h"
#include "tests/support/fd_limit.h"
#include "tests/support/raw_client.h"
#include "tests/support/test_postgres.h"

namespace fs = std::filesystem;
using namespace zchat::bench;
using zchat::testing::ChildProcess;
using zchat::testing::SelfExe;
using Json = nlohmann::json;

namespace {

struct Settings {
  std::string broker;
  std::string sync = "full";
  std::string log_level = "warn";
  double seconds = 5;
  bool quick = false;
  std::string json_path;
  std::string dir;
  int load_threads = 1;
  std::vector<std::string> broker_args;  // appended to every broker start
  std::string no_mosquitto;  // why Mosquitto is skipped ("" if it is not)
  std::string no_nats;       // why NATS is skipped ("" if it is not)
  std::string no_rabbitmq;   // why RabbitMQ is skipped ("" if it is not)
  std::string rabbitmq_queues =
      "quorum";                    // its queues' type (--rabbitmq-queues)
  bool postgresql = false;         // also zchat on PostgreSQL (--postgresql)
  std::vector<int> pg_brokers{1};  // brokers sharing the database, per row
  std::string acks = "batch";  // receipts and notice acknowledgements (--acks)
  std::string pushes = "batch";          // the pushes' form (--pushes)
  std::string sends = "batch";           // how senders send (--sends)
  std::string window_until = "success";  // --window-until
};

// Why scenarios did not complete; any of them makes the exit status 1.
std::vector<std::string> g_failures;

void Fail(const std::string& scenario, const std::string& why) {
  std::fprintf(stderr, "bench: FAILED: %s: %s\n", scenario.c_str(),
               why.c_str());
  g_failures.push_back(scenario + ": " + why);
}

// Records a scenario's failure (if any); true if it completed.
bool Completed(const std::string& scenario, const std::string& failure) {
  if (failure.empty()) return true;
  Fail(scenario, failure);
  return false;
}

// A fresh broker (or baseline) process on an ephemeral loopback port.
struct Running {
  std::unique_ptr<ChildProcess> child = std::make_unique<ChildProcess>();
  Target target;
  bool ok() const { return !target.endpoint.empty(); }
};

// Starts `argv` with "--endpoint-file FILE" appended and waits (up to 20 s)
// until it has written its endpoint there. !ok() if it did not.
Running Start(const Settings& s, const std::string& name,
              std::vector<std::string> argv) {
  Running r;
  r.target.name = name;
  r.target.batch_acks = s.acks == "batch";
  r.target.batch_pushes = s.pushes == "batch";
  r.target.batch_sends = s.sends == "batch";
  r.target.window_until_delivered = s.window_until == "delivered";
  const std::string file = s.dir + "/endpoint";
  std::remove(file.c_str());
  argv.push_back("--endpoint-file");
  argv.push_back(file);
  if (r.child->Start(argv)) {
    r.target.endpoint = r.child->ReadEndpoint(file, std::chrono::seconds(20));
  }
  if (r.ok()) {
    r.target.pid = r.child->pid();
  } else {
    r.child->Stop();
  }
  return r;
}

Running StartBroker(const Settings& s, const std::string& db,
                    const std::string& cost,
                    const std::string& bind = "tcp://127.0.0.1:*") {
  // `db`: an SQLite file, or a PostgreSQL URI.
  std::vector<std::string> argv = {
      s.broker,    "--bind",
      bind,        zchat::IsPostgresSpec(db) ? "--store" : "--db",
      db,          "--log-level",
      s.log_level, "--pwhash-cost",
      cost,        "--sync",
      s.sync};
  argv.insert(argv.end(), s.broker_args.begin(), s.broker_args.end());
  return Start(s, "zchat", argv);
}

Running StartBaseline(const Settings& s) {
  return Start(s, "baseline",
               {SelfExe(), "forwarder", "--bind", "tcp://127.0.0.1:*"});
}

// A reference broker (Mosquitto, NATS, RabbitMQ) started by `start` on a free
// loopback port; !ok() (and a failure of `scenario`) if it did not come up.
using StartReference = bool (*)(zchat::testing::ChildProcess&,
                                const std::string&, Target*, std::string*);
Running StartRef(const Settings& s, const std::string& scenario,
                 const std::string& name, StartReference start) {
  Running r;
  r.target.name = name;
  std::string why;
  if (!start(*r.child, s.dir, &r.target, &why)) {
    r.target.endpoint.clear();
    Fail(scenario, why);
  }
  return r;
}

// Starts the target of `scenario`; a failure if it does not come up.
bool Started(const std::string& scenario, const Running& r) {
  if (r.ok()) return true;
  Fail(scenario, "the " + r.target.name + " process did not start");
  return false;
}

// Stops a target with SIGTERM (nats-server: SIGINT, as SIGTERM makes it
// exit with status 1): it must exit cleanly (status 0).
void Stop(const std::string& scenario, Running& r) {
  if (!r.ok()) return;
  const int status = r.child->Stop(std::chrono::seconds(10),
                                   r.target.name == "NATS" ? SIGINT : SIGTERM);
  if (status != 0) {
    Fail(scenario, "the " + r.target.name + " process exited with status " +
                       std::to_string(status) + " on SIGTERM");
  }
}

std::string Fmt(double v, int decimals = 1) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

Json LatencyJson(const Latency& l) {
  return {{"p50_us", l.p50_us},
          {"p99_us", l.p99_us},
          {"p999_us", l.p999_us},
          {"samples", l.samples}};
}

std::string Ratio(double a, double b) {
  return b ? Fmt(a / b, 2) : std::string("-");
}

// A reference broker's figures in one scenario, or why it has none.
template <class Figures>
struct Reference {
  std::string name;  // as printed: "Mosquitto", "NATS", "RabbitMQ"
  std::string key;   // in the JSON report: "mosquitto", "nats", "rabbitmq"
  std::optional<Figures> figures;
  std::string skipped;  // why not, when figures is empty
};
using CycleReference = Reference<CycleFigures>;

// Runs `run` against a reference broker started by `start` for `scenario`,
// unless `unavailable` says why not.
template <class Figures>
Reference<Figures> RunReference(
    const Settings& s, const std::string& scenario, const std::string& name,
    const std::string& key, const std::string& unavailable,
    StartReference start, const std::function<Figures(const Target&)>& run) {
  Reference<Figures> r{name, key, std::nullopt, unavailable};
  if (!r.skipped.empty()) return r;
  const std::string what = scenario + " (" + name + ")";
  Running m = StartRef(s, what, name, start);
  if (!m.ok()) {
    r.skipped = "did not start";
    return r;
  }
  Figures f = run(m.target);
  Stop(what, m);
  if (!Completed(what, f.failure)) {
    r.skipped = "did not complete: " + f.failure;
    return r;
  }
  r.figures = std::move(f);
  return r;
}

// A table of cycle figures, a row per target; a reference broker's row says
// why it was skipped when it was.
void PrintCycle(
    const std::string& title, const CycleFigures& z, const CycleFigures& b,
    const std::vector<CycleReference>& refs,
    const std::vector<std::pair<std::string, CycleFigures>>& pg = {},
    const CycleFigures* wrapped = nullptr) {
  std::printf("\n%s\n", title.c_str());
  std::printf("  %-10s %12s %10s %6s %28s %28s\n", "", "chat msg/s",
              "cpu us/msg", "cores", "send->delivered p50/p99/p99.9",
              "send->success p50/p99/p99.9");
  auto row = [](const char* name, const CycleFigures& f) {
    std::printf("  %-10s %12s %10s %6s %28s %28s\n", name,
                Fmt(f.messages_per_s, 0).c_str(),
                Fmt(f.cpu_us_per_message, 2).c_str(),
                Fmt(f.cpu_cores, 2).c_str(),
                (Fmt(f.delivered.p50_us, 0) + "/" + Fmt(f.delivered.p99_us, 0) +
                 "/" + Fmt(f.delivered.p999_us, 0) + " us")
                    .c_str(),
                (Fmt(f.confirmed.p50_us, 0) + "/" + Fmt(f.confirmed.p99_us, 0) +
                 "/" + Fmt(f.confirmed.p999_us, 0) + " us")
                    .c_str());
  };
  row("zchat", z);
  if (wrapped) row("zchat/wrap", *wrapped);
  row("baseline", b);
  for (const CycleReference& r : refs) {
    if (r.figures) {
      row(r.name.c_str(), *r.figures);
    } else {
      std::printf("  %-10s skipped (%s)\n", r.name.c_str(), r.skipped.c_str());
    }
  }
  for (const auto& [label, f] : pg) row(label.c_str(), f);
  std::printf("  zchat/baseline: throughput %s, cpu/msg %s, p50 delivered %s\n",
              Ratio(z.messages_per_s, b.messages_per_s).c_str(),
              Ratio(z.cpu_us_per_message, b.cpu_us_per_message).c_str(),
              Ratio(z.delivered.p50_us, b.delivered.p50_us).c_str());
  for (const CycleReference& r : refs) {
    if (!r.figures) continue;
    std::printf(
        "  zchat/%s: throughput %s, cpu/msg %s, p50 delivered %s\n",
        r.name.c_str(),
        Ratio(z.messages_per_s, r.figures->messages_per_s).c_str(),
        Ratio(z.cpu_us_per_message, r.figures->cpu_us_per_message).c_str(),
        Ratio(z.delivered.p50_us, r.figures->delivered.p50_us).c_str());
  }
  if (wrapped) {
    std::printf(
        "  zchat/wrap (its WAL wrapped, as a broker's that has run a while) "
        "/ zchat: p50 delivered %s, p99 %s\n",
        Ratio(wrapped->delivered.p50_us, z.delivered.p50_us).c_str(),
        Ratio(wrapped->delivered.p99_us, z.delivered.p99_us).c_str());
  }
  // Which of the broker's threads the CPU went to (main: the loop).
  auto threads = [](const std::string& name, const CycleFigures& f) {
    std::string groups;
    for (const ThreadShare& t : f.threads) {
      if (t.cores < 0.005) continue;
      groups += (groups.empty() ? "" : ", ") + t.name + " " + Fmt(t.cores, 2) +
                " (" + Fmt(t.cpu_us_per_message, 2) + ")";
    }
    std::printf("  %s threads, cores (cpu us/msg): %s\n", name.c_str(),
                groups.empty() ? "none measurable" : groups.c_str());
  };
  threads("zchat", z);
  if (wrapped) threads("zchat/wrap", *wrapped);
  for (const auto& [label, f] : pg) threads(label, f);
  for (const auto& [label, f] : pg) {
    std::printf(
        "  %s / zchat on SQLite: throughput %s, broker cpu/msg %s; the "
        "PostgreSQL server's own CPU: %s us/msg, %s cores\n",
        label.c_str(), Ratio(f.messages_per_s, z.messages_per_s).c_str(),
        Ratio(f.cpu_us_per_message, z.cpu_us_per_message).c_str(),
        Fmt(f.server_cpu_us_per_message, 1).c_str(),
        Fmt(f.server_cpu_cores, 2).c_str());
  }
}

Json CycleJson(const CycleFigures& f) {
  Json threads = Json::object();
  for (const ThreadShare& t : f.threads) {
    threads[t.name] = {{"cpu_us", t.cpu_us},
                       {"cores", t.cores},
                       {"cpu_us_per_message", t.cpu_us_per_message}};
  }
  return {{"messages_per_s", f.messages_per_s},
          {"cpu_us_per_message", f.cpu_us_per_message},
          {"cpu_cores", f.cpu_cores},
          {"server_cpu_us_per_message", f.server_cpu_us_per_message},
          {"server_cpu_cores", f.server_cpu_cores},
          {"messages", f.messages},
          {"delivered", LatencyJson(f.delivered)},
          {"confirmed", LatencyJson(f.confirmed)},
          {"threads", threads}};
}

// The cycle on a broker whose WAL has wrapped, as a broker's does once it
// has run a while: with --sync full SQLite checkpoints the WAL when it holds
// SqliteStore::kCheckpointPages pages (1,000 with --sync normal), and the
// next commit writes the WAL from its start again, over what is there. A new
// database's WAL grows instead, commit by commit, and a file system syncs a
// write that extends a file slower than one that overwrites it (the size and
// the new blocks go to its journal too; docs/performance.md section 34). So
// the broker first carries 50 pairs for a second at a time until its WAL
// has reached the checkpoint's size. Empty, with `why` set, if it cannot.
std::optional<CycleFigures> CycleOnWrappedWal(const Settings& s,
                                              const std::string& title,
                                              int pairs, int window,
                                              std::string* why) {
  const std::string label = title + " (zchat, WAL wrapped)";
  const std::string db = s.dir + "/wrapped.db";
  Running z = StartBroker(s, db, "min");
  if (!Started(label, z)) {
    *why = "the broker did not start";
    return std::nullopt;
  }
  const int pages =
      s.sync == "full" ? zchat::SqliteStore::kCheckpointPages : 1'000;
  const uintmax_t full = 32 + static_cast<uintmax_t>(pages) * (24 + 4096);
  bool wrapped = false;
  for (int round = 0; round < 30 && why->empty(); ++round) {
    std::error_code ec;
    const uintmax_t size = fs::file_size(db + "-wal", ec);
    if (!ec && size >= full) {
      wrapped = true;
      break;
    }
    CycleFigures w = RunCycle(z.target, 50, 16, 1.0,
                              "w" + std::to_string(round), s.load_threads);
    if (!w.failure.empty()) *why = "filling the WAL: " + w.failure;
  }
  std::optional<CycleFigures> f;
  if (wrapped) {
    f = RunCycle(z.target, pairs, window, s.seconds, "c", s.load_threads);
  } else if (why->empty()) {
    *why = "its WAL (" + db + "-wal) did not reach " + std::to_string(pages) +
           " pages in 30 one-second rounds of 50 pairs";
  }
  Stop(label, z);
  if (f && !Completed(label, f->failure)) {
    *why = f->failure;
    f.reset();
  }
  return f;
}

// Scenarios 1-2 (and the pairs scaling table): zchat, the baseline, then
// Mosquitto (unless it is unavailable here). With `wrapped_wal`, zchat again
// on a broker whose WAL has wrapped (CycleOnWrappedWal).
Json Cycle(const Settings& s, const std::string& title, int pairs, int window,
           bool references = true, bool rabbitmq_in_quick = false,
           bool wrapped_wal = false) {
  static int run = 0;
  Running z =
      StartBroker(s, s.dir + "/cycle" + std::to_string(++run) + ".db", "min");
  if (!Started(title, z)) return {};
  CycleFigures zf =
      RunCycle(z.target, pairs, window, s.seconds, "c", s.load_threads);
  Stop(title, z);
  Completed(title + " (zchat)", zf.failure);
  Running b = StartBaseline(s);
  if (!Started(title, b)) return {};
  CycleFigures bf =
      RunCycle(b.target, pairs, window, s.seconds, "c", s.load_threads);
  Stop(title, b);
  Completed(title + " (baseline)", bf.failure);
  const std::string not_here = "not run in this scenario";
  auto run_with = [&](auto cycle) {
    return [&, cycle](const Target& t) {
      return cycle(t, pairs, window, s.seconds, "c", s.load_threads);
    };
  };
  std::vector<CycleReference> refs;
  refs.push_back(
      RunReference<CycleFigures>(s, title, "Mosquitto", "mosquitto",
                                 references ? s.no_mosquitto : not_here,
                                 StartMosquitto, run_with(RunMqttCycle)));
  refs.push_back(RunReference<CycleFigures>(s, title, "NATS", "nats",
                                            references ? s.no_nats : not_here,
                                            StartNats, run_with(RunNatsCycle)));
  // A RabbitMQ node takes seconds to boot: --quick (CI's proof that the
  // bench works) runs it in one cycle only (`rabbitmq_in_quick`, the
  // 50-pair one), the others taking the same code path.
  const std::string no_rabbitmq = !references ? not_here
                                  : s.quick && !rabbitmq_in_quick
                                      ? "not run with --quick here"
                                      : s.no_rabbitmq;
  refs.push_back(RunReference<CycleFigures>(
      s, title, "RabbitMQ", "rabbitmq", no_rabbitmq, StartRabbitMq,
      [&](const Target& t) {
        return RunRabbitMqCycle(t, pairs, window, s.seconds, "c",
                                s.load_threads, s.rabbitmq_queues);
      }));
  // zchat on PostgreSQL: a row per broker count, each on a fresh database
  // of the bench's throwaway server.
  std::vector<std::pair<std::string, CycleFigures>> pg_rows;
  for (int n : s.postgresql ? s.pg_brokers : std::vector<int>{}) {
    const std::string label = "zchat/PGx" + std::to_string(n);
    zchat::testing::TestPostgres& pg = zchat::testing::SharedPostgres();
    const std::string uri = pg.NewDatabase();
    if (uri.empty()) {
      Fail(title + " (" + label + ")", pg.error());
      continue;
    }
    std::vector<Running> brokers;
    Target t;
    t.batch_acks = s.acks == "batch";
    t.batch_pushes = s.pushes == "batch";
    t.batch_sends = s.sends == "batch";
    t.window_until_delivered = s.window_until == "delivered";
    bool up = true;
    for (int b = 0; b < n && up; ++b) {
      brokers.push_back(StartBroker(s, uri, "min"));
      up = Started(title + " (" + label + ")", brokers.back());
      if (up) {
        t.endpoints.push_back(brokers.back().target.endpoint);
        t.pids.push_back(brokers.back().target.pid);
      }
    }
    if (up) {
      t.name = label;
      t.endpoint = t.endpoints[0];
      t.pid = t.pids[0];
      t.server_pid = pg.ServerPid();
      CycleFigures f =
          RunCycle(t, pairs, window, s.seconds, "c", s.load_threads);
      if (Completed(title + " (" + label + ")", f.failure)) {
        pg_rows.emplace_back(label, f);
      }
    }
    for (Running& r : brokers) Stop(title + " (" + label + ")", r);
  }
  std::string wrapped_skipped;
  std::optional<CycleFigures> wrapped;
  // With --quick only at --sync normal, whose WAL wraps at 4 MB, not 41.
  if (wrapped_wal && s.quick && s.sync == "full") {
    wrapped_skipped =
        "not run with --quick at --sync full: it writes 41 MB of WAL first";
  } else if (wrapped_wal) {
    wrapped = CycleOnWrappedWal(s, title, pairs, window, &wrapped_skipped);
  }
  PrintCycle(title, zf, bf, refs, pg_rows, wrapped ? &*wrapped : nullptr);
  if (wrapped_wal && !wrapped) {
    std::printf("  %-10s skipped (%s)\n", "zchat/wrap",
                wrapped_skipped.c_str());
  }
  Json j = {{"pairs", pairs},
            {"window", window},
            {"load_threads", std::min(s.load_threads, pairs)},
            {"zchat", CycleJson(zf)},
            {"baseline", CycleJson(bf)},
            {"throughput_ratio",
             bf.messages_per_s ? zf.messages_per_s / bf.messages_per_s : 0}};
  for (const auto& [label, f] : pg_rows) j[label] = CycleJson(f);
  if (wrapped) {
    j["zchat_wal_wrapped"] = CycleJson(*wrapped);
  } else if (wrapped_wal) {
    j["zchat_wal_wrapped"] = {{"skipped", wrapped_skipped}};
  }
  for (const CycleReference& r : refs) {
    if (r.figures) {
      j[r.key] = CycleJson(*r.figures);
      j["throughput_ratio_" + r.key] =
          r.figures->messages_per_s
              ? zf.messages_per_s / r.figures->messages_per_s
              : 0;
    } else {
      j[r.key] = {{"skipped", r.skipped}};
    }
  }
  return j;
}

Json Offline(const Settings& s, uint64_t messages) {
  const std::string db = s.dir + "/offline.db";
  Running z = StartBroker(s, db, "min");
  if (!Started("offline", z)) return {};
  QueueFigures q = RunOfflineQueue(z.target, messages, 10, db);
  Stop("offline", z);
  if (!Completed("offline", q.failure)) return {};
  std::printf("\nOffline queue: %llu messages to 10 offline recipients\n",
              static_cast<unsigned long long>(q.messages));
  std::printf(
      "  enqueue %s msg/s (%s us broker CPU each), drain %s msg/s (%s us "
      "each), database %s MiB\n",
      Fmt(q.enqueue_per_s, 0).c_str(), Fmt(q.enqueue_cpu_us, 2).c_str(),
      Fmt(q.drain_per_s, 0).c_str(), Fmt(q.drain_cpu_us, 2).c_str(),
      Fmt(q.db_bytes / 1048576.0, 1).c_str());
  std::printf("  enqueue rate by queue depth:");
  Json depth = Json::array();
  for (auto& [d, rate] : q.enqueue_by_depth) {
    std::printf("  <=%llu: %s/s", static_cast<unsigned long long>(d),
                Fmt(rate, 0).c_str());
    depth.push_back({{"up_to", d}, {"per_s", rate}});
  }
  std::printf("\n");
  Json j = {{"messages", q.messages},
            {"enqueue_per_s", q.enqueue_per_s},
            {"enqueue_cpu_us", q.enqueue_cpu_us},
            {"drain_per_s", q.drain_per_s},
            {"drain_cpu_us", q.drain_cpu_us},
            {"db_bytes", q.db_bytes},
            {"enqueue_by_depth", depth}};
  // The baseline has no store; Mosquitto keeps the queue of each offline
  // persistent session (in memory, saved to disk periodically), NATS each
  // subject's messages in its JetStream stream (files, synced every 2 min),
  // RabbitMQ each recipient's queue (confirmed once written and synced).
  std::printf("  baseline   n/a (no store, nothing to queue)\n");
  const auto run_with = [&](auto offline) {
    return [&, offline](const Target& t) { return offline(t, messages, 10); };
  };
  const std::vector<Reference<QueueFigures>> refs = {
      RunReference<QueueFigures>(s, "offline", "Mosquitto", "mosquitto",
                                 s.no_mosquitto, StartMosquitto,
                                 run_with(RunMqttOffline)),
      RunReference<QueueFigures>(s, "offline", "NATS", "nats", s.no_nats,
                                 StartNats, run_with(RunNatsOffline)),
      RunReference<QueueFigures>(
          s, "offline", "RabbitMQ", "rabbitmq", s.no_rabbitmq, StartRabbitMq,
          [&](const Target& t) {
            return RunRabbitMqOffline(t, messages, 10, s.rabbitmq_queues);
          })};
  for (const auto& r : refs) {
    if (!r.figures) {
      std::printf("  %-10s skipped (%s)\n", r.name.c_str(), r.skipped.c_str());
      j[r.key] = {{"skipped", r.skipped}};
      continue;
    }
    const QueueFigures& m = *r.figures;
    std::printf(
        "  %-10s enqueue %s msg/s (%s us broker CPU each), drain %s msg/s (%s "
        "us each)\n",
        r.name.c_str(), Fmt(m.enqueue_per_s, 0).c_str(),
        Fmt(m.enqueue_cpu_us, 2).c_str(), Fmt(m.drain_per_s, 0).c_str(),
        Fmt(m.drain_cpu_us, 2).c_str());
    std::printf(
        "  zchat/%s: enqueue %s, drain %s, cpu/msg enqueue %s, drain %s\n",
        r.name.c_str(), Ratio(q.enqueue_per_s, m.enqueue_per_s).c_str(),
        Ratio(q.drain_per_s, m.drain_per_s).c_str(),
        Ratio(q.enqueue_cpu_us, m.enqueue_cpu_us).c_str(),
        Ratio(q.drain_cpu_us, m.drain_cpu_us).c_str());
    j[r.key] = {{"enqueue_per_s", m.enqueue_per_s},
                {"enqueue_cpu_us", m.enqueue_cpu_us},
                {"drain_per_s", m.drain_per_s},
                {"drain_cpu_us", m.drain_cpu_us}};
  }
  return j;
}

// Many pairs spread over the load threads, once per target: what a broker
// that uses several cores would show ("cores" is its CPU time over the
// measuring window). --broker-arg passes the broker's worker-thread flag
// once it has one, so a sweep is a loop over zchat-bench runs.
Json Cores(const Settings& s) {
  const int pairs = s.quick ? 20 : 200;
  return Cycle(
      s,
      "Cores: " + std::to_string(pairs) + " pairs, window 16, " +
          "load threads: " + std::to_string(std::min(s.load_threads, pairs)),
      pairs, 16);
}

Json Listing(const Settings& s, uint64_t accounts) {
  const std::string db = s.dir + "/listing.db";
  if (!PrefillAccounts(db, accounts)) {
    Fail("listing", "could not fill the database with accounts");
    return {};
  }
  Running z = StartBroker(s, db, "min");
  if (!Started("listing", z)) return {};
  ListFigures l = RunListing(z.target, accounts, 200);
  Stop("listing", z);
  if (!Completed("listing", l.failure)) return {};
  std::printf("\nListing: pages of 100 from %llu accounts\n",
              static_cast<unsigned long long>(accounts));
  Json rows = Json::array();
  for (auto& r : l.rows) {
    std::printf(
        "  %-8s broker %8s us/request, wall p50 %8s us, %5s names/page\n",
        r.pattern.c_str(), Fmt(r.broker_us, 1).c_str(),
        Fmt(r.wall_p50_us, 0).c_str(), Fmt(r.names_per_page, 1).c_str());
    rows.push_back({{"pattern", r.pattern},
                    {"broker_us", r.broker_us},
                    {"wall_p50_us", r.wall_p50_us},
                    {"names_per_page", r.names_per_page}});
  }
  return {{"accounts", accounts}, {"rows", rows}};
}

Json Login(const Settings& s, int accounts, int rounds) {
  Running z = StartBroker(s, s.dir + "/login.db", "interactive");
  if (!Started("login", z)) return {};
  LoginFigures f = RunLogins(z.target, accounts, rounds);
  Stop("login", z);
  if (!Completed("login", f.failure)) return {};
  std::printf(
      "\nLogin with argon2id (interactive cost): %d logins, %s/s, p50 %s ms\n",
      f.logins, Fmt(f.per_s, 1).c_str(), Fmt(f.p50_ms, 1).c_str());
  return {{"logins", f.logins}, {"per_s", f.per_s}, {"p50_ms", f.p50_ms}};
}

// `clients` logged in to a broker on `db` (an SQLite file or a PostgreSQL
// URI), which is then restarted on the same endpoint.
ConnectionFigures ZchatConnections(const Settings& s, const std::string& db,
                                   int clients) {
  Running z = StartBroker(s, db, "min");
  if (!Started("connections", z)) return {};
  const std::string endpoint = z.target.endpoint;
  ConnectionFigures f = RunConnections(z.target, clients, [&]() -> pid_t {
    Stop("connections", z);
    z = StartBroker(s, db, "min", endpoint);
    return z.ok() ? z.target.pid : -1;
  });
  Stop("connections", z);
  return f;
}

// --connections: `asked`, or for 0 as many clients as one broker may hold
// under this machine's descriptor limit, which the bench raises to the hard
// limit for the brokers it starts (the broker keeps a reserve of 64 for its
// own files, broker/admission.cpp, and the bench's probe takes one more),
// and as its range of ephemeral ports allows: every client connects from
// 127.0.0.1 to one port, so each needs a port of that range (less 1,000 for
// the rest of the machine).
int ConnectionsToRun(int asked) {
  if (asked > 0) return asked;
  int64_t most = 100'000;
  const rlim_t hard = zchat::testing::GetFdLimit().hard;
  if (hard != RLIM_INFINITY) {
    most = std::min<int64_t>(most, static_cast<int64_t>(hard) - 80);
  }
  std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range");
  if (int64_t low = 0, high = 0; range >> low >> high && high > low) {
    most = std::min<int64_t>(most, high - low + 1 - 1'000);
  }
  return static_cast<int>(std::max<int64_t>(most, 16));
}

Json Connections(const Settings& s, int clients) {
  zchat::testing::RaiseFdLimit();  // inherited by the broker we start
  ConnectionFigures zf = ZchatConnections(s, s.dir + "/conn.db", clients);
  Completed("connections (zchat)", zf.failure);
  // With --postgresql, again with the broker on PostgreSQL (one broker).
  std::optional<ConnectionFigures> pgf;
  if (s.postgresql) {
    const std::string uri = zchat::testing::SharedPostgres().NewDatabase();
    if (uri.empty()) {
      Fail("connections (zchat/PG)", zchat::testing::SharedPostgres().error());
    } else {
      pgf = ZchatConnections(s, uri, clients);
      Completed("connections (zchat/PG)", pgf->failure);
    }
  }
  Running b = StartBaseline(s);
  if (!Started("connections", b)) return {};
  ConnectionFigures bf = RunConnections(b.target, clients, nullptr);
  Stop("connections", b);
  Completed("connections (baseline)", bf.failure);
  std::printf("\nConnections: %d clients logged in\n", clients);
  std::printf(
      "  zchat    RSS %s MiB, ping p50/p99 %s/%s us, all logged in again %s s "
      "after a restart (%s s of it stopping and starting the broker)\n",
      Fmt(zf.rss_kib / 1024.0).c_str(), Fmt(zf.ping.p50_us, 0).c_str(),
      Fmt(zf.ping.p99_us, 0).c_str(), Fmt(zf.relogin_s, 2).c_str(),
      Fmt(zf.restart_s, 2).c_str());
  if (pgf) {
    std::printf(
        "  zchat/PG RSS %s MiB, ping p50/p99 %s/%s us, all logged in again "
        "%s s after a restart (%s s of it stopping and starting the broker)\n",
        Fmt(pgf->rss_kib / 1024.0).c_str(), Fmt(pgf->ping.p50_us, 0).c_str(),
        Fmt(pgf->ping.p99_us, 0).c_str(), Fmt(pgf->relogin_s, 2).c_str(),
        Fmt(pgf->restart_s, 2).c_str());
  }
  std::printf("  baseline RSS %s MiB, ping p50/p99 %s/%s us\n",
              Fmt(bf.rss_kib / 1024.0).c_str(), Fmt(bf.ping.p50_us, 0).c_str(),
              Fmt(bf.ping.p99_us, 0).c_str());
  std::printf("  zchat/baseline RSS: %.2f\n",
              bf.rss_kib ? static_cast<double>(zf.rss_kib) / bf.rss_kib : 0);
  const auto figures = [](const ConnectionFigures& f) -> Json {
    return {{"rss_kib", f.rss_kib},
            {"ping", LatencyJson(f.ping)},
            {"relogin_s", f.relogin_s},
            {"restart_s", f.restart_s}};
  };
  Json out = {
      {"clients", clients},
      {"zchat", figures(zf)},
      {"baseline", {{"rss_kib", bf.rss_kib}, {"ping", LatencyJson(bf.ping)}}}};
  if (pgf) out["zchat_postgresql"] = figures(*pgf);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  // The build tree's broker beside bench/, else (installed) the one in the
  // same bin/ folder.
  const fs::path self_dir = fs::path(SelfExe()).parent_path();
  s.broker = (self_dir.parent_path() / "broker" / "zchat-broker").string();
  if (!fs::exists(s.broker)) s.broker = (self_dir / "zchat-broker").string();
  CLI::App app{
      "zchat-bench: throughput, latency, queue, connection, listing "
      "and login figures for zchat, beside a baseline forwarder."};
  app.add_option("--broker", s.broker, "the zchat-broker binary")
      ->capture_default_str();
  app.add_option("--seconds", s.seconds, "measuring time per throughput run")
      ->capture_default_str();
  app.add_option("--sync", s.sync, "broker --sync mode")
      ->check(CLI::IsMember({"full", "normal"}))
      ->capture_default_str();
  app.add_flag("--quick", s.quick, "tiny sizes: proves the bench works (CI)");
  bool require_references = false;
  app.add_flag("--require-references", require_references,
               "fail (exit 1) at once if a reference broker (Mosquitto, NATS, "
               "RabbitMQ) cannot run here, instead of skipping it");
  app.add_option("--broker-log-level", s.log_level, "the broker's --log-level")
      ->capture_default_str();
  app.add_option("--json", s.json_path, "also write the figures as JSON here");
  s.load_threads =
      static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 4u));
  app.add_option("--load-threads", s.load_threads,
                 "threads driving the online cycle's pairs")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_option("--acks", s.acks,
                 "how clients confirm what they read (MESSAGE_RECEIPT) and "
                 "acknowledge their notices (NOTICE_RECEIPT): batch (one "
                 "request with message_ids for what was read together) or "
                 "each (one per id, as brokers before message_ids need)")
      ->check(CLI::IsMember({"batch", "each"}))
      ->capture_default_str();
  app.add_option("--pushes", s.pushes,
                 "the form clients take pushes in: batch (log in with "
                 "batch_pushes: one MESSAGE_SUCCESS may tell of several "
                 "deliveries, one DISTRIBUTE_MESSAGE of a fetch may carry "
                 "several messages) or each (one frame a message, as brokers "
                 "before batch_pushes send)")
      ->check(CLI::IsMember({"batch", "each"}))
      ->capture_default_str();
  app.add_option("--window-until", s.window_until,
                 "when a message of the online cycle leaves its sender's "
                 "window: success (its MESSAGE_SUCCESS) or delivered (its "
                 "MESSAGE_PENDING and its DISTRIBUTE_MESSAGE, the rule the "
                 "reference brokers are measured by: PUBACK or publish "
                 "acknowledgement, and delivery)")
      ->check(CLI::IsMember({"success", "delivered"}))
      ->capture_default_str();
  app.add_option("--sends", s.sends,
                 "how senders send: batch (what a sender has to send at "
                 "once, a window's start or the refills one read of notices "
                 "frees, in one SEND_MESSAGE of the batch form a recipient) "
                 "or each (one SEND_MESSAGE a message, as brokers before the "
                 "batch form need)")
      ->check(CLI::IsMember({"batch", "each"}))
      ->capture_default_str();
  app.add_option("--rabbitmq-queues", s.rabbitmq_queues,
                 "the type of RabbitMQ's queues: quorum (replicated log, "
                 "RabbitMQ's durable default since 3.8) or classic")
      ->check(CLI::IsMember({"quorum", "classic"}))
      ->capture_default_str();
  app.add_flag("--postgresql", s.postgresql,
               "also run zchat on PostgreSQL (--store) in the online and "
               "connections scenarios, on a throwaway server the bench "
               "starts");
  app.add_option("--postgresql-brokers", s.pg_brokers,
                 "with --postgresql: a row for each of these numbers of "
                 "brokers sharing the database (each sender on one broker, "
                 "its recipient on the next), e.g. 1,2,4")
      ->delimiter(',')
      ->check(CLI::Range(1, 16));
  app.add_option("--broker-arg", s.broker_args,
                 "an extra flag for every zchat-broker started (repeat it; "
                 "e.g. --broker-arg=--threads --broker-arg=4)")
      ->allow_extra_args(false);
  std::string only;
  app.add_option(
         "--only", only,
         "one scenario: online, latency, offline, connections, listing, "
         "login, scaling, cores, cycle")
      ->check(CLI::IsMember({"online", "latency", "offline", "connections",
                             "listing", "login", "scaling", "cores", "cycle"}));
  int connections = 10'000;
  app.add_option("--connections", connections,
                 "clients in the connections scenario (0: as many as the "
                 "descriptor limit lets one broker hold and the ephemeral "
                 "ports allow, up to 100,000)")
      ->check(CLI::Range(0, 100'000))
      ->capture_default_str();
  int cycle_pairs = 100, cycle_window = 1;
  app.add_option("--pairs", cycle_pairs,
                 "with --only cycle: sender/recipient pairs")
      ->check(CLI::Range(1, 5000))
      ->capture_default_str();
  app.add_option("--window", cycle_window,
                 "with --only cycle: messages each sender keeps in flight")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();

  std::string bind, endpoint_file, endpoint;
  int first = 0, count = 0;
  auto* fwd = app.add_subcommand("forwarder", "(internal) run the baseline");
  fwd->add_option("--bind", bind)->required();
  fwd->add_option("--endpoint-file", endpoint_file)->required();
  auto* conn = app.add_subcommand("connector", "(internal) hold connections");
  conn->add_option("--endpoint", endpoint)->required();
  conn->add_option("--first", first);
  conn->add_option("--count", count);
  CLI11_PARSE(app, argc, argv);

  if (*fwd) {
    zchat::testing::RaiseFdLimit();
    return RunForwarder(bind, endpoint_file);
  }
  if (*conn) return RunConnector(endpoint, first, count);

  char tmpl[] = "/tmp/zchat-bench-XXXXXX";
  s.dir = mkdtemp(tmpl);
  if (s.quick) s.seconds = std::min(s.seconds, 1.0);
  s.no_mosquitto = MosquittoUnavailable();
  s.no_nats = NatsUnavailable();
  s.no_rabbitmq = RabbitMqUnavailable();
  const bool all = only.empty();
  Json report;
  std::string extra;
  for (const std::string& a : s.broker_args) extra += " " + a;
  std::printf(
      "zchat-bench: broker %s%s, --sync %s, %s s per throughput run, %d load "
      "threads%s%s\n",
      s.broker.c_str(), extra.c_str(), s.sync.c_str(),
      Fmt(s.seconds, 1).c_str(), s.load_threads, s.quick ? " (quick)" : "",
      s.window_until == "delivered"
          ? ", zchat's window until MESSAGE_PENDING and delivery"
          : "");
  if (!s.no_mosquitto.empty()) {
    std::printf("Mosquitto: skipped (%s)\n", s.no_mosquitto.c_str());
  }
  if (!s.no_nats.empty()) {
    std::printf("NATS: skipped (%s)\n", s.no_nats.c_str());
  }
  if (!s.no_rabbitmq.empty()) {
    std::printf("RabbitMQ: skipped (%s)\n", s.no_rabbitmq.c_str());
  }
  if (require_references &&
      !(s.no_mosquitto + s.no_nats + s.no_rabbitmq).empty()) {
    std::fprintf(stderr,
                 "zchat-bench: --require-references: a reference broker "
                 "cannot run here (script/bootstrap installs them)\n");
    fs::remove_all(s.dir);
    return 1;
  }
  report["load_threads"] = s.load_threads;
  report["window_until"] = s.window_until;
  report["broker_args"] = s.broker_args;
  if (all || only == "online") {
    report["online_1"] =
        Cycle(s, "Online full cycle, 1 pair, window 64", 1, 64);
    report["online_50"] =
        Cycle(s, "Online full cycle, 50 pairs, window 16", 50, 16, true, true);
  }
  if (all || only == "latency") {
    report["latency"] =
        Cycle(s, "Light load: 1 pair, one message in flight", 1, 1,
              /*references=*/true, /*rabbitmq_in_quick=*/false,
              /*wrapped_wal=*/true);
  }
  if (all || only == "offline") {
    report["offline"] = Offline(s, s.quick ? 10'000 : 1'000'000);
  }
  if (all || only == "connections") {
    if (const int most = ConnectionsToRun(0); !s.quick && connections > most) {
      // The broker would refuse the rest, and the helpers wait for them.
      Fail("connections",
           std::to_string(connections) +
               " clients asked, but one broker "
               "here can hold about " +
               std::to_string(most) +
               " (descriptor limit, ephemeral ports); --connections 0 takes "
               "that many");
    } else {
      report["connections"] =
          Connections(s, s.quick ? 200 : ConnectionsToRun(connections));
    }
  }
  if (all || only == "listing") {
    report["listing"] = Listing(s, s.quick ? 20'000 : 1'000'000);
  }
  if (all || only == "login") {
    report["login"] = Login(s, 8, s.quick ? 1 : 4);
  }
  if (only == "cores") report["cores"] = Cores(s);
  if (only == "cycle") {
    // The online cycle in any shape, e.g. many users each with one message
    // in flight (--pairs 500 --window 1).
    report["cycle"] =
        Cycle(s,
              "Online full cycle, " + std::to_string(cycle_pairs) +
                  " pairs, window " + std::to_string(cycle_window),
              cycle_pairs, cycle_window);
  }
  if (only == "scaling") {
    Json rows = Json::array();
    for (int pairs : {1, 10, 100, 1000}) {
      rows.push_back(
          Cycle(s, "Scaling: " + std::to_string(pairs) + " pairs, window 8",
                pairs, 8));
    }
    report["scaling_pairs"] = rows;
  }
  if (const uint64_t problems = zchat::testing::ProblemCount()) {
    Fail("wire", std::to_string(problems) +
                     " undecodable frames or unexpected replies");
  }
  if (!s.json_path.empty())
    std::ofstream(s.json_path) << report.dump(2) << "\n";
  fs::remove_all(s.dir);
  if (!g_failures.empty()) {
    std::fprintf(stderr, "\nzchat-bench: %zu scenario(s) did not complete:\n",
                 g_failures.size());
    for (const std::string& f : g_failures) {
      std::fprintf(stderr, "  %s\n", f.c_str());
    }
    return 1;
  }
  return 0;
}
