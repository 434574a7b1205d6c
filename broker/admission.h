// Admission: keeps the number of client connections under a cap, so that
// the process never runs out of file descriptors. (At the descriptor limit,
// libzmq's accept fails with EMFILE and its I/O thread spins on the still
// readable listening socket.) A ZAP handler, consulted by libzmq during
// every handshake, admits or refuses the new connection; a socket monitor
// counts closes. Raw TCP peers that never finish a handshake are not
// counted; libzmq closes them after the handshake timeout. Owned and polled
// by the loop.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <zmq.hpp>

namespace zchat {

class Admission {
 public:
  // Attaches to `router` (before it binds): sets its ZAP domain and starts
  // monitoring it. `max_connections` 0: derived from the descriptor limit.
  Admission(zmq::context_t& context, zmq::socket_t& router,
            int max_connections);
  ~Admission();

  std::array<zmq::pollitem_t, 2> poll_items();
  // Handles waiting monitor events and ZAP requests; never blocks.
  void Pump();

  int connections() const { return connections_; }
  int max_connections() const { return max_connections_; }
  uint64_t refused() const { return refused_; }

 private:
  void Answer(zmq::message_t& request_id, bool admit);

  zmq::socket_t& router_;
  zmq::socket_t zap_;      // REP on inproc://zeromq.zap.01
  zmq::socket_t monitor_;  // PAIR receiving router_'s events
  int max_connections_;
  int connections_ = 0;      // admitted and not yet closed
  int refused_pending_ = 0;  // refused peers whose close is still to come
  uint64_t refused_ = 0;
  bool warned_ = false;
};

}  // namespace zchat
