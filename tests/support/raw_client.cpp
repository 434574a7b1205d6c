#include "tests/support/raw_client.h"

#include <atomic>
#include <cstring>
#include <iostream>
#include <mutex>

namespace zchat::testing {
namespace {

std::mutex g_reporter_mutex;
std::atomic<uint64_t> g_problems{0};

// Constructed on first use: a reporter may be installed from another
// translation unit's static initializer, before this one's would have run.
ProblemReporter& Reporter() {
  static ProblemReporter reporter;
  return reporter;
}

}  // namespace

void SetProblemReporter(ProblemReporter reporter) {
  std::lock_guard lock(g_reporter_mutex);
  Reporter() = std::move(reporter);
}

void ReportProblem(const std::string& what) {
  ++g_problems;
  std::lock_guard lock(g_reporter_mutex);
  if (Reporter()) {
    Reporter()(what);
  } else {
    std::cerr << "raw client: " << what << "\n";
  }
}

uint64_t ProblemCount() { return g_problems.load(); }

RawClient::RawClient(zmq::context_t& ctx, const std::string& endpoint,
                     const RawClientOptions& options)
    : socket_(ctx, zmq::socket_type::dealer) {
  socket_.set(zmq::sockopt::linger, 0);
  if (options.sndhwm >= 0) socket_.set(zmq::sockopt::sndhwm, options.sndhwm);
  if (options.rcvhwm >= 0) socket_.set(zmq::sockopt::rcvhwm, options.rcvhwm);
  if (options.reconnect_ivl_ms >= 0) {
    socket_.set(zmq::sockopt::reconnect_ivl, options.reconnect_ivl_ms);
  }
  if (options.monitor) {
    // The monitor's end is connected before the socket connects, so that
    // no event is dropped for want of a reader.
    static std::atomic<uint64_t> next{0};
    const std::string address =
        "inproc://raw-client-monitor-" + std::to_string(next++);
    if (zmq_socket_monitor(socket_.handle(), address.c_str(), ZMQ_EVENT_ALL) !=
        0) {
      throw zmq::error_t();
    }
    monitor_.emplace(ctx, zmq::socket_type::pair);
    monitor_->set(zmq::sockopt::linger, 0);
    monitor_->connect(address);
  }
  if (!endpoint.empty()) socket_.connect(endpoint);
}

RawClient::~RawClient() {
  if (monitor_) {
    zmq_socket_monitor(socket_.handle(), nullptr, 0);
    monitor_->close();
  }
}

uint64_t RawClient::Send(Body body, zmq::send_flags flags) {
  const uint64_t req = next_req_++;
  SendRaw(Encode(Message{req, std::move(body)}), flags);
  return req;
}

bool RawClient::SendRaw(std::string_view frame, zmq::send_flags flags) {
  return socket_.send(zmq::buffer(frame), flags).has_value();
}

bool RawClient::WaitReadable(Millis wait) {
  zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
  return zmq::poll(&item, 1, wait) > 0;
}

size_t RawClient::Drain(const std::function<void(Message&)>& on) {
  size_t frames = 0;
  zmq::message_t frame;
  while (socket_.recv(frame, zmq::recv_flags::dontwait)) {
    ++frames;
    Result<Message> m = Decode(frame.to_string_view());
    if (!m.ok()) {
      ReportProblem("undecodable frame from the broker: " +
                    m.status().ToString());
      continue;
    }
    on(*m);
  }
  return frames;
}

bool RawClient::Pump(Millis wait) {
  if (!WaitReadable(wait)) return false;
  Drain([this](Message& m) {
    (m.request_id == 0 ? pushes_ : replies_).push_back(std::move(m));
  });
  return true;
}

std::optional<Message> RawClient::Await(uint64_t req, Millis timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    for (auto it = replies_.begin(); it != replies_.end(); ++it) {
      if (it->request_id == req) {
        Message m = std::move(*it);
        replies_.erase(it);
        return m;
      }
    }
    const auto left = std::chrono::duration_cast<Millis>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    Pump(left);
  }
}

void RawClient::ReadEvents() {
  zmq::message_t head, address;
  while (monitor_->recv(head, zmq::recv_flags::dontwait)) {
    // Two frames: the event (16 bits) and its value (32 bits), then the
    // endpoint.
    if (head.more()) (void)monitor_->recv(address);
    if (head.size() < sizeof(uint16_t)) continue;
    uint16_t event = 0;
    std::memcpy(&event, head.data(), sizeof event);
    ++events_seen_[event];
  }
}

bool RawClient::AwaitEvent(uint16_t event, Millis timeout) {
  if (!monitor_) {
    ReportProblem("AwaitEvent on a RawClient made without a monitor");
    return false;
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const int before = events_seen(event);
  for (;;) {
    ReadEvents();
    if (events_seen(event) > before) return true;
    const auto left = std::chrono::duration_cast<Millis>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    zmq::pollitem_t item{monitor_->handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, left);
  }
}

int RawClient::events_seen(uint16_t event) const {
  auto it = events_seen_.find(event);
  return it == events_seen_.end() ? 0 : it->second;
}

}  // namespace zchat::testing
