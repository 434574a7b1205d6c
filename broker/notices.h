// Notices: the sender's side of delivery, at-least-once. A MESSAGE_SUCCESS or
// MESSAGE_UNDELIVERABLE is stored in the transaction of the receipt (or
// forced deletion) that caused it, pushed at once to every session of the
// sender, pushed again after each of the sender's logins and on
// FETCH_NOTICES, and removed only when the sender acknowledges it
// (NOTICE_RECEIPT). Clients drop repeats by message id. An account keeps at
// most `cap` notices: past it, those of its oldest messages are dropped (and
// logged). Loop thread only.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "broker/batch.h"
#include "broker/session_table.h"
#include "broker/store.h"

namespace zchat {

class Notices {
 public:
  Notices(Store& store, SessionTable& sessions, int64_t cap)
      : store_(store), sessions_(sessions), cap_(cap) {}

  // Stores the notice for `account_id` and pushes it to its sessions. An
  // account that no longer exists gets nothing.
  // With several brokers on one store, the sender's sessions on the others
  // are told too (`now_ms` checks their leases).
  [[nodiscard]] Status Deliver(Responder& out, int64_t account_id,
                               const Notice& notice, int64_t now_ms);
  // The same for several notices of one account (one receipt's, say):
  // sessions that take the batch form get a MESSAGE_SUCCESS for each run
  // of notices to one recipient instead of one for each notice.
  [[nodiscard]] Status Deliver(Responder& out, int64_t account_id,
                               std::span<const Notice> notices, int64_t now_ms);
  // The item that tells another broker of a notice (context.h), and back.
  static std::string ToItem(int64_t account_id, const Notice& notice);
  static bool FromItem(std::string_view item, int64_t* account_id,
                       Notice* notice);

  struct Resent {
    int64_t count = 0;      // notices pushed
    int64_t remaining = 0;  // notices stored but not pushed
  };
  // Pushes the oldest `limit` notices of `account_id` to one session (after
  // a login, or for FETCH_NOTICES). Reads only.
  [[nodiscard]] Result<Resent> Resend(Responder& out,
                                      std::string_view routing_id,
                                      int64_t account_id, int64_t limit);

  // The sender has the notice of `message_id`: forget it. Unknown or already
  // acknowledged: nothing happens.
  [[nodiscard]] Status Acknowledge(int64_t account_id, int64_t message_id);

  static Body ToBody(const Notice& notice);

 private:
  // Pushes `notices` (oldest first) to the sessions `each` (a frame a
  // notice) and `batched` (a frame for each run of MESSAGE_SUCCESS to one
  // recipient, up to kMaxReceiptIds; any other notice alone).
  static void Push(Responder& out, const std::vector<std::string>& each,
                   const std::vector<std::string>& batched,
                   std::span<const Notice> notices);

  Store& store_;
  SessionTable& sessions_;
  const int64_t cap_;
  // Deliver's lists of sessions, kept from call to call (their buffers
  // reused).
  std::vector<std::string> each_, batched_;
};

}  // namespace zchat
