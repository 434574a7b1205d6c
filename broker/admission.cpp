#include "broker/admission.h"

#include <sys/resource.h>

#include <cstring>
#include <vector>

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
      zap_(context, zmq::socket_type::rep),
      monitor_(context, zmq::socket_type::pair),
      max_connections_(max_connections > 0 ? max_connections : DerivedCap()) {
  zap_.set(zmq::sockopt::linger, 0);
  zap_.bind("inproc://zeromq.zap.01");
  router_.set(zmq::sockopt::zap_domain, "zchat");
  const std::string endpoint =
      "inproc://zchat-admission-" +
      std::to_string(reinterpret_cast<uintptr_t>(this));
  zmq_socket_monitor(router_.handle(), endpoint.c_str(),
                     ZMQ_EVENT_DISCONNECTED);
  monitor_.set(zmq::sockopt::linger, 0);
  monitor_.connect(endpoint);
}

Admission::~Admission() { zmq_socket_monitor(router_.handle(), nullptr, 0); }

std::array<zmq::pollitem_t, 2> Admission::poll_items() {
  return {zmq::pollitem_t{zap_.handle(), 0, ZMQ_POLLIN, 0},
          zmq::pollitem_t{monitor_.handle(), 0, ZMQ_POLLIN, 0}};
}

void Admission::Pump() {
  try {
    // Closes first, so that their room is free for the handshakes below.
    zmq::message_t event;
    while (monitor_.recv(event, zmq::recv_flags::dontwait)) {
      zmq::message_t address;
      if (event.more()) (void)monitor_.recv(address);
      if (event.size() < 2) continue;
      uint16_t what;
      std::memcpy(&what, event.data(), sizeof what);
      if (what != ZMQ_EVENT_DISCONNECTED) continue;
      // A close is first taken for one of the refused peers (each of them
      // closes soon after its refusal), else for an admitted one. A
      // misattribution corrects itself when the other close arrives.
      if (refused_pending_ > 0) {
        --refused_pending_;
      } else if (connections_ > 0) {
        --connections_;
      }
    }
    // ZAP (RFC 27): version, request id, domain, address, identity,
    // mechanism, credentials...
    std::vector<zmq::message_t> request;
    for (;;) {
      request.clear();
      zmq::message_t part;
      if (!zap_.recv(part, zmq::recv_flags::dontwait)) break;
      bool more = part.more();
      request.push_back(std::move(part));
      while (more) {
        zmq::message_t next;
        (void)zap_.recv(next);
        more = next.more();
        request.push_back(std::move(next));
      }
      if (request.size() < 2) continue;
      const bool admit = connections_ < max_connections_;
      if (admit) {
        ++connections_;
      } else {
        ++refused_;
        ++refused_pending_;
        if (!warned_) {
          Log(LogLevel::kWarn, "at " + std::to_string(max_connections_) +
                                   " connections: refusing new peers");
          warned_ = true;
        }
      }
      if (admit && connections_ < max_connections_ * 9 / 10) warned_ = false;
      Answer(request[1], admit);
    }
  } catch (const zmq::error_t& e) {
    Log(LogLevel::kWarn, std::string("admission: ") + e.what());
  }
}

void Admission::Answer(zmq::message_t& request_id, bool admit) {
  zap_.send(zmq::str_buffer("1.0"), zmq::send_flags::sndmore);
  zap_.send(request_id, zmq::send_flags::sndmore);
  zap_.send(admit ? zmq::str_buffer("200") : zmq::str_buffer("400"),
            zmq::send_flags::sndmore);
  zap_.send(admit ? zmq::str_buffer("OK") : zmq::str_buffer("too many peers"),
            zmq::send_flags::sndmore);
  zap_.send(zmq::str_buffer(""), zmq::send_flags::sndmore);  // user id
  zap_.send(zmq::str_buffer(""), zmq::send_flags::none);     // metadata
}

}  // namespace zchat
