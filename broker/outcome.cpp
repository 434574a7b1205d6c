#include "broker/outcome.h"

#include <utility>

#include "messages/utf8.h"

namespace zchat {

Outcome::Outcome(Status status) {
  if (!status.ok()) {
    kind_ = Kind::kRefused;
    status_ = std::move(status);
  }
}

Outcome Outcome::Refused(Status status, Stage stage) {
  assert(!status.ok());
  Outcome o(std::move(status));
  o.stage_ = stage;
  return o;
}

Outcome Outcome::Deferred(HashJob job, PendingHash pending) {
  Outcome o;
  o.kind_ = Kind::kDeferred;
  o.job_ = std::move(job);
  o.pending_hash_ = std::move(pending);
  return o;
}

Outcome&& Outcome::WithRetryAfter(uint64_t ms) && {
  retry_after_ms_ = ms;
  return std::move(*this);
}

Outcome&& Outcome::WithPending(uint64_t count) && {
  pending_ = count;
  return std::move(*this);
}

Body RefusalReply(MessageType type, const Outcome& refusal,
                  uint64_t client_msg_id) {
  const Status& s = refusal.status();
  std::string reason = s.detail();
  TruncateUtf8(reason, kMaxReasonBytes);
  if (refusal.stage() == Outcome::Stage::kDispatch) {
    return Error{s.code(), std::move(reason)};
  }
  switch (type) {
    case MessageType::kCreateAccount:
      return CreateFailure{s.code(), std::move(reason)};
    case MessageType::kLoginRequest:
      return LoginFailure{s.code(), std::move(reason),
                          refusal.retry_after_ms()};
    case MessageType::kSendMessage:
      return MessageFailure{s.code(), std::move(reason), client_msg_id};
    case MessageType::kDeletionRequest:
      return DeletionFailure{s.code(), std::move(reason), refusal.pending()};
    default:
      return Error{s.code(), std::move(reason)};
  }
}

}  // namespace zchat
