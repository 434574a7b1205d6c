// Wire error codes. Numbers are part of the protocol (docs/protocol.md):
// append new codes, never renumber.
#pragma once

#include <cstdint>
#include <string_view>

namespace zchat {

enum class ErrorCode : uint16_t {
  kOk = 0,
  kMalformed = 1,           // frame is not a valid message (field named)
  kUnknownType = 2,         // message type number not known
  kUnsupportedVersion = 3,  // protocol version not spoken by this peer
  kNotLoggedIn = 4,         // request needs a logged-in session
  kAlreadyLoggedIn = 5,     // LOGIN_REQUEST on a logged-in connection
  kUsernameTaken = 6,       // CREATE_ACCOUNT: name exists (case-insensitive)
  kInvalidUsername = 7,     // CREATE_ACCOUNT: characters or length
  kWeakPassword = 8,        // CREATE_ACCOUNT: shorter than the minimum
  kPasswordTooLong = 9,     // CREATE_ACCOUNT/LOGIN: longer than the maximum
  kBadCredentials = 10,     // LOGIN: unknown user, wrong password or token
  kThrottled = 11,          // LOGIN: too many failures; retry later
  kUnknownRecipient = 12,   // SEND_MESSAGE: no such account
  kBodyTooLarge = 13,       // SEND_MESSAGE: body over the limit
  kNotYours = 14,           // receipt for a message addressed to someone else
  kUnknownMessage = 15,     // receipt for a message id that never existed
  kHasPending = 16,         // DELETION_REQUEST without force, queue not empty
  kInvalidArgument = 17,    // a well-formed field with a disallowed value
  kStorage = 18,            // the database refused the write (disk full...)
  kQueueFull = 19,          // recipient's queue is at its limit
  kRecipientDeleted = 20,   // MESSAGE_UNDELIVERABLE: recipient was deleted
  kBusy = 21,               // broker overloaded (hashing queue full)
  kAccountDeleted = 22,     // SESSION_ENDED: the account was deleted
  kSessionExpired = 23,     // SESSION_ENDED: silent past the timeout
  kInternal = 24,           // a broker bug; the request changed nothing
  kShuttingDown = 25,       // reserved: broker is stopping (not sent yet)
  kTimeout = 26,            // client libraries only: no reply in time
};

inline constexpr uint16_t kMaxErrorCode = 26;

// Stable lower_snake_case name of a code ("unknown_recipient").
std::string_view ErrorCodeName(ErrorCode code);

}  // namespace zchat
