// DELETION_REQUEST: refused while messages wait, unless forced; a forced
// deletion discards them and tells each sender (MESSAGE_UNDELIVERABLE). The
// account's other sessions end with SESSION_ENDED.
#include "broker/handlers.h"
#include "broker/log.h"

namespace zchat {

Verdict HandleDeletionRequest(Context& ctx, Request& req, const Message& m) {
  const auto& deletion = std::get<DeletionRequest>(m.body);
  Peer& peer = req.peer;
  const int64_t id = peer.account_id;
  Result<int64_t> pending = ctx.store.CountPending(id);
  if (!pending.ok()) return pending.status();
  if (*pending > 0 && !deletion.force) {
    return Verdict(Status(ErrorCode::kHasPending,
                          std::to_string(*pending) +
                              " undelivered messages would be discarded; "
                              "send force to delete anyway"))
        .WithPending(static_cast<uint64_t>(*pending));
  }
  Result<std::vector<QueuedMessage>> purged = ctx.store.DeleteAccount(id);
  if (!purged.ok()) return purged.status();
  // Every sender of a discarded message learns it will never arrive.
  for (const QueuedMessage& q : *purged) {
    if (q.sender_id == id) continue;
    Status s = ctx.notices.Deliver(req.out, q.sender_id,
                                   Notice{NoticeKind::kUndeliverable, q.id,
                                          q.recipient_name, q.client_msg_id},
                                   ctx.now_ms);
    if (!s.ok()) return s;
  }
  Log(LogLevel::kInfo, "account deleted: " + peer.username + " (" +
                           std::to_string(purged->size()) +
                           " undelivered messages discarded)");
  // Sessions of the account on other brokers sharing the store end too.
  NotifyOtherBrokers(ctx, id, "d " + std::to_string(id));
  req.Reply(DeletionSuccess{static_cast<uint64_t>(purged->size())});
  for (const std::string& other : ctx.sessions.SessionsOf(id)) {
    Peer* p = ctx.sessions.Find(other);
    if (!p || p == &peer) continue;
    req.out.Push(other, SessionEnded{ErrorCode::kAccountDeleted,
                                     "the account was deleted"});
    ChangeSession(ctx, req.out, *p, [&] { ctx.sessions.Logout(*p); });
  }
  ChangeSession(ctx, req.out, peer, [&] { ctx.sessions.Logout(peer); });
  return Verdict::Accepted();
}

}  // namespace zchat
