// zchat-core-bench: CPU per chat message spent in the broker's middle alone
// (BrokerCore, its handlers, the batch and the SQLite store), in process and
// without sockets. Each round runs `--batches` pairs of batches: every
// sender's SEND_MESSAGE in one batch (MESSAGE_PENDING + DISTRIBUTE_MESSAGE),
// then every recipient's MESSAGE_RECEIPT in the next (MESSAGE_SUCCESS).
// Only the time inside the broker's batches is counted (frames are encoded
// and decoded outside them). Under `valgrind --tool=callgrind` the
// difference between two round counts gives instructions per message, a
// figure that does not move with the machine's load. `--offline` measures
// the offline queue instead (RunOffline). `--partitions` and `--threads`
// lay the database out and run it as the broker's flags of those names do;
// the wall-clock rate inside the batches then shows what the threads buy.
#include <poll.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "bench/cpu_time.h"
#include "broker/broker_core.h"
#include "messages/codec.h"
#include "tests/support/temp_dir.h"

namespace zchat {
namespace {

// How the database is laid out and run (--partitions, --threads).
struct Layout {
  int partitions = 1;
  int threads = 1;
  SyncMode sync = SyncMode::kFull;
  bool batch_acks = false;    // one MESSAGE_RECEIPT, NOTICE_RECEIPT for many
  bool batch_pushes = false;  // clients log in with batch_pushes
  int sends_per_pair = 1;     // online: each pair's sends in one batch
  bool batch_sends = false;   // those sends in one SEND_MESSAGE (batch form)
};
Layout layout;

double WallSeconds() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

using bench::CpuSeconds;

struct Frame {
  std::string routing_id;
  std::string bytes;
  int connection;
};

class Harness {
 public:
  explicit Harness(const std::string& db)
      : store_(Open(db)),
        core_(*store_, pool_, BrokerConfig{}, [this] { return now_ms_; }) {
    auto* parts = dynamic_cast<PartitionedStore*>(store_.get());
    if (parts && layout.threads > 1) {
      if (Status s = core_.RunInPartitions(*parts, layout.threads); !s.ok()) {
        std::fprintf(stderr, "%s\n", s.ToString().c_str());
        std::exit(1);
      }
    }
  }

  std::vector<OutFrame> Batch(const std::vector<Frame>& frames) {
    // The clock moves on a millisecond a batch, as time does in a broker:
    // what is keyed by time (the dedup records' age) lands at the end of
    // its index, not scattered over it.
    ++now_ms_;
    core_.BeginBatch();
    for (const Frame& f : frames) {
      core_.OnFrame(f.routing_id, f.bytes, f.connection);
    }
    // Housekeeping (session timeouts, pruning) as the broker's tick runs
    // it, every 100 ms of this clock: pruning's pace follows the sends
    // between ticks, so its cost per message is counted too.
    if (now_ms_ % 100 == 0) core_.OnTick();
    return core_.EndBatch();
  }

  // Creates and logs in `name` on connection `connection` (one request at a
  // time, so that it also runs on brokers before in-order pipelining).
  bool Join(const std::string& name, int connection) {
    Create(name, connection);
    Login(name, connection);
    return core_.sessions().session_count() ==
           static_cast<size_t>(connection) + 1;
  }
  void Create(const std::string& name, int connection) {
    Batch({{name, Encode({next_req_++, CreateAccount{name, "password123"}}),
            connection}});
    FinishHashing();
  }
  void Login(const std::string& name, int connection) {
    Batch({{name,
            Encode({next_req_++, LoginRequest{name, "password123", std::nullopt,
                                              layout.batch_pushes}}),
            connection}});
    FinishHashing();
  }

  void FinishHashing() {
    while (pool_.in_flight() > 0) {
      pollfd p{pool_.wake_fd(), POLLIN, 0};
      ::poll(&p, 1, 1000);
      core_.BeginBatch();
      core_.OnHashResults();
      (void)core_.EndBatch();
    }
  }

  uint64_t next_req() { return next_req_++; }

 private:
  static std::unique_ptr<Store> Open(const std::string& db) {
    StoreOptions options;
    options.partitions = layout.partitions;
    options.sync = layout.sync;
    auto store = Store::Open(db, options);
    if (!store.ok()) {
      std::fprintf(stderr, "%s\n", store.status().ToString().c_str());
      std::exit(1);
    }
    return std::move(*store);
  }

