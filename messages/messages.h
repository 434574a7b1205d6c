// The zchat wire vocabulary: one C++ type per message, each describing its
// fields once (Visit) so that the encoder and the strict decoder in codec.h
// agree by construction. Numbers are part of the protocol: append, never
// renumber. See docs/protocol.md for the contract.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "messages/error_code.h"

namespace zchat {

inline constexpr uint64_t kProtocolVersion = 1;

// Limits enforced by the codec. Semantic limits (username characters, the
// minimum password length) are the broker's and live in broker/limits.h.
inline constexpr size_t kMaxFrameBytes = 128 * 1024;
inline constexpr size_t kMaxNameBytes = 64;        // username/recipient field
inline constexpr size_t kMaxPasswordBytes = 1024;  // password field
inline constexpr size_t kMaxBodyBytes = 16 * 1024;
inline constexpr size_t kMaxPatternBytes = 128;
inline constexpr size_t kMaxCursorBytes = 128;
inline constexpr size_t kMaxReasonBytes = 512;
inline constexpr size_t kTokenBytes = 32;
inline constexpr uint64_t kMaxListLimit = 1000;
inline constexpr uint64_t kMaxFetchLimit = 1000;
// Ids in one MESSAGE_RECEIPT or NOTICE_RECEIPT (`message_ids`).
inline constexpr size_t kMaxReceiptIds = 1000;
static_assert(kMaxReceiptIds <= kMaxListLimit, "the parser's array limit");
// Messages in one SEND_MESSAGE of the batch form (`bodies`).
inline constexpr size_t kMaxSendItems = 1000;
static_assert(kMaxSendItems <= kMaxListLimit, "the parser's array limit");

enum class MessageType : uint16_t {
  kCreateAccount = 1,
  kCreateSuccess = 2,
  kCreateFailure = 3,
  kLoginRequest = 4,
  kLoginSuccess = 5,
  kLoginFailure = 6,
  kLogout = 7,
  kLogoutSuccess = 8,
  kListAccounts = 9,
  kAccountList = 10,
  kSendMessage = 11,
  kMessagePending = 12,
  kMessageFailure = 13,
  kFetchMessages = 14,
  kFetchResult = 15,
  kDistributeMessage = 16,
  kMessageReceipt = 17,
  kMessageSuccess = 18,
  kDeletionRequest = 19,
  kDeletionSuccess = 20,
  kDeletionFailure = 21,
  kPing = 22,
  kPong = 23,
  kError = 24,
  kMessageUndeliverable = 25,
  kSessionEnded = 26,
  kNoticeReceipt = 27,
  kFetchNotices = 28,
};

// Who sends a message: a client request, the broker's reply to one (echoes
// the request id), or an unsolicited broker push (request id 0).
enum class Direction { kRequest, kReply, kPush };

// --- Requests (client -> broker) -------------------------------------------

struct CreateAccount {
  static constexpr MessageType kType = MessageType::kCreateAccount;
  static constexpr Direction kDirection = Direction::kRequest;
  std::string username;
  std::string password;
  template <class V>
  void Visit(V& v) {
    v.Text("username", username, kMaxNameBytes);
    v.Text("password", password, kMaxPasswordBytes);
  }
};

// Exactly one of password and token is present. `batch_pushes`: the
// session takes MESSAGE_SUCCESS in its batch form too (message_ids).
struct LoginRequest {
  static constexpr MessageType kType = MessageType::kLoginRequest;
  static constexpr Direction kDirection = Direction::kRequest;
  std::string username;
  std::optional<std::string> password;
  std::optional<std::string> token;  // kTokenBytes raw bytes (bin)
  bool batch_pushes = false;         // absent: false
  template <class V>
  void Visit(V& v) {
    v.Text("username", username, kMaxNameBytes);
    v.OptText("password", password, kMaxPasswordBytes);
    v.OptBytes("token", token, kTokenBytes);
    v.OptFlag("batch_pushes", batch_pushes);
  }
};

struct Logout {
  static constexpr MessageType kType = MessageType::kLogout;
  static constexpr Direction kDirection = Direction::kRequest;
  template <class V>
  void Visit(V&) {}
};

struct ListAccounts {
  static constexpr MessageType kType = MessageType::kListAccounts;
  static constexpr Direction kDirection = Direction::kRequest;
  std::optional<std::string> pattern;  // absent: every account
  std::optional<uint64_t> limit;       // absent: 100
  std::optional<std::string> cursor;   // from the previous ACCOUNT_LIST
  template <class V>
  void Visit(V& v) {
    v.OptText("pattern", pattern, kMaxPatternBytes);
    v.OptUint("limit", limit, 1, kMaxListLimit);
    v.OptText("cursor", cursor, kMaxCursorBytes);
  }
};

// One message to `recipient` (body, client_msg_id), or, the batch form,
// up to kMaxSendItems of them at once (bodies and client_msg_ids, the same
// length, itemwise): accepted or refused together, stored in that order.
// Exactly one of the two forms.
struct SendMessage {
  static constexpr MessageType kType = MessageType::kSendMessage;
  static constexpr Direction kDirection = Direction::kRequest;
  std::string recipient;
  std::string body;
  uint64_t client_msg_id = 0;  // sender-chosen, nonzero; retries reuse it
  std::vector<uint64_t> client_msg_ids;  // empty: absent (the single form)
  std::vector<std::string> bodies;       // as many as client_msg_ids
  template <class V>
  void Visit(V& v) {
    v.Text("recipient", recipient, kMaxNameBytes);
    v.IdList("client_msg_ids", client_msg_ids, kMaxSendItems, UINT64_MAX);
    // Decoding, the form is known once client_msg_ids is read. The codec
    // admits up to 4x the body limit so that an over-size body gets the
    // specific body_too_large reply from the broker.
    if (client_msg_ids.empty()) {
      v.Text("body", body, 4 * kMaxBodyBytes);
      v.Uint("client_msg_id", client_msg_id, 1, UINT64_MAX);
    } else {
      v.TextList("bodies", bodies, kMaxSendItems, 4 * kMaxBodyBytes);
    }
  }
};

struct FetchMessages {
  static constexpr MessageType kType = MessageType::kFetchMessages;
  static constexpr Direction kDirection = Direction::kRequest;
  std::optional<uint64_t> limit;  // absent: as many as one fetch allows
  template <class V>
  void Visit(V& v) {
    v.OptUint("limit", limit, 1, kMaxFetchLimit);
  }
};

// The recipient confirms a message (by its id), or up to kMaxReceiptIds of
// them at once, each as if alone. No reply when every id is accepted.
// Exactly one of the two fields.
struct MessageReceipt {
  static constexpr MessageType kType = MessageType::kMessageReceipt;
  static constexpr Direction kDirection = Direction::kRequest;
  uint64_t message_id = 0;            // 0: absent (ids start at 1)
  std::vector<uint64_t> message_ids;  // empty: absent
  template <class V>
  void Visit(V& v) {
    v.OptId("message_id", message_id, INT64_MAX);
    v.IdList("message_ids", message_ids, kMaxReceiptIds, INT64_MAX);
  }
};

// The sender acknowledges a MESSAGE_SUCCESS or MESSAGE_UNDELIVERABLE (by its
// message id), or up to kMaxReceiptIds of them at once: the broker forgets
// those notices. No reply when accepted. Exactly one of the two fields.
struct NoticeReceipt {
  static constexpr MessageType kType = MessageType::kNoticeReceipt;
  static constexpr Direction kDirection = Direction::kRequest;
  uint64_t message_id = 0;            // 0: absent (ids start at 1)
  std::vector<uint64_t> message_ids;  // empty: absent
  template <class V>
  void Visit(V& v) {
    v.OptId("message_id", message_id, INT64_MAX);
    v.IdList("message_ids", message_ids, kMaxReceiptIds, INT64_MAX);
  }
};

// Pushes the oldest unacknowledged notices again, then FETCH_RESULT.
struct FetchNotices {
  static constexpr MessageType kType = MessageType::kFetchNotices;
  static constexpr Direction kDirection = Direction::kRequest;
  std::optional<uint64_t> limit;  // absent: as many as one fetch allows
  template <class V>
  void Visit(V& v) {
    v.OptUint("limit", limit, 1, kMaxFetchLimit);
  }
};

struct DeletionRequest {
  static constexpr MessageType kType = MessageType::kDeletionRequest;
  static constexpr Direction kDirection = Direction::kRequest;
  bool force = false;
  template <class V>
  void Visit(V& v) {
    v.Bool("force", force);
  }
};

struct Ping {
  static constexpr MessageType kType = MessageType::kPing;
  static constexpr Direction kDirection = Direction::kRequest;
  template <class V>
  void Visit(V&) {}
};

// --- Replies (broker -> client, echo the request id) -----------------------

struct CreateSuccess {
  static constexpr MessageType kType = MessageType::kCreateSuccess;
  static constexpr Direction kDirection = Direction::kReply;
  std::string username;
  template <class V>
  void Visit(V& v) {
    v.Text("username", username, kMaxNameBytes);
  }
};

struct CreateFailure {
  static constexpr MessageType kType = MessageType::kCreateFailure;
  static constexpr Direction kDirection = Direction::kReply;
  ErrorCode code = ErrorCode::kOk;
  std::string reason;
  template <class V>
  void Visit(V& v) {
    v.Code("code", code);
    v.Text("reason", reason, kMaxReasonBytes);
  }
};

struct LoginSuccess {
  static constexpr MessageType kType = MessageType::kLoginSuccess;
  static constexpr Direction kDirection = Direction::kReply;
  std::string username;  // as registered (original case)
  uint64_t pending = 0;  // undelivered messages waiting for this user
  std::string token;     // kTokenBytes: present it to log in without password
  template <class V>
  void Visit(V& v) {
    v.Text("username", username, kMaxNameBytes);
    v.Uint("pending", pending, 0, UINT64_MAX);
    v.Bytes("token", token, kTokenBytes);
  }
};

struct LoginFailure {
  static constexpr MessageType kType = MessageType::kLoginFailure;
  static constexpr Direction kDirection = Direction::kReply;
  ErrorCode code = ErrorCode::kOk;
  std::string reason;
  uint64_t retry_after_ms = 0;  // nonzero when throttled
  template <class V>
  void Visit(V& v) {
    v.Code("code", code);
    v.Text("reason", reason, kMaxReasonBytes);
    v.Uint("retry_after_ms", retry_after_ms, 0, UINT64_MAX);
  }
};

struct LogoutSuccess {
  static constexpr MessageType kType = MessageType::kLogoutSuccess;
  static constexpr Direction kDirection = Direction::kReply;
  template <class V>
  void Visit(V&) {}
};

struct AccountList {
  static constexpr MessageType kType = MessageType::kAccountList;
  static constexpr Direction kDirection = Direction::kReply;
  std::vector<std::string> accounts;
  std::string cursor;  // empty: no more pages
  template <class V>
  void Visit(V& v) {
    v.TextList("accounts", accounts, kMaxListLimit, kMaxNameBytes);
    v.Text("cursor", cursor, kMaxCursorBytes);
  }
};

// The reply to SEND_MESSAGE: its message stored (message_id,
// client_msg_id), or, to the batch form, all of them (message_ids and
// client_msg_ids, the same length and order as the request's items).
struct MessagePending {
  static constexpr MessageType kType = MessageType::kMessagePending;
  static constexpr Direction kDirection = Direction::kReply;
  uint64_t message_id = 0;               // 0: absent (the batch form)
  uint64_t client_msg_id = 0;            // 0: absent (the batch form)
  std::vector<uint64_t> message_ids;     // empty: absent
  std::vector<uint64_t> client_msg_ids;  // as many as message_ids
  template <class V>
  void Visit(V& v) {
    v.OptId("message_id", message_id, UINT64_MAX);
    v.OptId("client_msg_id", client_msg_id, UINT64_MAX);
    v.IdList("message_ids", message_ids, kMaxSendItems, UINT64_MAX);
    v.IdList("client_msg_ids", client_msg_ids, kMaxSendItems, UINT64_MAX);
  }
};

// A SEND_MESSAGE refused: nothing of it was stored. client_msg_id is the
// single form's (0 for the batch form, or when unreadable); client_msg_ids
// the batch form's, every item's (empty: absent).
struct MessageFailure {
  static constexpr MessageType kType = MessageType::kMessageFailure;
  static constexpr Direction kDirection = Direction::kReply;
  ErrorCode code = ErrorCode::kOk;
  std::string reason;
  uint64_t client_msg_id = 0;
  std::vector<uint64_t> client_msg_ids;
  template <class V>
  void Visit(V& v) {
    v.Code("code", code);
    v.Text("reason", reason, kMaxReasonBytes);
    v.Uint("client_msg_id", client_msg_id, 0, UINT64_MAX);
    v.IdList("client_msg_ids", client_msg_ids, kMaxSendItems, UINT64_MAX);
  }
};

// Sent after the DISTRIBUTE_MESSAGE pushes that the fetch produced.
struct FetchResult {
  static constexpr MessageType kType = MessageType::kFetchResult;
  static constexpr Direction kDirection = Direction::kReply;
  uint64_t count = 0;      // messages pushed by this fetch
  uint64_t remaining = 0;  // undelivered messages not pushed by it
  template <class V>
  void Visit(V& v) {
    v.Uint("count", count, 0, UINT64_MAX);
    v.Uint("remaining", remaining, 0, UINT64_MAX);
  }
};

struct DeletionSuccess {
  static constexpr MessageType kType = MessageType::kDeletionSuccess;
  static constexpr Direction kDirection = Direction::kReply;
  uint64_t purged = 0;  // undelivered messages discarded with the account
  template <class V>
  void Visit(V& v) {
    v.Uint("purged", purged, 0, UINT64_MAX);
  }
};

struct DeletionFailure {
  static constexpr MessageType kType = MessageType::kDeletionFailure;
  static constexpr Direction kDirection = Direction::kReply;
  ErrorCode code = ErrorCode::kOk;
  std::string reason;
  uint64_t pending = 0;  // messages that force would discard
  template <class V>
  void Visit(V& v) {
    v.Code("code", code);
    v.Text("reason", reason, kMaxReasonBytes);
    v.Uint("pending", pending, 0, UINT64_MAX);
  }
};

struct Pong {
  static constexpr MessageType kType = MessageType::kPong;
  static constexpr Direction kDirection = Direction::kReply;
  template <class V>
  void Visit(V&) {}
};

// Generic refusal of any request (request id echoed; 0 if unreadable).
struct Error {
  static constexpr MessageType kType = MessageType::kError;
  static constexpr Direction kDirection = Direction::kReply;
  ErrorCode code = ErrorCode::kOk;
  std::string reason;
  // A MESSAGE_RECEIPT with message_ids: the ids it refused (empty: absent).
  std::vector<uint64_t> message_ids;
  template <class V>
  void Visit(V& v) {
    v.Code("code", code);
    v.Text("reason", reason, kMaxReasonBytes);
    v.IdList("message_ids", message_ids, kMaxReceiptIds, INT64_MAX);
  }
};

// --- Pushes (broker -> client, request id 0) --------------------------------

// A message for the session's account: one (message_id, sender, body,
// sent_at), or, to a session that logged in with batch_pushes, several
// messages of one FETCH_MESSAGES at once (message_ids, senders, bodies,
// sent_ats, the same length, itemwise). Exactly one of the two forms.
struct DistributeMessage {
  static constexpr MessageType kType = MessageType::kDistributeMessage;
  static constexpr Direction kDirection = Direction::kPush;
  uint64_t message_id = 0;  // 0: absent (the batch form)
  std::string sender;
  std::string body;
  uint64_t sent_at_ms = 0;  // Unix time in milliseconds, set by the broker
  std::vector<uint64_t> message_ids;  // empty: absent (the single form)
  std::vector<std::string> senders;
  std::vector<std::string> bodies;
  std::vector<uint64_t> sent_ats_ms;
  template <class V>
  void Visit(V& v) {
    v.OptId("message_id", message_id, UINT64_MAX);
    v.IdList("message_ids", message_ids, kMaxFetchLimit, UINT64_MAX);
    // Decoding, the form is known once message_ids is read.
    if (message_ids.empty()) {
      v.Text("sender", sender, kMaxNameBytes);
      v.Text("body", body, kMaxBodyBytes);
      v.Uint("sent_at", sent_at_ms, 0, UINT64_MAX);
    } else {
      v.TextList("senders", senders, kMaxFetchLimit, kMaxNameBytes);
      v.TextList("bodies", bodies, kMaxFetchLimit, kMaxBodyBytes);
      v.IdList("sent_ats", sent_ats_ms, kMaxFetchLimit, UINT64_MAX);
    }
  }
};

// The recipient confirmed a message of the session's account: one
// (message_id, client_msg_id), or, to a session that logged in with
// batch_pushes, up to kMaxReceiptIds of them to one recipient at once
// (message_ids and client_msg_ids, the same length, pairwise). Exactly one
// of the two forms.
struct MessageSuccess {
  static constexpr MessageType kType = MessageType::kMessageSuccess;
  static constexpr Direction kDirection = Direction::kPush;
  uint64_t message_id = 0;  // 0: absent (the batch form)
  std::string recipient;
  uint64_t client_msg_id = 0;            // 0: absent (the batch form)
  std::vector<uint64_t> message_ids;     // empty: absent
  std::vector<uint64_t> client_msg_ids;  // as many as message_ids
  template <class V>
  void Visit(V& v) {
    v.OptId("message_id", message_id, UINT64_MAX);
    v.Text("recipient", recipient, kMaxNameBytes);
    v.OptId("client_msg_id", client_msg_id, UINT64_MAX);
    v.IdList("message_ids", message_ids, kMaxReceiptIds, UINT64_MAX);
    v.IdList("client_msg_ids", client_msg_ids, kMaxReceiptIds, UINT64_MAX);
  }
};

// Terminal failure of a message the broker had accepted (MESSAGE_PENDING):
// it will never be delivered (the recipient's account was deleted).
struct MessageUndeliverable {
  static constexpr MessageType kType = MessageType::kMessageUndeliverable;
  static constexpr Direction kDirection = Direction::kPush;
  uint64_t message_id = 0;
  std::string recipient;
  uint64_t client_msg_id = 0;
  ErrorCode code = ErrorCode::kOk;
  std::string reason;
  template <class V>
  void Visit(V& v) {
    v.Uint("message_id", message_id, 1, UINT64_MAX);
    v.Text("recipient", recipient, kMaxNameBytes);
    v.Uint("client_msg_id", client_msg_id, 1, UINT64_MAX);
    v.Code("code", code);
    v.Text("reason", reason, kMaxReasonBytes);
  }
};

// The broker ended this connection's session (it is logged out).
struct SessionEnded {
  static constexpr MessageType kType = MessageType::kSessionEnded;
  static constexpr Direction kDirection = Direction::kPush;
  ErrorCode code = ErrorCode::kOk;
  std::string reason;
  template <class V>
  void Visit(V& v) {
    v.Code("code", code);
    v.Text("reason", reason, kMaxReasonBytes);
  }
};

// Every message type, in wire-number order (index + 1 == type number).
using Body = std::variant<
    CreateAccount, CreateSuccess, CreateFailure, LoginRequest, LoginSuccess,
    LoginFailure, Logout, LogoutSuccess, ListAccounts, AccountList, SendMessage,
    MessagePending, MessageFailure, FetchMessages, FetchResult,
    DistributeMessage, MessageReceipt, MessageSuccess, DeletionRequest,
    DeletionSuccess, DeletionFailure, Ping, Pong, Error, MessageUndeliverable,
    SessionEnded, NoticeReceipt, FetchNotices>;

inline constexpr size_t kMessageTypeCount = std::variant_size_v<Body>;

// One frame: the envelope (version, type, request id) plus the body.
struct Message {
  uint64_t request_id = 0;  // >= 1 on requests, echoed on replies, 0 on pushes
  Body body;
};

// The ids a MESSAGE_RECEIPT or NOTICE_RECEIPT names: its message_ids, or
// its message_id alone.
template <class Receipt>
std::span<const uint64_t> ReceiptIds(const Receipt& r) {
  if (r.message_ids.empty()) return {&r.message_id, 1};
  return r.message_ids;
}

// Calls f(message_id, client_msg_id) for each delivered message a
// MESSAGE_SUCCESS tells of (one, or its batch form's pairs).
template <class F>
void ForEachDelivered(const MessageSuccess& s, F&& f) {
  if (s.message_ids.empty()) {
    f(s.message_id, s.client_msg_id);
    return;
  }
  for (size_t i = 0; i < s.message_ids.size(); ++i) {
    f(s.message_ids[i], s.client_msg_ids[i]);
  }
}

// Calls f(message_id, sender, body, sent_at_ms) for each message a
// DISTRIBUTE_MESSAGE carries (one, or its batch form's).
template <class F>
void ForEachMessage(const DistributeMessage& d, F&& f) {
  if (d.message_ids.empty()) {
    f(d.message_id, d.sender, d.body, d.sent_at_ms);
    return;
  }
  for (size_t i = 0; i < d.message_ids.size(); ++i) {
    f(d.message_ids[i], d.senders[i], d.bodies[i], d.sent_ats_ms[i]);
  }
}

// Calls f(body, client_msg_id) for each message a SEND_MESSAGE carries (one,
// or its batch form's).
template <class F>
void ForEachSent(const SendMessage& s, F&& f) {
  if (s.client_msg_ids.empty()) {
    f(s.body, s.client_msg_id);
    return;
  }
  for (size_t i = 0; i < s.client_msg_ids.size(); ++i) {
    f(s.bodies[i], s.client_msg_ids[i]);
  }
}

// Calls f(message_id, client_msg_id) for each message a MESSAGE_PENDING
// tells was stored (one, or its batch form's pairs).
template <class F>
void ForEachPending(const MessagePending& p, F&& f) {
  if (p.message_ids.empty()) {
    f(p.message_id, p.client_msg_id);
    return;
  }
  for (size_t i = 0; i < p.message_ids.size(); ++i) {
    f(p.message_ids[i], p.client_msg_ids[i]);
  }
}

MessageType TypeOf(const Body& body);
Direction DirectionOf(MessageType type);
// "SEND_MESSAGE"; "UNKNOWN" for a number outside the table.
std::string_view MessageTypeName(MessageType type);
bool IsKnownMessageType(uint64_t number);

}  // namespace zchat
