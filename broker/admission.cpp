#include "broker/admission.h"

#include <sys/resource.h>
#include <sys/socket.h>

#include <cstring>

#include "broker/log.h"

namespace zchat {
namespace {

// Descriptors kept for everything but client connections: the database and
// its WAL, libzmq's own (mailboxes, the listener), eventfds, logs.
constexpr int kReservedDescriptors = 64;

int DerivedCap() {
  rlimit lim{};
  getrlimit(RLIMIT_NOFILE, &lim);
  const auto soft = static_cast<int64_t>(lim.rlim_cur);
  return static_cast<int>(std::max<int64_t>(16, soft - kReservedDescriptors));
}

}  // namespace

Admission::Admission(zmq::context_t& context, zmq::socket_t& router,
                     int max_connections)
    : router_(router),
      monitor_(context, zmq::socket_type::pair),
      max_connections_(max_connections > 0 ? max_connections : DerivedCap()) {
  // A ZAP domain, and no ZAP handler: with a domain set, libzmq refuses
  // ZMTP 1.0 peers (which have no handshake to refuse, and would make any
  // byte stream a client); with no handler bound, it asks no one and keeps no
  // pipe per connection.
  router_.set(zmq::sockopt::zap_domain, "zchat");
  const std::string endpoint =
      "inproc://zchat-admission-" +
      std::to_string(reinterpret_cast<uintptr_t>(this));
  // Every connection that ends (closed by either side, a failed handshake,
  // the handshake timeout) reports DISCONNECTED with its descriptor, before
  // libzmq closes that descriptor: the next ACCEPTED on the same number is
  // always a new connection.
  zmq_socket_monitor(router_.handle(), endpoint.c_str(),
                     ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED);
  monitor_.set(zmq::sockopt::linger, 0);
  monitor_.connect(endpoint);
}

Admission::~Admission() { zmq_socket_monitor(router_.handle(), nullptr, 0); }

zmq::pollitem_t Admission::poll_item() {
  return zmq::pollitem_t{monitor_.handle(), 0, ZMQ_POLLIN, 0};
}

void Admission::Pump() {
  try {
    // All waiting events first: a connection whose close is among them is
    // already gone, and its descriptor may have been reused by a later one.
    events_.clear();
    zmq::message_t event;
    while (monitor_.recv(event, zmq::recv_flags::dontwait)) {
      zmq::message_t address;
      if (event.more()) (void)monitor_.recv(address);
      // libzmq 4.x: a 16-bit event number, then a 32-bit value (the fd).
      if (event.size() < 6) continue;
      uint16_t what;
      int32_t fd;
      std::memcpy(&what, event.data(), sizeof what);
      std::memcpy(&fd, static_cast<const char*>(event.data()) + 2, sizeof fd);
      if (what == ZMQ_EVENT_ACCEPTED || what == ZMQ_EVENT_DISCONNECTED) {
        events_.push_back({what == ZMQ_EVENT_ACCEPTED, fd});
      }
    }
    last_close_.clear();
    for (size_t i = 0; i < events_.size(); ++i) {
      if (!events_[i].accepted) last_close_[events_[i].fd] = i;
    }
    for (size_t i = 0; i < events_.size(); ++i) {
      const int fd = events_[i].fd;
      if (!events_[i].accepted) {
        OnClosed(fd);
        continue;
      }
      auto close = last_close_.find(fd);
      OnAccepted(fd, close != last_close_.end() && close->second > i);
    }
  } catch (const zmq::error_t& e) {
    Log(LogLevel::kWarn, std::string("admission: ") + e.what());
  }
}

bool Admission::Refused(int fd) {
  if (refused_fds_.empty() || !refused_fds_.contains(fd)) return false;
  // The refused connection may have closed and its descriptor gone to a new
  // peer whose frame this is. Its close was reported before that peer was
  // accepted, so it is waiting in the monitor by now.
  Pump();
  return refused_fds_.contains(fd);
}

void Admission::OnAccepted(int fd, bool gone) {
  if (connections_ < max_connections_) {
    ++connections_;
    if (connections_ < max_connections_ * 9 / 10) warned_ = false;
    return;
  }
  // Past the cap.
  ++refused_;
  refused_fds_.insert(fd);
  // Ends that connection: libzmq reads the end of stream and closes the
  // descriptor itself (never closed here). Its close was not among the
  // events read, so the number is still its own, unless it closed in the
  // last microseconds and a newer connection took the number; that one is
  // then cut too and its client reconnects.
  if (!gone) (void)shutdown(fd, SHUT_RDWR);
  if (!warned_) {
    Log(LogLevel::kWarn, "at " + std::to_string(max_connections_) +
                             " connections: refusing new peers");
    warned_ = true;
  }
}

void Admission::OnClosed(int fd) {
  if (refused_fds_.erase(fd) > 0) return;
  if (connections_ > 0) --connections_;
}

}  // namespace zchat