  int64_t now_ms_ = 1'800'000'000'000;
  std::unique_ptr<Store> store_;
  HashPool pool_{1, 4096, HashCost{1, 8192}};
  BrokerCore core_;
  uint64_t next_req_ = 1;
};

int Run(int pairs, int batches, int rounds) {
  testing::TempDir dir;
  Harness h(dir.File("core-bench.db"));
  for (int i = 0; i < 2 * pairs; ++i) {
    if (!h.Join("u" + std::to_string(i), i)) {
      std::fprintf(stderr, "could not log in u%d\n", i);
      return 1;
    }
  }
  const std::string body = "a chat message of some length: héllo 世界 🌍";
  uint64_t client_msg_id = 1;
  double best = 0, best_rate = 0;
  std::vector<Frame> acks;  // senders' NOTICE_RECEIPTs, sent with the next
  for (int r = 0; r < rounds; ++r) {
    double spent = 0, wall = 0;
    uint64_t messages = 0;
    for (int b = 0; b < batches; ++b) {
      std::vector<Frame> sends = std::move(acks);
      acks.clear();
      for (int p = 0; p < pairs; ++p) {
        const std::string to = "u" + std::to_string(2 * p + 1);
        if (layout.batch_sends && layout.sends_per_pair > 1) {
          SendMessage many;
          many.recipient = to;
          for (int k = 0; k < layout.sends_per_pair; ++k) {
            many.bodies.push_back(body);
            many.client_msg_ids.push_back(client_msg_id++);
          }
          sends.push_back({"u" + std::to_string(2 * p),
                           Encode({h.next_req(), std::move(many)}), 2 * p});
          continue;
        }
        for (int k = 0; k < layout.sends_per_pair; ++k) {
          sends.push_back(
              {"u" + std::to_string(2 * p),
               Encode({h.next_req(), SendMessage{to, body, client_msg_id++}}),
               2 * p});
        }
      }
      const size_t expected =
          static_cast<size_t>(pairs) * layout.sends_per_pair;
      double start = CpuSeconds(), wall_start = WallSeconds();
      std::vector<OutFrame> out = h.Batch(sends);
      spent += CpuSeconds() - start;
      wall += WallSeconds() - wall_start;
      // What each client read, by routing id, answered as --batch-acks says.
      auto answer = [&](std::map<std::string, std::vector<uint64_t>>& read,
                        auto receipt_type, std::vector<Frame>& into) {
        using R = decltype(receipt_type);
        size_t n = 0;
        for (auto& [who, ids] : read) {
          n += ids.size();
          const int connection = std::stoi(who.substr(1));
          if (layout.batch_acks) {
            R r;
            r.message_ids = ids;
            into.push_back({who, Encode({h.next_req(), r}), connection});
          } else {
            for (uint64_t id : ids) {
              into.push_back({who, Encode({h.next_req(), R{id}}), connection});
            }
          }
        }
        return n;
      };
      std::map<std::string, std::vector<uint64_t>> delivered;
      for (const OutFrame& f : out) {
        Result<Message> m = Decode(f.frame);
        const auto* d =
            m.ok() ? std::get_if<DistributeMessage>(&m->body) : nullptr;
        if (!d) continue;
        ForEachMessage(
            *d, [&](uint64_t id, const std::string&, const std::string&,
                    uint64_t) { delivered[f.routing_id].push_back(id); });
      }
      std::vector<Frame> receipts;
      const size_t confirmed = answer(delivered, MessageReceipt{}, receipts);
      if (confirmed != expected) {
        std::fprintf(stderr, "batch %d: %zu of %zu messages delivered\n", b,
                     confirmed, expected);
        return 1;
      }
      start = CpuSeconds();
      wall_start = WallSeconds();
      std::vector<OutFrame> notices = h.Batch(receipts);
      spent += CpuSeconds() - start;
      wall += WallSeconds() - wall_start;
      std::map<std::string, std::vector<uint64_t>> told;
      for (const OutFrame& f : notices) {
        Result<Message> m = Decode(f.frame);
        const auto* ok =
            m.ok() ? std::get_if<MessageSuccess>(&m->body) : nullptr;
        if (!ok) continue;
        ForEachDelivered(*ok, [&](uint64_t id, uint64_t) {
          told[f.routing_id].push_back(id);
        });
      }
      if (answer(told, NoticeReceipt{}, acks) != expected) {
        std::fprintf(stderr, "batch %d: not every message's notice\n", b);
        return 1;
      }
      messages += expected;
    }
    const double us = spent * 1e6 / static_cast<double>(messages);
    const double rate = static_cast<double>(messages) / wall;
    if (r == 0 || us < best) best = us;
    if (rate > best_rate) best_rate = rate;
    std::printf("round %d: %llu messages, %.2f us CPU each, %.0f msg/s\n",
                r + 1, static_cast<unsigned long long>(messages), us, rate);
  }
  std::printf(
      "best: %.2f us CPU per chat message, %.0f msg/s inside the batches (%d "
      "pairs, %d partitions, %d threads)\n",
      best, best_rate, pairs, layout.partitions, layout.threads);
  return 0;
}

// Prints a phase's CPU per message, or (false) that it fell short.
bool Report(const char* phase, uint64_t done, uint64_t messages,
            double seconds) {
  if (done != messages) {
    std::fprintf(stderr, "%s: %llu of %llu messages\n", phase,
                 static_cast<unsigned long long>(done),
                 static_cast<unsigned long long>(messages));
    return false;
  }
  std::printf("%s: %llu messages, %.2f us CPU each\n", phase,
              static_cast<unsigned long long>(messages),
              seconds * 1e6 / static_cast<double>(messages));
  return true;
}

// The offline queue, as `zchat-bench --only offline` drives it: one sender
// sends `messages` round robin to `recipients` accounts that are not logged
// in, `window` sends a batch; then (unless `enqueue_only`) each recipient in
// turn logs in and fetches 1,000 at a time, confirming each message (its
// receipts and next FETCH_MESSAGES arriving together, at most 1,024 frames a
// batch, as the socket loop reads them). The sender stays logged in and
// acknowledges each MESSAGE_SUCCESS (its NOTICE_RECEIPTs go with the
// recipient's next frames), as in zchat-bench. Under callgrind,
// instructions per message are differences between runs: two
// `--enqueue-only` runs for enqueue, a full and an `--enqueue-only` run of
// the same size for the drain.
int RunOffline(uint64_t messages, int recipients, int window,
               bool enqueue_only) {
  testing::TempDir dir;
  Harness h(dir.File("core-bench.db"));
  if (!h.Join("sender", 0)) {
    std::fprintf(stderr, "could not log in the sender\n");
    return 1;
  }
  std::vector<std::string> names;
  for (int i = 0; i < recipients; ++i) {
    names.push_back("r" + std::to_string(i));
    h.Create(names.back(), i + 1);
  }
  const std::string body(64, 'q');
  uint64_t sent = 0, pending = 0;
  double start = CpuSeconds();
  while (sent < messages) {
    std::vector<Frame> batch;
    for (int i = 0; i < window && sent < messages; ++i, ++sent) {
      batch.push_back(
          {"sender",
           Encode({h.next_req(),
                   SendMessage{names[sent % recipients], body, sent + 1}}),
           0});
    }
    for (const OutFrame& f : h.Batch(batch)) {
      Result<Message> m = Decode(f.frame);
      pending += m.ok() && std::holds_alternative<MessagePending>(m->body);
    }
  }
  if (!Report("enqueue", pending, messages, CpuSeconds() - start)) return 1;
  if (enqueue_only) return 0;
  uint64_t drained = 0;
  start = CpuSeconds();
  for (int i = 0; i < recipients; ++i) {
    const int conn = i + 1;
    h.Login(names[i], conn);
    std::vector<Frame> in = {
        {names[i], Encode({h.next_req(), FetchMessages{kMaxFetchLimit}}),
         conn}};
    while (!in.empty()) {
      std::vector<Frame> next;
      bool more = false;
      for (size_t at = 0; at < in.size(); at += 1024) {
        std::vector<Frame> chunk(
            in.begin() + static_cast<std::ptrdiff_t>(at),
            in.begin() +
                static_cast<std::ptrdiff_t>(std::min(in.size(), at + 1024)));
        NoticeReceipt acks;       // the sender's, with --batch-acks
        MessageReceipt confirms;  // the recipient's, with --batch-acks
        for (const OutFrame& f : h.Batch(chunk)) {
          Result<Message> m = Decode(f.frame);
          if (!m.ok()) continue;
          if (f.routing_id == "sender") {
            if (const auto* ok = std::get_if<MessageSuccess>(&m->body)) {
              ForEachDelivered(*ok, [&](uint64_t id, uint64_t) {
                if (!layout.batch_acks) {
                  next.push_back(
                      {"sender", Encode({h.next_req(), NoticeReceipt{id}}), 0});
                  return;
                }
                acks.message_ids.push_back(id);
                if (acks.message_ids.size() == kMaxReceiptIds) {
                  next.push_back({"sender", Encode({h.next_req(), acks}), 0});
                  acks.message_ids.clear();
                }
              });
            }
            continue;
          }
          if (const auto* d = std::get_if<DistributeMessage>(&m->body)) {
            // One message, or a batch form's several (--batch-pushes).
            ForEachMessage(*d, [&](uint64_t id, const std::string&,
                                   const std::string&, uint64_t) {
              ++drained;
              if (!layout.batch_acks) {
                next.push_back({names[i],
                                Encode({h.next_req(), MessageReceipt{id}}),
                                conn});
                return;
              }
              confirms.message_ids.push_back(id);
              if (confirms.message_ids.size() == kMaxReceiptIds) {
                next.push_back(
                    {names[i], Encode({h.next_req(), confirms}), conn});
                confirms.message_ids.clear();
              }
            });
          } else if (const auto* r = std::get_if<FetchResult>(&m->body)) {
            more = r->count > 0;
          }
        }
        if (!acks.message_ids.empty()) {
          next.push_back({"sender", Encode({h.next_req(), acks}), 0});
        }
        if (!confirms.message_ids.empty()) {
          next.push_back({names[i], Encode({h.next_req(), confirms}), conn});
        }
      }
      if (more) {
        next.push_back({names[i],
                        Encode({h.next_req(), FetchMessages{kMaxFetchLimit}}),
                        conn});
      }
      in = std::move(next);
      if (drained > messages) {
        // Messages pushed again: some receipt did not confirm them.
        std::fprintf(stderr, "drain: %llu messages pushed for %llu queued\n",
                     static_cast<unsigned long long>(drained),
                     static_cast<unsigned long long>(messages));
        return 1;
      }
    }
  }
  return Report("drain", drained, messages, CpuSeconds() - start) ? 0 : 1;
}

}  // namespace
}  // namespace zchat

