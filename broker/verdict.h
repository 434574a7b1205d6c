// Verdict: what a handler returns. A request is accepted (its replies are in
// its Responder), deferred (it waits for password hashing and finishes
// later), or refused with a code, a reason and, for some codes, a detail
// field. Refusals are values: handlers never build failure replies;
// RefusalReply is the one place that turns a refusal into what the client
// sees.
#pragma once

#include <cstdint>
#include <string>

#include "broker/hash_pool.h"
#include "messages/messages.h"
#include "messages/status.h"

namespace zchat {

// What a request deferred to the hash pool needs when the hash is done.
struct PendingHash {
  MessageType type = MessageType::kCreateAccount;
  std::string username;       // as given
  std::string key;            // case-folded
  int64_t account_id = 0;     // login: the account checked (0: unknown user)
  std::string checked_hash;   // login: the stored hash the password was
                              // verified against
  bool batch_pushes = false;  // login: as asked (LoginRequest)
};

class [[nodiscard]] Verdict {
 public:
  enum class Kind { kAccepted, kDeferred, kRefused };
  // Where a refusal was decided: the dispatcher's refusals (wrong session
  // state, a type a client may not send) always come as ERROR; a handler's
  // come as the request type's own failure reply where it has one.
  enum class Stage { kDispatch, kHandler };

  static Verdict Accepted() { return Verdict(); }
  static Verdict Refused(Status status, Stage stage = Stage::kHandler);
  // Hands `job` to the password-hashing pool; the request finishes in its
  // route's finisher with `pending`.
  static Verdict Deferred(HashJob job, PendingHash pending);
  // A store failure or a refusal code as a Status.
  Verdict(Status status);  // NOLINT: implicit, so handlers return statuses

  // Detail fields some refusals carry (0: absent).
  Verdict&& WithRetryAfter(uint64_t ms) &&;
  Verdict&& WithPending(uint64_t count) &&;

  Kind kind() const { return kind_; }
  bool refused() const { return kind_ == Kind::kRefused; }
  bool deferred() const { return kind_ == Kind::kDeferred; }
  const Status& status() const { return status_; }
  Stage stage() const { return stage_; }
  uint64_t retry_after_ms() const { return retry_after_ms_; }
  uint64_t pending() const { return pending_; }
  HashJob& job() { return job_; }
  PendingHash& pending_hash() { return pending_hash_; }

 private:
  Verdict() = default;

  Kind kind_ = Kind::kAccepted;
  Status status_;
  Stage stage_ = Stage::kHandler;
  uint64_t retry_after_ms_ = 0;
  uint64_t pending_ = 0;
  HashJob job_;
  PendingHash pending_hash_;
};

// The reply a client gets for a refused request of `type` (MESSAGE_FAILURE
// echoes a SEND_MESSAGE's `client_msg_id`, or its batch form's
// `client_msg_ids`).
Body RefusalReply(MessageType type, const Verdict& refusal,
                  uint64_t client_msg_id,
                  const std::vector<uint64_t>& client_msg_ids = {});

}  // namespace zchat
