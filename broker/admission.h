// Admission: keeps the number of client connections under a cap, so that
// the process never runs out of file descriptors. (At the descriptor limit,
// libzmq's accept fails with EMFILE and its I/O thread spins on the still
// readable listening socket.) A socket monitor reports every accepted
// connection (with its descriptor) and every close. A connection accepted
// past the cap is shut down at once (shutdown(2) on its descriptor; libzmq
// then sees an end of stream and closes it as if the peer had gone), and
// frames that reached the socket from it before that are dropped unread
// (`Refused`). Raw TCP peers count from their accept until libzmq closes them
// (at the latest after the handshake timeout): they hold a descriptor too.
// Owned and polled by the loop.
//
// No ZAP handler: libzmq keeps a pipe pair to the ZAP endpoint for the whole
// life of every connection once a handler is bound (about 10 KiB per client;
// docs/performance.md section 4).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>
#include <zmq.hpp>

namespace zchat {

class Admission {
 public:
  // Attaches to `router` (before it binds) by monitoring it.
  // `max_connections` 0: derived from the descriptor limit.
  Admission(zmq::context_t& context, zmq::socket_t& router,
            int max_connections);
  ~Admission();

  zmq::pollitem_t poll_item();
  // Handles waiting monitor events; never blocks.
  void Pump();

  // Whether a frame that came on connection descriptor `fd` is to be dropped:
  // the connection was refused and has not closed yet.
  bool Refused(int fd);

  int connections() const { return connections_; }
  int max_connections() const { return max_connections_; }
  uint64_t refused() const { return refused_; }

 private:
  struct Event {
    bool accepted;  // else closed
    int fd;
  };
  // `gone`: its close is among the events being handled.
  void OnAccepted(int fd, bool gone);
  void OnClosed(int fd);

  zmq::socket_t& router_;
  zmq::socket_t monitor_;  // PAIR receiving router_'s events
  int max_connections_;
  int connections_ = 0;                  // admitted and not yet closed
  std::unordered_set<int> refused_fds_;  // refused, close still to come
  uint64_t refused_ = 0;
  std::vector<Event> events_;                   // scratch for Pump
  std::unordered_map<int, size_t> last_close_;  // scratch for Pump
  bool warned_ = false;
};

}  // namespace zchat
