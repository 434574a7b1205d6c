#include "client/client.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <random>

#include "messages/codec.h"

namespace zchat {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kMonitorEvents =
    ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED;

uint64_t RandomStart() {
  // Unique per sender account across client restarts (docs/protocol.md):
  // a random 62-bit start, then a counter.
  std::random_device rd;
  uint64_t v = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  return (v >> 2) | 1;
}

}  // namespace

namespace {

std::vector<std::string> SplitEndpoints(const std::string& list) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    const size_t comma = list.find(',', start);
    std::string one = list.substr(
        start, comma == std::string::npos ? std::string::npos : comma - start);
    while (!one.empty() && one.front() == ' ') one.erase(0, 1);
    while (!one.empty() && one.back() == ' ') one.pop_back();
    out.push_back(std::move(one));
    if (comma == std::string::npos) return out;
    start = comma + 1;
  }
}

}  // namespace

Status Client::CheckEndpoints(const std::string& endpoints) {
  zmq::context_t context(1);
  for (const std::string& e : SplitEndpoints(endpoints)) {
    if (e.empty()) {
      return Status(ErrorCode::kInvalidArgument,
                    "an empty endpoint in '" + endpoints + "'");
    }
    zmq::socket_t probe(context, zmq::socket_type::dealer);
    probe.set(zmq::sockopt::linger, 0);
    try {
      probe.connect(e);
    } catch (const zmq::error_t& err) {
      return Status(ErrorCode::kInvalidArgument,
                    e + ": not a usable ZeroMQ endpoint (" + err.what() + ")");
    }
  }
  return Status::Ok();
}

Client::Client(ClientOptions options)
    : options_(std::move(options)),
      own_context_(std::make_unique<zmq::context_t>(1)),
      context_(*own_context_),
      next_client_msg_id_(RandomStart()) {
  Connect();
}

Client::Client(zmq::context_t& context, ClientOptions options)
    : options_(std::move(options)),
      context_(context),
      next_client_msg_id_(RandomStart()) {
  Connect();
}

Client::~Client() {
  if (socket_) zmq_socket_monitor(socket_.handle(), nullptr, 0);
  monitor_.close();
  socket_.close();
}

