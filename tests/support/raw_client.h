// RawClient: a bare DEALER speaking the wire protocol (frames through
// messages/codec.h), for the tests and the benchmark that drive the real
// broker over TCP. Replies are matched by request id; pushes are kept in
// arrival order. Every wait has a deadline.
//
// What a test would call a failure (no reply in time, a reply of another
// type, a frame that does not decode) goes to the problem reporter: by
// default stderr; tests linked with tests/support/gtest_reporter.cpp turn
// each into a GoogleTest failure. ProblemCount() counts them either way.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <zmq.hpp>

#include "messages/codec.h"

namespace zchat::testing {

using ProblemReporter = std::function<void(const std::string&)>;
void SetProblemReporter(ProblemReporter reporter);
void ReportProblem(const std::string& what);
uint64_t ProblemCount();

struct RawClientOptions {
  int sndhwm = -1;  // -1: libzmq's default
  int rcvhwm = -1;
  int reconnect_ivl_ms = -1;  // -1: libzmq's default (100 ms)
  // Watch the socket's connection events (AwaitEvent).
  bool monitor = false;
};

class RawClient {
 public:
  using Millis = std::chrono::milliseconds;
  static constexpr Millis kDefaultWait = std::chrono::seconds(10);

  // Connects to `endpoint` at once; "" leaves that to the caller (after
  // setting socket options such as a routing id).
  RawClient(zmq::context_t& ctx, const std::string& endpoint,
            const RawClientOptions& options = {});
  ~RawClient();
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  zmq::socket_t& socket() { return socket_; }

  // Encodes and sends `body` under the next request id, which it returns.
  // With dontwait a message the socket cannot take now is dropped.
  uint64_t Send(Body body, zmq::send_flags flags = zmq::send_flags::none);
  // Sends one frame as it is. False if the socket did not take it.
  bool SendRaw(std::string_view frame,
               zmq::send_flags flags = zmq::send_flags::none);

  // Waits up to `wait` until something can be read.
  bool WaitReadable(Millis wait);
  // Hands every message waiting in the socket to `on`, without blocking
  // (and without queueing it here). Returns how many frames were read.
  size_t Drain(const std::function<void(Message&)>& on);
  // Queues whatever arrives within `wait` (replies by request id, pushes in
  // order). False if nothing came.
  bool Pump(Millis wait);
  // Queues whatever has arrived, without blocking.
  void Poll() { Pump(Millis(0)); }

  // The reply to request `req`, or nullopt after `timeout`.
  std::optional<Message> Await(uint64_t req, Millis timeout = kDefaultWait);

  // Sends `body` and returns its reply, which must be a T: anything else
  // (or no reply in time) is reported as a problem and gives T{}.
  template <class T>
  T Call(Body body, Millis timeout = kDefaultWait) {
    std::optional<Message> m = Await(Send(std::move(body)), timeout);
    if (!m) {
      ReportProblem("no reply within the deadline");
      return T{};
    }
    if (!std::holds_alternative<T>(m->body)) {
      std::string detail;
      if (auto* e = std::get_if<Error>(&m->body)) detail = e->reason;
      ReportProblem("expected " + std::string(MessageTypeName(T::kType)) +
                    ", got " + std::string(MessageTypeName(TypeOf(m->body))) +
                    " " + detail);
      return T{};
    }
    return std::get<T>(std::move(m->body));
  }

  // Waits for the next push of type T (other pushes stay queued).
  template <class T>
  std::optional<T> AwaitPush(Millis timeout = kDefaultWait) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      for (auto it = pushes_.begin(); it != pushes_.end(); ++it) {
        if (auto* p = std::get_if<T>(&it->body)) {
          T out = std::move(*p);
          pushes_.erase(it);
          return out;
        }
      }
      const auto left = std::chrono::duration_cast<Millis>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      Pump(left);
    }
  }

  std::deque<Message>& pushes() { return pushes_; }

  // With options.monitor: waits up to `timeout` for the socket to report
  // `event` (ZMQ_EVENT_CONNECTED, ZMQ_EVENT_DISCONNECTED...). Events seen
  // while waiting are counted in events_seen().
  bool AwaitEvent(uint16_t event, Millis timeout);
  // How many times `event` has been seen so far (by AwaitEvent).
  int events_seen(uint16_t event) const;

 private:
  void ReadEvents();

  zmq::socket_t socket_;
  std::optional<zmq::socket_t> monitor_;
  std::map<uint16_t, int> events_seen_;
  uint64_t next_req_ = 1;
  std::deque<Message> replies_;
  std::deque<Message> pushes_;
};

}  // namespace zchat::testing
