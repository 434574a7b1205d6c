// One representative message of every type, shared by the round-trip and
// golden-frame tests (tests/data/golden/<TYPE>.hex holds their encodings).
#pragma once

#include <string>
#include <vector>

#include "messages/messages.h"

namespace zchat::testing {

inline std::vector<Message> SampleMessages() {
  const std::string token(kTokenBytes, '\x5a');
  return {
      {1, CreateAccount{"alice", "correct horse"}},
      {1, CreateSuccess{"alice"}},
      {1, CreateFailure{ErrorCode::kUsernameTaken, "username is taken"}},
      {2, LoginRequest{"alice", "correct horse", std::nullopt}},
      {2, LoginSuccess{"alice", 3, token}},
      {2, LoginFailure{ErrorCode::kBadCredentials, "bad credentials", 0}},
      {3, Logout{}},
      {3, LogoutSuccess{}},
      {4, ListAccounts{"a*", 100, std::nullopt}},
      {4, AccountList{{"alice", "anna"}, ""}},
      {5, SendMessage{"bob", "hello bob", 7}},
      {5, MessagePending{42, 7}},
      {5,
       MessageFailure{ErrorCode::kUnknownRecipient, "no such user 'bob'", 7}},
      {6, FetchMessages{10}},
      {6, FetchResult{1, 0}},
      {0, DistributeMessage{42, "alice", "hello bob", 1767225600000}},
      {7, MessageReceipt{42}},
      {0, MessageSuccess{42, "bob", 7}},
      {8, DeletionRequest{true}},
      {8, DeletionSuccess{2}},
      {8, DeletionFailure{ErrorCode::kHasPending, "2 undelivered messages", 2}},
      {9, Ping{}},
      {9, Pong{}},
      {10, Error{ErrorCode::kNotLoggedIn, "log in first"}},
      {0, MessageUndeliverable{42, "bob", 7, ErrorCode::kRecipientDeleted,
                               "recipient account was deleted"}},
      {0, SessionEnded{ErrorCode::kAccountDeleted, "account was deleted"}},
      {11, NoticeReceipt{42}},
      {12, FetchNotices{100}},
  };
}

}  // namespace zchat::testing
