#include "broker/notices.h"

#include <algorithm>
#include <cstdio>

#include "broker/log.h"
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

std::string Notices::ToItem(int64_t account_id, const Notice& n) {
  return "n " + std::to_string(account_id) + " " +
         std::to_string(n.message_id) + " " +
         std::to_string(static_cast<int>(n.kind)) + " " +
         std::to_string(n.client_msg_id) + " " + n.peer_name;
}

bool Notices::FromItem(std::string_view item, int64_t* account_id, Notice* n) {
  // Usernames hold no spaces, so the peer name is the rest of the line.
  char peer[128] = {};
  long long account = 0, message = 0;
  int kind = 0;
  unsigned long long cmid = 0;
  const std::string text(item);
  if (std::sscanf(text.c_str(), "n %lld %lld %d %llu %127s", &account, &message,
                  &kind, &cmid, peer) != 5) {
    return false;
  }
  *account_id = account;
  *n = Notice{static_cast<NoticeKind>(kind), message, peer, cmid};
  return true;
}

Status Notices::Deliver(Responder& out, int64_t account_id,
                        const Notice& notice, int64_t now_ms) {
  return Deliver(out, account_id, std::span<const Notice>(&notice, 1), now_ms);
}

Status Notices::Deliver(Responder& out, int64_t account_id,
                        std::span<const Notice> notices, int64_t now_ms) {
  each_.clear();
  batched_.clear();
  sessions_.SessionsOf(account_id, &each_, &batched_);
  if (each_.empty() && batched_.empty()) {
    // An online account exists (deletion ends its sessions); an offline one
    // may be gone, and then nobody is left to tell.
    Result<std::optional<Account>> account = store_.FindAccountById(account_id);
    if (!account.ok()) return account.status();
    if (!account->has_value()) return Status::Ok();
  }
  for (const Notice& notice : notices) {
    if (Status s = store_.AddNotice(account_id, notice, cap_); !s.ok()) {
      return s;
    }
    if (store_.Shared()) {  // the item is built only for other brokers
      store_.NotifyBrokersOf(account_id, ToItem(account_id, notice), now_ms);
    }
  }
  Push(out, each_, batched_, notices);
  return Status::Ok();
}

void Notices::Push(Responder& out, const std::vector<std::string>& each,
                   const std::vector<std::string>& batched,
                   std::span<const Notice> notices) {
  if (!each.empty()) {
    for (const Notice& n : notices) out.PushFrameTo(each, Encode(0, ToBody(n)));
  }
  if (batched.empty()) return;
  size_t i = 0;
  while (i < notices.size()) {
    // The run of MESSAGE_SUCCESS to one recipient that starts at i.
    size_t end = i + 1;
    if (notices[i].kind == NoticeKind::kDelivered) {
      while (end < notices.size() && end - i < kMaxReceiptIds &&
             notices[end].kind == NoticeKind::kDelivered &&
             notices[end].peer_name == notices[i].peer_name) {
        ++end;
      }
    }
    if (end - i == 1) {
      out.PushFrameTo(batched, Encode(0, ToBody(notices[i])));
    } else {
      MessageSuccess run;
      run.recipient = notices[i].peer_name;
      run.message_ids.reserve(end - i);
      run.client_msg_ids.reserve(end - i);
      for (size_t k = i; k < end; ++k) {
        run.message_ids.push_back(static_cast<uint64_t>(notices[k].message_id));
        run.client_msg_ids.push_back(notices[k].client_msg_id);
      }
      out.PushFrameTo(batched, Encode(0, Body(std::move(run))));
    }
    i = end;
  }
}

Result<Notices::Resent> Notices::Resend(Responder& out,
                                        std::string_view routing_id,
                                        int64_t account_id, int64_t limit) {
  Result<int64_t> total = store_.CountNotices(account_id);
  if (!total.ok()) return total.status();
  Resent resent;
  if (*total == 0) return resent;
  Result<std::vector<Notice>> stored = store_.ListNotices(account_id, limit);
  if (!stored.ok()) return stored.status();
  const Peer* peer = sessions_.Find(routing_id);
  std::vector<std::string> to{std::string(routing_id)}, none;
  if (peer && peer->batch_pushes) {
    Push(out, none, to, *stored);
  } else {
    Push(out, to, none, *stored);
  }
  resent.count = static_cast<int64_t>(stored->size());
  resent.remaining = std::max<int64_t>(0, *total - resent.count);
  return resent;
}

Status Notices::Acknowledge(int64_t account_id, int64_t message_id) {
  return store_.AckNotice(account_id, message_id);
}

}  // namespace zchat
