#include "broker/dispatcher.h"

#include <array>
#include <string>

#include "broker/handlers.h"

namespace zchat {
namespace {

constexpr uint8_t kAnonymous =
    1u << static_cast<unsigned>(SessionState::kAnonymous);
constexpr uint8_t kLoggedIn = 1u
                              << static_cast<unsigned>(SessionState::kLoggedIn);
constexpr uint8_t kAny = kAnonymous | kLoggedIn;

struct Table {
  std::array<Route, kMessageTypeCount + 1> routes{};

  Table() {
    Set(MessageType::kCreateAccount,
        {HandleCreateAccount, FinishCreateAccount, kAny});
    Set(MessageType::kLoginRequest,
        {HandleLoginRequest, FinishLoginRequest, kAnonymous});
    Set(MessageType::kPing, {HandlePing, nullptr, kAny});
    Set(MessageType::kLogout, {HandleLogout, nullptr, kLoggedIn});
    Set(MessageType::kListAccounts, {HandleListAccounts, nullptr, kLoggedIn});
    Set(MessageType::kSendMessage, {HandleSendMessage, nullptr, kLoggedIn});
    Set(MessageType::kFetchMessages, {HandleFetchMessages, nullptr, kLoggedIn});
    Set(MessageType::kMessageReceipt,
        {HandleMessageReceipt, nullptr, kLoggedIn});
    Set(MessageType::kDeletionRequest,
        {HandleDeletionRequest, nullptr, kLoggedIn});
    Set(MessageType::kNoticeReceipt, {HandleNoticeReceipt, nullptr, kLoggedIn});
    Set(MessageType::kFetchNotices, {HandleFetchNotices, nullptr, kLoggedIn});
  }
  void Set(MessageType type, Route route) {
    routes[static_cast<size_t>(type)] = route;
  }
};

}  // namespace

const Route* FindRoute(MessageType type) {
  static const Table table;
  const auto index = static_cast<size_t>(type);
  if (index >= table.routes.size()) return nullptr;
  const Route& route = table.routes[index];
  return route.handle ? &route : nullptr;
}

Verdict RefuseNotARequest(MessageType type) {
  return Verdict::Refused(Status(ErrorCode::kInvalidArgument,
                                 std::string(MessageTypeName(type)) +
                                     " is not a request a client may send"),
                          Verdict::Stage::kDispatch);
}

Verdict RefuseInState(MessageType type, SessionState state) {
  if (state == SessionState::kLoggedIn) {
    return Verdict::Refused(
        Status(ErrorCode::kAlreadyLoggedIn,
               "this connection is already logged in; LOGOUT first"),
        Verdict::Stage::kDispatch);
  }
  return Verdict::Refused(
      Status(ErrorCode::kNotLoggedIn,
             std::string(MessageTypeName(type)) + " requires login"),
      Verdict::Stage::kDispatch);
}

}  // namespace zchat