void Client::Connect() {
  if (endpoints_.empty()) endpoints_ = SplitEndpoints(options_.endpoint);
  if (socket_) {
    zmq_socket_monitor(socket_.handle(), nullptr, 0);
    monitor_.close();
    socket_.close();
  }
  connected_ = false;
  down_since_ = Clock::now();
  socket_ = zmq::socket_t(context_, zmq::socket_type::dealer);
  socket_.set(zmq::sockopt::linger, 0);
  // Nothing is queued for a connection that is not up: requests wait in
  // in_flight_ and go out once the session is back.
  socket_.set(zmq::sockopt::immediate, 1);
  socket_.set(zmq::sockopt::reconnect_ivl,
              static_cast<int>(options_.reconnect_min.count()));
  socket_.set(zmq::sockopt::reconnect_ivl_max,
              static_cast<int>(options_.reconnect_max.count()));
  socket_.set(zmq::sockopt::heartbeat_ivl, 10'000);
  socket_.set(zmq::sockopt::heartbeat_timeout, 30'000);
  if (!options_.server_key.empty()) {
    char public_key[41];
    char secret_key[41];
    // Encryption was asked for: no key pair, no connection (never a
    // fallback to plain text).
    if (zmq_curve_keypair(public_key, secret_key) != 0) throw zmq::error_t();
    socket_.set(zmq::sockopt::curve_serverkey, options_.server_key);
    socket_.set(zmq::sockopt::curve_publickey, std::string(public_key));
    socket_.set(zmq::sockopt::curve_secretkey, std::string(secret_key));
  }
  // A new name for each socket, counted over the process: the old
  // monitor's may not be released yet, and a Client made where an earlier
  // one lived (in a loop, say) must not reuse that one's name.
  static std::atomic<uint64_t> sockets_made{0};
  const std::string monitor_endpoint =
      "inproc://zchat-client-monitor-" +
      std::to_string(sockets_made.fetch_add(1, std::memory_order_relaxed));
  zmq_socket_monitor(socket_.handle(), monitor_endpoint.c_str(),
                     kMonitorEvents);
  monitor_ = zmq::socket_t(context_, zmq::socket_type::pair);
  monitor_.set(zmq::sockopt::linger, 0);
  monitor_.connect(monitor_endpoint);
  socket_.connect(endpoints_[current_]);
  last_send_ = Clock::now();
}

void Client::MaybeFailover() {
  if (connected_ || endpoints_.size() < 2 ||
      Clock::now() - down_since_ < options_.failover_after) {
    return;
  }
  current_ = (current_ + 1) % endpoints_.size();
  for (auto& [id, request] : in_flight_) request.sent = false;
  if (logged_in_) {
    logged_in_ = false;
    session_lost_ = true;
  }
  // A relogin that was waiting is sent again after the next handshake.
  if (relogin_request_ != 0) {
    in_flight_.erase(relogin_request_);
    relogin_request_ = 0;
  }
  events_.push_back(ConnectionEvent{ConnectionEvent::Kind::kFailover,
                                    "trying " + endpoints_[current_]});
  try {
    Connect();
  } catch (const zmq::error_t&) {
    // CheckEndpoints vets the list; if one fails anyway, the next round of
    // failover moves past it.
    down_since_ = Clock::now();
  }
}

void Client::SendFrame(uint64_t request_id, const Body& body) {
  auto it = in_flight_.find(request_id);
  if (!connected_) return;  // sent when the connection comes up
  const std::string frame = Encode(Message{request_id, body});
  try {
    if (socket_.send(zmq::buffer(frame), zmq::send_flags::dontwait)) {
      if (it != in_flight_.end()) it->second.sent = true;
      last_send_ = Clock::now();
    }
  } catch (const zmq::error_t&) {
    // Left unsent; ResendInFlight tries again after the next connect.
  }
}

uint64_t Client::Start(Body request) {
  const uint64_t id = next_request_id_++;
  in_flight_[id] = InFlight{request, false, false};
  if (!session_lost_) SendFrame(id, request);
  return id;
}

Result<Message> Client::Wait(uint64_t request_id) {
  const auto deadline = Clock::now() + options_.request_timeout;
  for (;;) {
    Drain();
    if (auto it = replies_.find(request_id); it != replies_.end()) {
      Message reply = std::move(it->second);
      replies_.erase(it);
      return reply;
    }
    if (!in_flight_.count(request_id)) {
      return Status(ErrorCode::kInvalidArgument,
                    "no request " + std::to_string(request_id) + " waiting");
    }
    if (Clock::now() >= deadline) {
      in_flight_.erase(request_id);
      return Status(ErrorCode::kTimeout,
                    "no reply from " + options_.endpoint + " within " +
                        std::to_string(options_.request_timeout.count()) +
                        " ms");
    }
    MaybeFailover();
    MaybePing();
    WaitReadable(deadline);
  }
}

template <class T>
Result<T> Client::Call(Body request) {
  Result<Message> reply = Wait(Start(std::move(request)));
  if (!reply.ok()) return reply.status();
  if (auto* value = std::get_if<T>(&reply->body)) return std::move(*value);
  return FailureOf(*reply);
}

Status Client::FailureOf(const Message& reply) const {
  return std::visit(
      [](const auto& body) -> Status {
        using T = std::decay_t<decltype(body)>;
        if constexpr (std::is_same_v<T, CreateFailure> ||
                      std::is_same_v<T, LoginFailure> ||
                      std::is_same_v<T, MessageFailure> ||
                      std::is_same_v<T, DeletionFailure> ||
                      std::is_same_v<T, Error>) {
          return Status(body.code, body.reason);
        } else {
          return Status(
              ErrorCode::kInternal,
              "unexpected reply " + std::string(MessageTypeName(T::kType)));
        }
      },
      reply.body);
}

Result<CreateSuccess> Client::CreateAccount(const std::string& username,
                                            const std::string& password) {
  return Call<CreateSuccess>(zchat::CreateAccount{username, password});
}

Result<LoginSuccess> Client::Login(const std::string& username,
                                   const std::string& password) {
  Result<LoginSuccess> ok = Call<LoginSuccess>(
      LoginRequest{username, password, std::nullopt, options_.batch_pushes});
  if (ok.ok()) {
    logged_in_ = true;
    username_ = ok->username;
    token_ = ok->token;
  }
  return ok;
}

Result<LoginSuccess> Client::Resume(const std::string& username,
                                    const std::string& token) {
  Result<LoginSuccess> ok = Call<LoginSuccess>(
      LoginRequest{username, std::nullopt, token, options_.batch_pushes});
  if (ok.ok()) {
    logged_in_ = true;
    username_ = ok->username;
    token_ = ok->token;
  }
  return ok;
}

Status Client::Logout() {
  Result<LogoutSuccess> ok = Call<LogoutSuccess>(zchat::Logout{});
  if (!ok.ok()) return ok.status();
  logged_in_ = false;
  token_.clear();
  return Status::Ok();
}

Result<AccountList> Client::ListAccounts(std::optional<std::string> pattern,
                                         std::optional<uint64_t> limit,
                                         std::optional<std::string> cursor) {
  return Call<AccountList>(
      zchat::ListAccounts{std::move(pattern), limit, std::move(cursor)});
}

Result<MessagePending> Client::Send(const std::string& recipient,
                                    const std::string& body) {
  return Call<MessagePending>(
      SendMessage{recipient, body, next_client_msg_id_++});
}

Result<MessagePending> Client::SendMany(
    const std::string& recipient, const std::vector<std::string>& bodies) {
  if (bodies.empty() || bodies.size() > kMaxSendItems) {
    return Status(ErrorCode::kInvalidArgument,
                  "SendMany takes 1 to " + std::to_string(kMaxSendItems) +
                      " bodies; got " + std::to_string(bodies.size()));
  }
  SendMessage send;
  send.recipient = recipient;
  send.bodies = bodies;
  for (size_t i = 0; i < bodies.size(); ++i) {
    send.client_msg_ids.push_back(next_client_msg_id_++);
  }
  return Call<MessagePending>(std::move(send));
}

Result<FetchResult> Client::Fetch(std::optional<uint64_t> limit) {
  return Call<FetchResult>(FetchMessages{limit});
}

void Client::Confirm(uint64_t message_id) {
  const uint64_t id = next_request_id_++;
  in_flight_[id] = InFlight{MessageReceipt{message_id}, true, false};
  SendFrame(id, in_flight_[id].body);
}

Result<FetchResult> Client::FetchNotices(std::optional<uint64_t> limit) {
  return Call<FetchResult>(zchat::FetchNotices{limit});
}

void Client::AcknowledgeNotice(uint64_t message_id) {
  const uint64_t id = next_request_id_++;
  in_flight_[id] = InFlight{NoticeReceipt{message_id}, true, false};
  SendFrame(id, in_flight_[id].body);
}

namespace {

// `ids` in receipts of type R, kMaxReceiptIds each.
template <class R>
std::vector<R> InReceipts(const std::vector<uint64_t>& ids) {
  std::vector<R> out;
  for (size_t from = 0; from < ids.size(); from += kMaxReceiptIds) {
    const size_t to = std::min(ids.size(), from + kMaxReceiptIds);
    R receipt;
    receipt.message_ids.assign(ids.begin() + from, ids.begin() + to);
    out.push_back(std::move(receipt));
  }
  return out;
}

}  // namespace

void Client::ConfirmAll(const std::vector<uint64_t>& message_ids) {
  for (MessageReceipt& receipt : InReceipts<MessageReceipt>(message_ids)) {
    const uint64_t id = next_request_id_++;
    in_flight_[id] = InFlight{std::move(receipt), true, false};
    SendFrame(id, in_flight_[id].body);
  }
}

void Client::AcknowledgeNotices(const std::vector<uint64_t>& message_ids) {
  for (NoticeReceipt& receipt : InReceipts<NoticeReceipt>(message_ids)) {
    const uint64_t id = next_request_id_++;
    in_flight_[id] = InFlight{std::move(receipt), true, false};
    SendFrame(id, in_flight_[id].body);
  }
}

Result<DeletionSuccess> Client::DeleteAccount(bool force, uint64_t* pending) {
  Result<Message> reply = Wait(Start(DeletionRequest{force}));
  if (!reply.ok()) return reply.status();
  if (auto* ok = std::get_if<DeletionSuccess>(&reply->body)) {
    logged_in_ = false;
    token_.clear();
    return *ok;
  }
  if (auto* fail = std::get_if<DeletionFailure>(&reply->body);
      fail && pending) {
    *pending = fail->pending;
  }
  return FailureOf(*reply);
}

Status Client::Ping() {
  Result<Pong> ok = Call<Pong>(zchat::Ping{});
  return ok.ok() ? Status::Ok() : ok.status();
}

std::optional<Event> Client::NextEvent(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    Drain();
    if (!events_.empty()) {
      Event event = std::move(events_.front());
      events_.pop_front();
      // The application has the message or notice now: confirm it.
      if (auto* m = std::get_if<DistributeMessage>(&event)) {
        seen_messages_.MarkHandedOver(m->message_id);
        if (options_.auto_receipt) Confirm(m->message_id);
      } else if (auto* s = std::get_if<MessageSuccess>(&event)) {
        seen_notices_.MarkHandedOver(s->message_id);
        if (options_.auto_receipt) AcknowledgeNotice(s->message_id);
      } else if (auto* u = std::get_if<MessageUndeliverable>(&event)) {
        seen_notices_.MarkHandedOver(u->message_id);
        if (options_.auto_receipt) AcknowledgeNotice(u->message_id);
      }
      return event;
    }
    if (Clock::now() >= deadline) return std::nullopt;
    MaybeFailover();
    MaybePing();
    WaitReadable(deadline);
  }
}

std::array<zmq::pollitem_t, 2> Client::poll_items() {
  return {zmq::pollitem_t{socket_.handle(), 0, ZMQ_POLLIN, 0},
          zmq::pollitem_t{monitor_.handle(), 0, ZMQ_POLLIN, 0}};
}

void Client::Pump() {
  Drain();
  MaybeFailover();
  MaybePing();
}

void Client::WaitReadable(Clock::time_point deadline) {
  auto until = std::min(deadline, last_send_ + options_.ping_interval);
  if (!connected_ && endpoints_.size() > 1) {
    until = std::min(until, down_since_ + options_.failover_after);
  }
  auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(
      until - Clock::now());
  if (wait.count() < 0) wait = std::chrono::milliseconds(0);
  auto items = poll_items();
  try {
    zmq::poll(items.data(), items.size(), wait);
  } catch (const zmq::error_t&) {
    // EINTR: the caller's loop comes round again.
  }
}

void Client::Drain() {
  for (;;) {
    zmq::message_t event;
    zmq::message_t address;
    if (!monitor_.recv(event, zmq::recv_flags::dontwait)) break;
    if (event.more()) (void)monitor_.recv(address);
    if (event.size() >= 2) {
      uint16_t what;
      std::memcpy(&what, event.data(), sizeof what);
      HandleMonitorEvent(what);
    }
  }
  zmq::message_t frame;
  while (socket_.recv(frame, zmq::recv_flags::dontwait)) {
    Result<Message> m = Decode(frame.to_string_view());
    if (m.ok()) HandleFrame(std::move(*m));
    // An undecodable frame from the broker is dropped: nothing to answer.
  }
}

void Client::HandleMonitorEvent(uint16_t event) {
  if (event == ZMQ_EVENT_DISCONNECTED) {
    connected_ = false;
    down_since_ = Clock::now();
    for (auto& [id, request] : in_flight_) request.sent = false;
    if (logged_in_) {
      logged_in_ = false;
      session_lost_ = true;
      events_.push_back(
          ConnectionEvent{ConnectionEvent::Kind::kLost, "connection lost"});
    }
  } else if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
    connected_ = true;
    if (session_lost_) {
      Relogin();
    } else {
      ResendInFlight();
    }
  }
}

