// Client: one connection to a zchat broker over a ZeroMQ DEALER socket.
//
// Every request of the protocol is a blocking call that returns the reply or
// the broker's refusal as a Status (errors are values, never exceptions);
// Start()/Wait() pipeline many requests without waiting for each. Pushes
// (incoming messages, delivery notices, session ends) and connection changes
// queue up as Events, read with NextEvent(). The client PINGs when idle, and
// when the broker restarts or the connection drops it reconnects (ZeroMQ
// backoff), logs in again with its session token and resends the requests
// still unanswered (sends are idempotent by client_msg_id). Incoming
// messages are de-duplicated by message id and confirmed with a receipt once
// NextEvent has handed them to the application; so are delivery notices
// (MESSAGE_SUCCESS, MESSAGE_UNDELIVERABLE), which the broker resends until
// acknowledged with NOTICE_RECEIPT.
//
// Thread-safety: none. A Client, like the ZeroMQ socket inside it, must be
// used from one thread at a time.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <variant>
#include <zmq.hpp>

#include "messages/messages.h"
#include "messages/status.h"

namespace zchat {

struct ClientOptions {
  // One broker endpoint, or several separated by commas
  // ("tcp://a:5555,tcp://b:5555"): brokers sharing one store. The client
  // uses the first; when it cannot reach its broker for `failover_after`, it
  // moves on to the next (round the list), logs in again with its session
  // token and resends what was unanswered.
  std::string endpoint = "tcp://127.0.0.1:5555";
  std::chrono::milliseconds failover_after{2'000};
  std::chrono::milliseconds request_timeout{10'000};
  std::chrono::milliseconds ping_interval{20'000};  // PING after this idle
  std::chrono::milliseconds reconnect_min{100};     // ZeroMQ backoff bounds
  std::chrono::milliseconds reconnect_max{5'000};
  // Confirm messages (MESSAGE_RECEIPT) and acknowledge notices
  // (NOTICE_RECEIPT) as NextEvent returns them.
  bool auto_receipt = true;
  size_t dedup_window = 100'000;  // ids remembered for dedup, of each kind
  // Log in with batch_pushes: the broker may tell of many delivered
  // messages in one MESSAGE_SUCCESS frame, and send a fetch's messages in a
  // few DISTRIBUTE_MESSAGE frames. NextEvent hands them over one by one all
  // the same. A broker older than the field refuses such a login
  // (malformed): set false for it.
  bool batch_pushes = true;
  // CurveZMQ: the broker's public key (40 Z85 characters, from
  // 'zchat-broker keygen'). Empty: plain text. The client's own key pair is
  // made fresh for each connection.
  std::string server_key;
};

// A change in the connection, as seen by the client.
struct ConnectionEvent {
  enum class Kind {
    kLost,           // the connection dropped; requests wait for it
    kRestored,       // reconnected and logged in again; requests resent
    kRestoreFailed,  // reconnected, but the session could not be resumed
    kFailover        // moving to another endpoint (detail: which)
  };
  Kind kind = Kind::kLost;
  std::string detail;
};

using Event = std::variant<DistributeMessage, MessageSuccess,
                           MessageUndeliverable, SessionEnded, ConnectionEvent>;

class Client {
 public:
  // The endpoints in `endpoints` (one, or several separated by commas), or
  // the first that libzmq cannot use and why.
  static Status CheckEndpoints(const std::string& endpoints);

  // Uses its own ZeroMQ context.
  explicit Client(ClientOptions options);
  // Shares `context` (which must outlive the client): many clients in one
  // process then share its I/O thread.
  Client(zmq::context_t& context, ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // --- Requests (each waits up to request_timeout) ---
  Result<CreateSuccess> CreateAccount(const std::string& username,
                                      const std::string& password);
  Result<LoginSuccess> Login(const std::string& username,
                             const std::string& password);
  // Logs in with a token from an earlier LOGIN_SUCCESS.
  Result<LoginSuccess> Resume(const std::string& username,
                              const std::string& token);
  Status Logout();
  Result<AccountList> ListAccounts(std::optional<std::string> pattern = {},
                                   std::optional<uint64_t> limit = {},
                                   std::optional<std::string> cursor = {});
  // Picks a fresh client_msg_id; a resend after a reconnect reuses it.
  Result<MessagePending> Send(const std::string& recipient,
                              const std::string& body);
  // Several messages to one recipient in one request (SEND_MESSAGE's batch
  // form), each with a fresh client_msg_id: stored in this order, or, if
  // any would be refused, none. The reply's message_ids and client_msg_ids
  // go with `bodies`, in order. 1 to kMaxSendItems bodies, all of them in
  // one frame (kMaxFrameBytes).
  Result<MessagePending> SendMany(const std::string& recipient,
                                  const std::vector<std::string>& bodies);
  // The messages come as DistributeMessage events.
  Result<FetchResult> Fetch(std::optional<uint64_t> limit = {});
  // Explicit receipt (when auto_receipt is off). Fire and forget: a refusal
  // comes back later and is dropped.
  void Confirm(uint64_t message_id);
  // The same for many messages: one MESSAGE_RECEIPT per kMaxReceiptIds ids.
  // Ids the broker refuses (someone else's, unknown) come back as one ERROR
  // per request, dropped like Confirm's; the others are confirmed.
  void ConfirmAll(const std::vector<uint64_t>& message_ids);
  // The notices not yet acknowledged come again as MessageSuccess /
  // MessageUndeliverable events (repeats of ones already handed over are
  // dropped, and acknowledged again).
  Result<FetchResult> FetchNotices(std::optional<uint64_t> limit = {});
  // Explicit notice acknowledgement (when auto_receipt is off); fire and
  // forget like Confirm.
  void AcknowledgeNotice(uint64_t message_id);
  // The same for many notices: one NOTICE_RECEIPT per kMaxReceiptIds ids.
  void AcknowledgeNotices(const std::vector<uint64_t>& message_ids);
  // With has_pending, *pending (if given) is how many messages wait.
  Result<DeletionSuccess> DeleteAccount(bool force,
                                        uint64_t* pending = nullptr);
  Status Ping();

  // --- Pipelining ---
  // Sends a request now; its reply is collected by Wait.
  uint64_t Start(Body request);
  // The reply (whatever its type) to a Start()ed request.
  Result<Message> Wait(uint64_t request_id);

  // --- Events ---
  // The next push or connection event, waiting up to `timeout`.
  std::optional<Event> NextEvent(std::chrono::milliseconds timeout);
  // For callers with their own poll loop: when one of these is readable (or
  // at least every ping_interval), call Pump(), then NextEvent(0ms).
  std::array<zmq::pollitem_t, 2> poll_items();
  void Pump();

  bool logged_in() const { return logged_in_; }
  const std::string& username() const { return username_; }
  const std::string& token() const { return token_; }
  // The endpoint in use now.
  const std::string& endpoint() const { return endpoints_[current_]; }

 private:
  // A request sent and not yet answered; kept for resending.
  struct InFlight {
    Body body;
    bool internal = false;  // PING, receipts, the re-login
    bool sent = false;      // handed to the socket since the last connect
  };

  void Connect();
  // Not connected for failover_after with other endpoints to try: closes
  // the socket and connects to the next one.
  void MaybeFailover();
  void SendFrame(uint64_t request_id, const Body& body);
  // Reads what is waiting on the socket (and the monitor) without blocking.
  void Drain();
  void HandleFrame(Message message);
  void HandleMonitorEvent(uint16_t event);
  void Relogin();
  void ResendInFlight();
  void MaybePing();
  // Waits until something arrives or `deadline` passes.
  void WaitReadable(std::chrono::steady_clock::time_point deadline);
  template <class T>
  Result<T> Call(Body request);
  Status FailureOf(const Message& reply) const;
  // Ids seen -> whether NextEvent has handed the event over; the oldest are
  // forgotten past the dedup window.
  struct SeenIds {
    std::unordered_map<uint64_t, bool> handed;
    std::deque<uint64_t> order;
    bool Remember(uint64_t id, size_t window);  // false if seen before
    bool HandedOver(uint64_t id) const;
    void MarkHandedOver(uint64_t id);
  };
  // Queues a message or notice event unless it is a repeat; a repeat of one
  // handed over before is confirmed again (that receipt may be lost).
  template <class T>
  void OnPush(T push, SeenIds& seen, void (Client::*confirm)(uint64_t));

  ClientOptions options_;
  std::unique_ptr<zmq::context_t> own_context_;
  zmq::context_t& context_;
  zmq::socket_t socket_;
  zmq::socket_t monitor_;
  bool connected_ = false;
  std::vector<std::string> endpoints_;
  size_t current_ = 0;
  std::chrono::steady_clock::time_point down_since_;

  uint64_t next_request_id_ = 1;
  uint64_t next_client_msg_id_;
  std::map<uint64_t, InFlight> in_flight_;
  std::map<uint64_t, Message> replies_;
  std::deque<Event> events_;
  SeenIds seen_messages_;  // DISTRIBUTE_MESSAGE ids
  SeenIds seen_notices_;   // MESSAGE_SUCCESS / MESSAGE_UNDELIVERABLE ids
  std::chrono::steady_clock::time_point last_send_;

  bool logged_in_ = false;
  bool session_lost_ = false;
  uint64_t relogin_request_ = 0;
  std::string username_;
  std::string token_;
};

}  // namespace zchat
