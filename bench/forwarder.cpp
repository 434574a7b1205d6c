#include "bench/forwarder.h"

#include <signal.h>

#include <atomic>
#include <fstream>
#include <unordered_map>
#include <unordered_set>
#include <vector>
#include <zmq.hpp>

#include "messages/codec.h"

namespace zchat::bench {
namespace {

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }

struct Sent {
  std::string sender_route;
  std::string recipient;
  uint64_t client_msg_id;
};

}  // namespace

int RunForwarder(const std::string& bind, const std::string& endpoint_file) {
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);

  zmq::context_t ctx(1);
  ctx.set(zmq::ctxopt::max_sockets, 64);
  zmq::socket_t router(ctx, zmq::socket_type::router);
  router.set(zmq::sockopt::router_mandatory, 1);
  router.set(zmq::sockopt::sndhwm, 10'000);
  router.set(zmq::sockopt::rcvhwm, 10'000);
  router.set(zmq::sockopt::linger, 0);
  router.bind(bind);
  std::ofstream(endpoint_file)
      << router.get(zmq::sockopt::last_endpoint) << "\n";

  std::unordered_map<std::string, std::string> route_of;  // name -> route
  std::unordered_map<std::string, std::string> name_of;   // route -> name
  std::unordered_map<uint64_t, Sent> sent;                // id -> origin
  std::unordered_set<std::string> batched;  // routes with batch_pushes
  uint64_t next_id = 1;

  auto send = [&](const std::string& route, const Message& m) {
    std::string frame = Encode(m);
    try {
      router.send(zmq::buffer(route), zmq::send_flags::sndmore);
      router.send(zmq::buffer(frame), zmq::send_flags::dontwait);
    } catch (const zmq::error_t&) {
    }
  };

  while (!g_stop) {
    zmq::pollitem_t item{router.handle(), 0, ZMQ_POLLIN, 0};
    try {
      zmq::poll(&item, 1, std::chrono::milliseconds(200));
    } catch (const zmq::error_t&) {
      continue;
    }
    // As the broker does for its batches: a batch_pushes route's messages
    // of this round go out together at its end.
    std::vector<std::pair<std::string, DistributeMessage>> live;
    for (int n = 0; n < 256; ++n) {
      zmq::message_t id, frame;
      if (!router.recv(id, zmq::recv_flags::dontwait)) break;
      (void)router.recv(frame);
      std::string route = id.to_string();
      Result<Message> m = Decode(frame.to_string_view());
      if (!m.ok()) continue;
      const uint64_t req = m->request_id;
      if (auto* login = std::get_if<LoginRequest>(&m->body)) {
        route_of[login->username] = route;
        name_of[route] = login->username;
        if (login->batch_pushes) {
          batched.insert(route);
        } else {
          batched.erase(route);
        }
        send(route, {req, LoginSuccess{login->username, 0,
                                       std::string(kTokenBytes, 't')}});
      } else if (auto* create = std::get_if<CreateAccount>(&m->body)) {
        send(route, {req, CreateSuccess{create->username}});
      } else if (auto* s = std::get_if<SendMessage>(&m->body)) {
        // Either form; the batch form answered in one MESSAGE_PENDING.
        MessagePending pending;
        auto to = route_of.find(s->recipient);
        ForEachSent(*s, [&](const std::string& body, uint64_t cmid) {
          const uint64_t msg_id = next_id++;
          if (s->client_msg_ids.empty()) {
            pending = MessagePending{msg_id, cmid};
          } else {
            pending.message_ids.push_back(msg_id);
            pending.client_msg_ids.push_back(cmid);
          }
          if (to == route_of.end()) return;
          sent[msg_id] = Sent{route, s->recipient, cmid};
          if (!batched.count(to->second)) {
            send(to->second,
                 {0, DistributeMessage{msg_id, name_of[route], body, 0}});
            return;
          }
          DistributeMessage* d = nullptr;
          for (auto& [r, m] : live) {
            if (r == to->second) d = &m;
          }
          if (!d)
            d = &live.emplace_back(to->second, DistributeMessage{}).second;
          d->message_ids.push_back(msg_id);
          d->senders.push_back(name_of[route]);
          d->bodies.push_back(body);
          d->sent_ats_ms.push_back(1);
        });
        send(route, {req, std::move(pending)});
      } else if (auto* r = std::get_if<MessageReceipt>(&m->body)) {
        // As the broker does: a sender with batch_pushes hears of a
        // receipt's deliveries to one recipient in one frame.
        std::vector<std::pair<std::string, MessageSuccess>> runs;
        for (uint64_t id : ReceiptIds(*r)) {
          auto it = sent.find(id);
          if (it == sent.end()) continue;
          const Sent& origin = it->second;
          if (!batched.count(origin.sender_route)) {
            send(origin.sender_route,
                 {0,
                  MessageSuccess{id, origin.recipient, origin.client_msg_id}});
          } else {
            MessageSuccess* run = nullptr;
            for (auto& [route, s] : runs) {
              if (route == origin.sender_route &&
                  s.recipient == origin.recipient) {
                run = &s;
              }
            }
            if (!run) {
              run = &runs.emplace_back(origin.sender_route, MessageSuccess{})
                         .second;
              run->recipient = origin.recipient;
            }
            run->message_ids.push_back(id);
            run->client_msg_ids.push_back(origin.client_msg_id);
          }
          sent.erase(it);
        }
        for (auto& [route, s] : runs) {
          if (s.message_ids.size() == 1) {
            s = MessageSuccess{s.message_ids[0], s.recipient,
                               s.client_msg_ids[0]};
          }
          send(route, {0, std::move(s)});
        }
      } else if (std::holds_alternative<NoticeReceipt>(m->body)) {
        // Notices are not kept here: nothing to acknowledge, no reply.
      } else if (std::holds_alternative<Ping>(m->body)) {
        send(route, {req, Pong{}});
      } else {
        send(route, {req, Error{ErrorCode::kInvalidArgument, "baseline"}});
      }
    }
    for (auto& [route, d] : live) {
      if (d.message_ids.size() == 1) {
        d = DistributeMessage{d.message_ids[0], d.senders[0], d.bodies[0], 1};
      }
      send(route, {0, std::move(d)});
    }
  }
  return 0;
}

}  // namespace zchat::bench