int main(int argc, char** argv) {
  CLI::App app{
      "zchat-core-bench: CPU per chat message in the broker's middle, no "
      "sockets"};
  int pairs = 50, batches = 200, rounds = 5;
  app.add_option("--pairs", pairs,
                 "sender/recipient pairs (one batch holds "
                 "one message of each)")
      ->check(CLI::Range(1, 10'000));
  app.add_option("--batches", batches, "send+receipt batch pairs per round")
      ->check(CLI::Range(1, 1'000'000));
  app.add_option("--rounds", rounds, "rounds (the best is reported)")
      ->check(CLI::Range(1, 1000));
  bool offline = false, enqueue_only = false;
  uint64_t messages = 20'000;
  int recipients = 10, window = 1000;
  app.add_flag("--offline", offline,
               "the offline queue instead: enqueue to recipients that are not "
               "logged in, then drain");
  app.add_option("--messages", messages, "with --offline: messages queued")
      ->check(CLI::Range(uint64_t{1}, uint64_t{100'000'000}));
  app.add_option("--recipients", recipients, "with --offline: recipients")
      ->check(CLI::Range(1, 10'000));
  app.add_option("--window", window, "with --offline: sends per batch")
      ->check(CLI::Range(1, 1024));
  app.add_flag("--enqueue-only", enqueue_only,
               "with --offline: stop after the enqueue");
  app.add_option("--partitions", zchat::layout.partitions,
                 "the database in this many partitions")
      ->check(CLI::Range(1, 64));
  app.add_option("--sync", zchat::layout.sync,
                 "full (the broker's default: an fsync per commit) or normal")
      ->transform(CLI::CheckedTransformer(
          std::map<std::string, zchat::SyncMode>{
              {"full", zchat::SyncMode::kFull},
              {"normal", zchat::SyncMode::kNormal}},
          CLI::ignore_case));
  app.add_flag("--batch-acks", zchat::layout.batch_acks,
               "a recipient confirms the messages it read together in one "
               "MESSAGE_RECEIPT, a sender acknowledges its notices in one "
               "NOTICE_RECEIPT (message_ids)");
  app.add_flag("--batch-pushes", zchat::layout.batch_pushes,
               "clients log in with batch_pushes (the batch forms of "
               "DISTRIBUTE_MESSAGE and MESSAGE_SUCCESS)");
  app.add_option("--sends-per-pair", zchat::layout.sends_per_pair,
                 "online: each pair's sends in one batch (the live load's "
                 "window puts several of a pair in one)")
      ->check(CLI::Range(1, 64));
  app.add_flag("--batch-sends", zchat::layout.batch_sends,
               "online: each pair's sends of a batch in one SEND_MESSAGE of "
               "the batch form (with --sends-per-pair above 1)");
  app.add_option("--threads", zchat::layout.threads,
                 "with partitions: threads running sends and receipts")
      ->check(CLI::Range(1, 64));
  CLI11_PARSE(app, argc, argv);
  if (offline) {
    return zchat::RunOffline(messages, recipients, window, enqueue_only);
  }
  return zchat::Run(pairs, batches, rounds);
}
