#include "broker/verdict.h"

#include <utility>

#include "messages/utf8.h"

namespace zchat {

Verdict::Verdict(Status status) {
  if (!status.ok()) {
    kind_ = Kind::kRefused;
    status_ = std::move(status);
  }
}

Verdict Verdict::Refused(Status status, Stage stage) {
  assert(!status.ok());
  Verdict o(std::move(status));
  o.stage_ = stage;
  return o;
}

Verdict Verdict::Deferred(HashJob job, PendingHash pending) {
  Verdict o;
  o.kind_ = Kind::kDeferred;
  o.job_ = std::move(job);
  o.pending_hash_ = std::move(pending);
  return o;
}

Verdict&& Verdict::WithRetryAfter(uint64_t ms) && {
  retry_after_ms_ = ms;
  return std::move(*this);
}

Verdict&& Verdict::WithPending(uint64_t count) && {
  pending_ = count;
  return std::move(*this);
}

Body RefusalReply(MessageType type, const Verdict& refusal,
                  uint64_t client_msg_id,
                  const std::vector<uint64_t>& client_msg_ids) {
  const Status& s = refusal.status();
  std::string reason = s.detail();
  TruncateUtf8(reason, kMaxReasonBytes);
  if (refusal.stage() == Verdict::Stage::kDispatch) {
    return Error{s.code(), std::move(reason)};
  }
  switch (type) {
    case MessageType::kCreateAccount:
      return CreateFailure{s.code(), std::move(reason)};
    case MessageType::kLoginRequest:
      return LoginFailure{s.code(), std::move(reason),
                          refusal.retry_after_ms()};
    case MessageType::kSendMessage:
      return MessageFailure{s.code(), std::move(reason), client_msg_id,
                            client_msg_ids};
    case MessageType::kDeletionRequest:
      return DeletionFailure{s.code(), std::move(reason), refusal.pending()};
    default:
      return Error{s.code(), std::move(reason)};
  }
}

}  // namespace zchat