void Client::Relogin() {
  if (token_.empty()) {
    session_lost_ = false;
    events_.push_back(ConnectionEvent{ConnectionEvent::Kind::kRestoreFailed,
                                      "no session token to resume with"});
    ResendInFlight();
    return;
  }
  relogin_request_ = next_request_id_++;
  in_flight_[relogin_request_] = InFlight{
      LoginRequest{username_, std::nullopt, token_, options_.batch_pushes},
      true, false};
  SendFrame(relogin_request_, in_flight_[relogin_request_].body);
}

void Client::ResendInFlight() {
  for (auto& [id, request] : in_flight_) {
    if (!request.sent) SendFrame(id, request.body);
  }
}

void Client::MaybePing() {
  if (!connected_ || Clock::now() - last_send_ < options_.ping_interval) {
    return;
  }
  const uint64_t id = next_request_id_++;
  in_flight_[id] = InFlight{zchat::Ping{}, true, false};
  SendFrame(id, in_flight_[id].body);
}

bool Client::SeenIds::Remember(uint64_t id, size_t window) {
  if (!handed.emplace(id, false).second) return false;
  order.push_back(id);
  if (order.size() > window) {
    handed.erase(order.front());
    order.pop_front();
  }
  return true;
}

bool Client::SeenIds::HandedOver(uint64_t id) const {
  auto it = handed.find(id);
  return it != handed.end() && it->second;
}

