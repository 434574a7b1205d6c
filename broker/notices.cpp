#include "broker/notices.h"

#include "messages/codec.h"

namespace zchat {

Body Notices::ToBody(const Notice& n) {
  if (n.kind == NoticeKind::kDelivered) {
    return MessageSuccess{static_cast<uint64_t>(n.message_id), n.peer_name,
                          n.client_msg_id};
  }
  return MessageUndeliverable{static_cast<uint64_t>(n.message_id), n.peer_name,
                              n.client_msg_id, ErrorCode::kRecipientDeleted,
                              "recipient account was deleted"};
}

Status Notices::Deliver(Responder& out, int64_t account_id,
                        const Notice& notice) {
  const std::vector<std::string> sessions = sessions_.SessionsOf(account_id);
  if (sessions.empty()) return store_.AddNotice(account_id, notice);
  const uint64_t group = next_group_++;
  groups_[group] =
      Group{account_id, notice, static_cast<int>(sessions.size()), 0};
  const std::string frame = Encode(Message{0, ToBody(notice)});
  for (const std::string& id : sessions) out.PushFrame(id, frame, group);
  return Status::Ok();
}

Status Notices::DeliverStored(Responder& out, int64_t account_id) {
  Result<std::vector<Notice>> stored = store_.TakeNotices(account_id);
  if (!stored.ok()) return stored.status();
  for (const Notice& n : *stored) {
    if (Status s = Deliver(out, account_id, n); !s.ok()) return s;
  }
  return Status::Ok();
}

void Notices::OnBounced(uint64_t group) {
  if (auto it = groups_.find(group); it != groups_.end()) ++it->second.bounced;
}

Status Notices::StoreBounced() {
  Status result;
  for (const auto& [id, g] : groups_) {
    if (g.bounced < g.frames) continue;  // some session got it
    if (Status s = store_.AddNotice(g.account_id, g.notice); !s.ok()) {
      result = s;
    }
  }
  groups_.clear();
  return result;
}

}  // namespace zchat
