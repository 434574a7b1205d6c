// RawClient: a bare DEALER speaking the wire protocol, for tests that drive
// the real broker over TCP. Replies are matched by request id; pushes are
// kept in arrival order. Every wait has a deadline.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <deque>
#include <optional>
#include <zmq.hpp>

#include "messages/codec.h"

namespace zchat::testing {

class RawClient {
 public:
  RawClient(zmq::context_t& ctx, const std::string& endpoint)
      : socket_(ctx, zmq::socket_type::dealer) {
    socket_.set(zmq::sockopt::linger, 0);
    if (!endpoint.empty()) socket_.connect(endpoint);  // "": connect later
  }

  zmq::socket_t& socket() { return socket_; }

  uint64_t Send(Body body) {
    const uint64_t req = next_req_++;
    SendRaw(Encode(Message{req, std::move(body)}));
    return req;
  }
  void SendRaw(const std::string& frame) {
    socket_.send(zmq::buffer(frame), zmq::send_flags::none);
  }

  // Reads whatever is waiting, up to `wait`. Returns false on timeout.
  bool Pump(std::chrono::milliseconds wait) {
    zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, wait) <= 0) return false;
    zmq::message_t msg;
    while (socket_.recv(msg, zmq::recv_flags::dontwait)) {
      Result<Message> m = Decode(msg.to_string_view());
      EXPECT_TRUE(m.ok()) << m.status().ToString();
      if (!m.ok()) continue;
      if (m->request_id == 0) {
        pushes_.push_back(std::move(*m));
      } else {
        replies_.push_back(std::move(*m));
      }
    }
    return true;
  }

  // Handles whatever arrived without blocking.
  void Poll() { Pump(std::chrono::milliseconds(0)); }

  std::optional<Message> Await(uint64_t req, std::chrono::milliseconds timeout =
                                                 std::chrono::seconds(10)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      for (auto it = replies_.begin(); it != replies_.end(); ++it) {
        if (it->request_id == req) {
          Message m = std::move(*it);
          replies_.erase(it);
          return m;
        }
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      Pump(left);
    }
  }

  template <class T>
  T Call(Body body) {
    std::optional<Message> m = Await(Send(std::move(body)));
    if (!m) {
      ADD_FAILURE() << "no reply within the deadline";
      return T{};
    }
    if (!std::holds_alternative<T>(m->body)) {
      std::string detail;
      if (auto* e = std::get_if<Error>(&m->body)) detail = e->reason;
      ADD_FAILURE() << "expected " << MessageTypeName(T::kType) << ", got "
                    << MessageTypeName(TypeOf(m->body)) << " " << detail;
      return T{};
    }
    return std::get<T>(m->body);
  }

  // Waits for the next push of type T (other pushes stay queued).
  template <class T>
  std::optional<T> AwaitPush(
      std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      for (auto it = pushes_.begin(); it != pushes_.end(); ++it) {
        if (auto* p = std::get_if<T>(&it->body)) {
          T out = std::move(*p);
          pushes_.erase(it);
          return out;
        }
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      Pump(left);
    }
  }

  std::deque<Message>& pushes() { return pushes_; }

 private:
  zmq::socket_t socket_;
  uint64_t next_req_ = 1;
  std::deque<Message> replies_;
  std::deque<Message> pushes_;
};

}  // namespace zchat::testing