void Client::SeenIds::MarkHandedOver(uint64_t id) {
  if (auto it = handed.find(id); it != handed.end()) it->second = true;
}

template <class T>
void Client::OnPush(T push, SeenIds& seen, void (Client::*confirm)(uint64_t)) {
  const uint64_t id = push.message_id;
  if (seen.Remember(id, options_.dedup_window)) {
    events_.push_back(std::move(push));
  } else if (options_.auto_receipt && seen.HandedOver(id)) {
    // Handed over before, so confirmed before: that receipt was lost (or
    // is still on its way; a second one is harmless).
    (this->*confirm)(id);
  }
}

void Client::HandleFrame(Message m) {
  if (m.request_id == 0) {
    if (auto* d = std::get_if<DistributeMessage>(&m.body)) {
      if (d->message_ids.empty()) {
        OnPush(std::move(*d), seen_messages_, &Client::Confirm);
      } else {
        // The batch form's messages are handed over one by one.
        for (size_t i = 0; i < d->message_ids.size(); ++i) {
          OnPush(DistributeMessage{d->message_ids[i], std::move(d->senders[i]),
                                   std::move(d->bodies[i]), d->sent_ats_ms[i]},
                 seen_messages_, &Client::Confirm);
        }
      }
    } else if (auto* s = std::get_if<MessageSuccess>(&m.body)) {
      // The batch form's notices are handed over one by one.
      ForEachDelivered(*s, [&](uint64_t id, uint64_t client_msg_id) {
        OnPush(MessageSuccess{id, s->recipient, client_msg_id}, seen_notices_,
               &Client::AcknowledgeNotice);
      });
    } else if (auto* u = std::get_if<MessageUndeliverable>(&m.body)) {
      OnPush(std::move(*u), seen_notices_, &Client::AcknowledgeNotice);
    } else if (auto* e = std::get_if<SessionEnded>(&m.body)) {
      logged_in_ = false;
      if (e->code == ErrorCode::kAccountDeleted) token_.clear();
      events_.push_back(std::move(*e));
    }
    return;  // ERROR with request id 0: nothing to match it to
  }
  auto it = in_flight_.find(m.request_id);
  if (it == in_flight_.end()) return;  // answered before (a resend's twin)
  if (m.request_id == relogin_request_) {
    in_flight_.erase(it);
    relogin_request_ = 0;
    session_lost_ = false;
    if (auto* ok = std::get_if<LoginSuccess>(&m.body)) {
      logged_in_ = true;
      token_ = ok->token;
      events_.push_back(
          ConnectionEvent{ConnectionEvent::Kind::kRestored, "logged in again"});
    } else {
      token_.clear();
      events_.push_back(ConnectionEvent{ConnectionEvent::Kind::kRestoreFailed,
                                        FailureOf(m).ToString()});
    }
    ResendInFlight();
    return;
  }
  // The broker forgot us (it restarted while we looked away): log in again
  // and resend, instead of surfacing not_logged_in.
  if (auto* e = std::get_if<Error>(&m.body);
      e && e->code == ErrorCode::kNotLoggedIn && logged_in_ &&
      !token_.empty()) {
    logged_in_ = false;
    session_lost_ = true;
    for (auto& [id, request] : in_flight_) request.sent = false;
    Relogin();
    return;
  }
  const bool internal = it->second.internal;
  in_flight_.erase(it);
  if (!internal) replies_.emplace(m.request_id, std::move(m));
}

}  // namespace zchat
