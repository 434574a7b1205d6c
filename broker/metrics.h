// Metrics: the broker's counters, gauges and histograms for operators,
// rendered in the Prometheus text format (MetricsServer serves them over
// HTTP). The loop thread is the only writer; the metrics server's thread
// only reads. Each value is one relaxed atomic: a scrape sees every value
// whole, though not all of them at the same instant, which Prometheus does
// not need. Writes are plain loads and stores (one writer), so counting
// costs the loop no locked instructions.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "broker/store.h"
#include "messages/error_code.h"
#include "messages/messages.h"

namespace zchat {

// Only ever increases. Add from any thread (the loop, and the partition
// workers of a batch).
class Counter {
 public:
  void Add(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// A value that goes up and down. Set from the loop thread alone.
class Gauge {
 public:
  void Set(int64_t v) { value_.store(v, std::memory_order_relaxed); }
  int64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> value_{0};
};

// Observations counted into fixed buckets (upper bounds, ascending; +Inf is
// implied). Observe from any thread.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double v);

  const std::vector<double>& bounds() const { return bounds_; }
  // Observations <= bounds()[i] (i == bounds().size(): all of them).
  uint64_t cumulative(size_t i) const;
  uint64_t count() const { return count_.value(); }
  double sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  std::vector<double> bounds_;
  std::vector<Counter> buckets_;  // one per bound, then +Inf; not cumulative
  Counter count_;
  std::atomic<double> sum_{0};
};

// What happened to chat messages, counted when the batch that did it
// commits (a failed batch counts nothing).
enum class MessageEvent : uint8_t {
  kAccepted,       // SEND_MESSAGE stored a new message
  kDeliveredLive,  // ... and pushed it at once to a logged-in recipient
  kQueued,         // ... the recipient was offline: it waits for a fetch
  kFetched,        // pushed by FETCH_MESSAGES
  kConfirmed,      // MESSAGE_RECEIPT took it off the queue
  kCount
};
inline constexpr size_t kMessageEventCount =
    static_cast<size_t>(MessageEvent::kCount);

struct Metrics {
  // A request answered: its type (0: a frame that could not be decoded)
  // and its outcome (kOk or the code it was refused with).
  void CountRequest(uint64_t type, ErrorCode outcome);
  uint64_t requests(uint64_t type, ErrorCode outcome) const;

  Counter messages[kMessageEventCount];
  Counter frames_received;
  Counter frames_sent;  // replies and pushes handed to the socket
  // Requests run on a partition's thread (--partitions with --threads):
  // sends, receipts and notice acknowledgements, when their batch lets them.
  Counter partition_requests;
  Counter sends_dropped;  // at a peer's high-water mark
  Counter connections_refused;
  Gauge connections;  // transport connections admitted now
  Gauge sessions;     // logged-in sessions
  Gauge hash_jobs;    // password hashes queued or running
  Histogram batch_requests{{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}};
  Histogram commit_seconds{{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                            0.025, 0.05, 0.1, 0.25, 1}};
  const int64_t start_time_s;

  Metrics();

 private:
  static constexpr size_t kTypes = kMessageTypeCount + 1;
  static constexpr size_t kCodes = kMaxErrorCode + 1;
  std::array<std::array<Counter, kCodes>, kTypes> requests_;
};

// The Prometheus text exposition format (version 0.0.4) of `m`, with the
// store's totals when they could be read.
std::string RenderMetrics(const Metrics& m,
                          const std::optional<StoreTotals>& totals);

}  // namespace zchat
