#include "broker/metrics.h"

#include <chrono>
#include <cmath>
#include <cstdio>

namespace zchat {

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), buckets_(bounds_.size() + 1) {}

void Histogram::Observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  buckets_[i].Add();
  count_.Add();
  double sum = sum_.load(std::memory_order_relaxed);
  while (!sum_.compare_exchange_weak(sum, sum + v, std::memory_order_relaxed)) {
  }
}

uint64_t Histogram::cumulative(size_t i) const {
  uint64_t total = 0;
  for (size_t b = 0; b <= i && b < buckets_.size(); ++b) {
    total += buckets_[b].value();
  }
  return total;
}

Metrics::Metrics()
    : start_time_s(std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count()) {}

void Metrics::CountRequest(uint64_t type, ErrorCode outcome) {
  const auto code = static_cast<size_t>(outcome);
  if (type >= kTypes || code >= kCodes) return;
  requests_[type][code].Add();
}

uint64_t Metrics::requests(uint64_t type, ErrorCode outcome) const {
  const auto code = static_cast<size_t>(outcome);
  if (type >= kTypes || code >= kCodes) return 0;
  return requests_[type][code].value();
}

namespace {

// Prometheus numbers: integers as such, others in the shortest form that
// reads back the same.
std::string Number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  // Prefer a shorter form when it is exact.
  for (int precision = 1; precision < 17; ++precision) {
    char shorter[32];
    std::snprintf(shorter, sizeof shorter, "%.*g", precision, v);
    if (std::strtod(shorter, nullptr) == v) return shorter;
  }
  return buf;
}

class Writer {
 public:
  void Header(const char* name, const char* type, const char* help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  void Sample(const std::string& name, double v,
              const std::string& labels = "") {
    out_ += name;
    if (!labels.empty()) out_ += "{" + labels + "}";
    out_ += ' ';
    out_ += Number(v);
    out_ += '\n';
  }
  void Single(const char* name, const char* type, const char* help, double v) {
    Header(name, type, help);
    Sample(name, v);
  }
  void Histo(const char* name, const char* help, const Histogram& h) {
    Header(name, "histogram", help);
    const std::string bucket = std::string(name) + "_bucket";
    for (size_t i = 0; i < h.bounds().size(); ++i) {
      Sample(bucket, static_cast<double>(h.cumulative(i)),
             "le=\"" + Number(h.bounds()[i]) + "\"");
    }
    Sample(bucket, static_cast<double>(h.cumulative(h.bounds().size())),
           "le=\"+Inf\"");
    Sample(std::string(name) + "_sum", h.sum());
    Sample(std::string(name) + "_count", static_cast<double>(h.count()));
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

}  // namespace

std::string RenderMetrics(const Metrics& m,
                          const std::optional<StoreTotals>& totals) {
  Writer w;
  w.Header("zchat_build_info", "gauge", "The broker's version.");
  w.Sample("zchat_build_info", 1, "version=\"0.1.0\"");
  w.Single("zchat_start_time_seconds", "gauge",
           "When the broker started, Unix time.",
           static_cast<double>(m.start_time_s));
  w.Single("zchat_connections", "gauge",
           "Client connections admitted and open now.",
           static_cast<double>(m.connections.value()));
  w.Single("zchat_connections_refused_total", "counter",
           "Connections refused at the connection cap (--max-connections).",
           static_cast<double>(m.connections_refused.value()));
  w.Single("zchat_sessions", "gauge", "Logged-in sessions now.",
           static_cast<double>(m.sessions.value()));
  w.Single("zchat_frames_received_total", "counter",
           "Frames received from clients.",
           static_cast<double>(m.frames_received.value()));
  w.Single("zchat_frames_sent_total", "counter",
           "Frames sent to clients, replies and pushes (a batch form of "
           "several messages or notices counts once).",
           static_cast<double>(m.frames_sent.value()));
  w.Single("zchat_partition_requests_total", "counter",
           "Requests run on a partition's thread (--partitions and "
           "--threads).",
           static_cast<double>(m.partition_requests.value()));
  w.Single("zchat_sends_dropped_total", "counter",
           "Frames not sent because the peer's queue was full "
           "(it is not reading).",
           static_cast<double>(m.sends_dropped.value()));

  w.Header("zchat_requests_total", "counter",
           "Requests answered, by type and outcome (ok, or the error code "
           "of the refusal; type \"undecoded\": frames that were not a "
           "request).");
  for (uint64_t type = 0; type <= kMessageTypeCount; ++type) {
    const std::string type_name =
        type == 0
            ? "undecoded"
            : std::string(MessageTypeName(static_cast<MessageType>(type)));
    for (uint16_t code = 0; code <= kMaxErrorCode; ++code) {
      const uint64_t n = m.requests(type, static_cast<ErrorCode>(code));
      if (n == 0) continue;
      const std::string outcome =
          code == 0 ? "ok"
                    : std::string(ErrorCodeName(static_cast<ErrorCode>(code)));
      w.Sample("zchat_requests_total", static_cast<double>(n),
               "type=\"" + type_name + "\",outcome=\"" + outcome + "\"");
    }
  }

  struct EventInfo {
    MessageEvent event;
    const char* name;
    const char* help;
  };
  static constexpr EventInfo kEvents[] = {
      {MessageEvent::kAccepted, "zchat_messages_accepted_total",
       "Messages accepted (stored for their recipient)."},
      {MessageEvent::kDeliveredLive, "zchat_messages_delivered_live_total",
       "Accepted messages pushed at once to a logged-in recipient."},
      {MessageEvent::kQueued, "zchat_messages_queued_total",
       "Accepted messages whose recipient was offline."},
      {MessageEvent::kFetched, "zchat_messages_fetched_total",
       "Messages pushed by FETCH_MESSAGES."},
      {MessageEvent::kConfirmed, "zchat_messages_confirmed_total",
       "Messages confirmed by their recipient (MESSAGE_RECEIPT)."},
  };
  for (const EventInfo& e : kEvents) {
    w.Single(
        e.name, "counter", e.help,
        static_cast<double>(m.messages[static_cast<size_t>(e.event)].value()));
  }
  if (totals) {
    w.Single("zchat_accounts", "gauge", "Accounts in the database.",
             static_cast<double>(totals->accounts));
    w.Single("zchat_queue_depth", "gauge",
             "Messages in the database not yet confirmed by their recipient.",
             static_cast<double>(totals->queued_messages));
    w.Single("zchat_notices_pending", "gauge",
             "Delivery notices not yet acknowledged by their sender.",
             static_cast<double>(totals->notices));
  }
  w.Single("zchat_hash_pool_depth", "gauge",
           "Password hashes (argon2id) queued or running.",
           static_cast<double>(m.hash_jobs.value()));
  w.Histo("zchat_batch_requests",
          "Requests per batch (one transaction, one commit).",
          m.batch_requests);
  w.Histo("zchat_commit_seconds",
          "Time to commit a batch that wrote (with --sync full, the fsync).",
          m.commit_seconds);
  return w.Take();
}

}  // namespace zchat
