#include "messages/messages.h"

#include <array>

#include "messages/status.h"

namespace zchat {
namespace {

constexpr std::array<std::string_view, kMessageTypeCount> kTypeNames = {
    "CREATE_ACCOUNT",
    "CREATE_SUCCESS",
    "CREATE_FAILURE",
    "LOGIN_REQUEST",
    "LOGIN_SUCCESS",
    "LOGIN_FAILURE",
    "LOGOUT",
    "LOGOUT_SUCCESS",
    "LIST_ACCOUNTS",
    "ACCOUNT_LIST",
    "SEND_MESSAGE",
    "MESSAGE_PENDING",
    "MESSAGE_FAILURE",
    "FETCH_MESSAGES",
    "FETCH_RESULT",
    "DISTRIBUTE_MESSAGE",
    "MESSAGE_RECEIPT",
    "MESSAGE_SUCCESS",
    "DELETION_REQUEST",
    "DELETION_SUCCESS",
    "DELETION_FAILURE",
    "PING",
    "PONG",
    "ERROR",
    "MESSAGE_UNDELIVERABLE",
    "SESSION_ENDED",
    "NOTICE_RECEIPT",
    "FETCH_NOTICES",
};

constexpr std::array<std::string_view, kMaxErrorCode + 1> kCodeNames = {
    "ok",
    "malformed",
    "unknown_type",
    "unsupported_version",
    "not_logged_in",
    "already_logged_in",
    "username_taken",
    "invalid_username",
    "weak_password",
    "password_too_long",
    "bad_credentials",
    "throttled",
    "unknown_recipient",
    "body_too_large",
    "not_yours",
    "unknown_message",
    "has_pending",
    "invalid_argument",
    "storage",
    "queue_full",
    "recipient_deleted",
    "busy",
    "account_deleted",
    "session_expired",
    "internal",
    "shutting_down",
    "timeout",
};

template <size_t... I>
constexpr std::array<Direction, sizeof...(I)> Directions(
    std::index_sequence<I...>) {
  return {std::variant_alternative_t<I, Body>::kDirection...};
}

constexpr auto kDirections =
    Directions(std::make_index_sequence<kMessageTypeCount>());

}  // namespace

MessageType TypeOf(const Body& body) {
  return static_cast<MessageType>(body.index() + 1);
}

Direction DirectionOf(MessageType type) {
  return kDirections.at(static_cast<size_t>(type) - 1);
}

bool IsKnownMessageType(uint64_t number) {
  return number >= 1 && number <= kMessageTypeCount;
}

std::string_view MessageTypeName(MessageType type) {
  auto n = static_cast<uint64_t>(type);
  return IsKnownMessageType(n) ? kTypeNames[n - 1] : "UNKNOWN";
}

std::string_view ErrorCodeName(ErrorCode code) {
  auto n = static_cast<size_t>(code);
  return n < kCodeNames.size() ? kCodeNames[n] : "unknown_code";
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  return std::string(ErrorCodeName(code_)) + ": " + detail_;
}

}  // namespace zchat
