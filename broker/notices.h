// Notices: the sender's side of delivery. MESSAGE_SUCCESS and
// MESSAGE_UNDELIVERABLE go to every session of the sender; a sender with no
// session gets them from the store at its next login. A notice pushed to
// sessions that all turn out to be gone (every frame bounced) is stored
// too, at the start of the next batch. Loop thread only.
#pragma once

#include <cstdint>
#include <unordered_map>

#include "broker/batch.h"
#include "broker/session_table.h"
#include "broker/store.h"

namespace zchat {

class Notices {
 public:
  Notices(Store& store, SessionTable& sessions)
      : store_(store), sessions_(sessions) {}

  // Tells `account_id` now, or stores the notice for its next login.
  [[nodiscard]] Status Deliver(Responder& out, int64_t account_id,
                               const Notice& notice);
  // Pushes the notices stored for `account_id`, oldest first, and removes
  // them from the store (in the batch's transaction).
  [[nodiscard]] Status DeliverStored(Responder& out, int64_t account_id);

  // A frame of a notice group bounced (see OutFrame::notice_group).
  void OnBounced(uint64_t group);
  // Stores the notices of the last batch that reached no session. Called at
  // the start of a batch, inside its transaction.
  [[nodiscard]] Status StoreBounced();

  static Body ToBody(const Notice& notice);

 private:
  struct Group {
    int64_t account_id = 0;
    Notice notice;
    int frames = 0;
    int bounced = 0;
  };
  Store& store_;
  SessionTable& sessions_;
  // Groups sent by the last batch, checked at the next StoreBounced.
  std::unordered_map<uint64_t, Group> groups_;
  uint64_t next_group_ = 1;
};

}  // namespace zchat
