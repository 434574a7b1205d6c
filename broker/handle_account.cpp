// Account workflows: create, login (password or token), logout, delete.
#include <sodium.h>

#include "broker/broker_core.h"
#include "broker/log.h"

namespace zchat {
namespace {

std::string HashToken(std::string_view token) {
  unsigned char out[32];
  crypto_generichash(out, sizeof out,
                     reinterpret_cast<const unsigned char*>(token.data()),
                     token.size(), nullptr, 0);
  return std::string(reinterpret_cast<char*>(out), sizeof out);
}

std::string NewToken() {
  std::string token(kTokenBytes, '\0');
  randombytes_buf(token.data(), token.size());
  return token;
}

constexpr const char* kBadCredentials = "unknown user or wrong credentials";

}  // namespace

Status BrokerCore::HandleCreateAccount(Peer& peer, const Message& m) {
  const auto& req = std::get<CreateAccount>(m.body);
  if (!IsValidUsername(req.username)) {
    return Status(ErrorCode::kInvalidUsername,
                  "usernames are 1-32 characters from A-Z a-z 0-9 _ . - and "
                  "start with a letter or digit");
  }
  if (req.password.size() < kMinPasswordBytes) {
    return Status(ErrorCode::kWeakPassword,
                  "passwords need at least " +
                      std::to_string(kMinPasswordBytes) + " bytes");
  }
  if (req.password.size() > kMaxPasswordLength) {
    return Status(ErrorCode::kPasswordTooLong,
                  "passwords may have at most " +
                      std::to_string(kMaxPasswordLength) + " bytes");
  }
  std::string key = UsernameKey(req.username);
  Result<std::optional<Account>> found = store_.FindAccount(key);
  if (!found.ok()) return found.status();
  if (found->has_value()) {
    return Status(ErrorCode::kUsernameTaken,
                  "username '" + req.username + "' is taken");
  }
  const uint64_t ticket = next_ticket_++;
  if (!hashes_.Submit({HashJob::Kind::kHash, req.password, "", ticket})) {
    return Status(ErrorCode::kBusy, "the broker is busy; retry shortly");
  }
  pending_hashes_[ticket] =
      PendingHash{peer.routing_id, m.request_id,   MessageType::kCreateAccount,
                  req.username,    std::move(key), 0};
  return Status::Ok();
}

void BrokerCore::FinishCreate(const PendingHash& pending,
                              const HashResult& result) {
  RunRequest(
      {pending.routing_id, pending.request_id, MessageType::kCreateAccount, 0},
      [&]() -> Status {
        if (!result.ok) {
          return Status(ErrorCode::kInternal, "password hashing failed");
        }
        // A concurrent create of the same name loses here: the
        // UNIQUE key answers username_taken.
        Result<int64_t> id = store_.CreateAccount(pending.username, pending.key,
                                                  result.hash, Now());
        if (!id.ok()) return id.status();
        Reply(*sessions_.Find(pending.routing_id), pending.request_id,
              CreateSuccess{pending.username});
        return Status::Ok();
      });
}

Status BrokerCore::HandleLoginRequest(Peer& peer, const Message& m) {
  const auto& req = std::get<LoginRequest>(m.body);
  const std::string key = UsernameKey(req.username);
  const int64_t now = Now();
  if (int64_t wait = throttle_.RetryAfter(key, now); wait > 0) {
    Reply(peer, m.request_id,
          LoginFailure{ErrorCode::kThrottled,
                       "too many failed logins for this user; retry later",
                       static_cast<uint64_t>(wait)});
    return Status::Ok();
  }
  std::optional<Account> account;
  if (IsValidUsername(req.username)) {
    Result<std::optional<Account>> found = store_.FindAccount(key);
    if (!found.ok()) return found.status();
    account = std::move(*found);
  }

  if (req.token) {
    const std::string hash = HashToken(*req.token);
    Result<std::optional<int64_t>> owner =
        store_.FindToken(hash, now - config_.token_lifetime_ms);
    if (!owner.ok()) return owner.status();
    if (!account || !owner->has_value() || **owner != account->id) {
      throttle_.RecordFailure(key, now);
      Reply(peer, m.request_id,
            LoginFailure{ErrorCode::kBadCredentials, kBadCredentials, 0});
      return Status::Ok();
    }
    throttle_.RecordSuccess(key);
    return StartSession(peer, *account, m.request_id, *req.token, hash);
  }

  // Unknown users are verified against a dummy hash: same cost, same answer.
  const uint64_t ticket = next_ticket_++;
  HashJob job{HashJob::Kind::kVerify, *req.password,
              account ? account->password_hash : hashes_.dummy_hash(), ticket};
  if (!hashes_.Submit(std::move(job))) {
    return Status(ErrorCode::kBusy, "the broker is busy; retry shortly");
  }
  pending_hashes_[ticket] =
      PendingHash{peer.routing_id, m.request_id, MessageType::kLoginRequest,
                  req.username,    key,          account ? account->id : 0};
  return Status::Ok();
}

void BrokerCore::FinishLogin(const PendingHash& pending,
                             const HashResult& result) {
  RunRequest(
      {pending.routing_id, pending.request_id, MessageType::kLoginRequest, 0},
      [&]() -> Status {
        Peer* peer = sessions_.Find(pending.routing_id);
        std::optional<Account> account;
        if (result.ok && pending.account_id != 0) {
          // The account may have been deleted while the hash ran.
          Result<std::optional<Account>> found =
              store_.FindAccountById(pending.account_id);
          if (!found.ok()) return found.status();
          account = std::move(*found);
        }
        if (!account) {
          throttle_.RecordFailure(pending.key, Now());
          Log(LogLevel::kInfo, "login failed: " + pending.username);
          Reply(*peer, pending.request_id,
                LoginFailure{ErrorCode::kBadCredentials, kBadCredentials, 0});
          return Status::Ok();
        }
        if (peer->logged_in()) {
          return Status(ErrorCode::kAlreadyLoggedIn,
                        "this connection is already logged in");
        }
        throttle_.RecordSuccess(pending.key);
        std::string token = NewToken();
        std::string hash = HashToken(token);
        if (Status s = store_.AddToken(hash, account->id, Now()); !s.ok()) {
          return s;
        }
        return StartSession(*peer, *account, pending.request_id,
                            std::move(token), std::move(hash));
      });
}

Status BrokerCore::StartSession(Peer& peer, const Account& account,
                                uint64_t request_id, std::string token,
                                std::string token_hash) {
  Result<int64_t> pending = QueueSize(account.id);
  if (!pending.ok()) return pending.status();
  Result<std::vector<Notice>> notices = store_.TakeNotices(account.id);
  if (!notices.ok()) return notices.status();
  sessions_.Login(peer, account.id, account.name, std::move(token_hash));
  if (LogEnabled(LogLevel::kInfo)) {
    Log(LogLevel::kInfo,
        "login: " + account.name + " (" +
            std::to_string(sessions_.SessionsOf(account.id).size()) +
            " sessions, " + std::to_string(*pending) + " waiting)");
  }
  Reply(peer, request_id,
        LoginSuccess{account.name, static_cast<uint64_t>(*pending),
                     std::move(token)});
  // Notices stored while this user had no session, oldest first.
  for (const Notice& n : *notices) {
    if (Status s = PushNotice(account.id, n); !s.ok()) return s;
  }
  return Status::Ok();
}

Status BrokerCore::HandleLogout(Peer& peer, const Message& m) {
  if (!peer.token_hash.empty()) {
    if (Status s = store_.RevokeToken(peer.token_hash); !s.ok()) return s;
  }
  Log(LogLevel::kInfo, "logout: " + peer.username);
  sessions_.Logout(peer);
  Reply(peer, m.request_id, LogoutSuccess{});
  return Status::Ok();
}

Status BrokerCore::HandleDeletionRequest(Peer& peer, const Message& m) {
  const auto& req = std::get<DeletionRequest>(m.body);
  const int64_t id = peer.account_id;
  Result<int64_t> pending = QueueSize(id);
  if (!pending.ok()) return pending.status();
  if (*pending > 0 && !req.force) {
    Reply(peer, m.request_id,
          DeletionFailure{ErrorCode::kHasPending,
                          std::to_string(*pending) +
                              " undelivered messages would be discarded; "
                              "send force to delete anyway",
                          static_cast<uint64_t>(*pending)});
    return Status::Ok();
  }
  Result<std::vector<QueuedMessage>> purged = store_.DeleteAccount(id);
  if (!purged.ok()) return purged.status();
  queue_sizes_.erase(id);
  accounts_.erase(UsernameKey(peer.username));
  // Every sender of a discarded message learns it will never arrive.
  for (const QueuedMessage& q : *purged) {
    if (q.sender_id == id) continue;
    if (!sessions_.IsOnline(q.sender_id)) {
      Result<std::optional<Account>> sender =
          store_.FindAccountById(q.sender_id);
      if (!sender.ok()) return sender.status();
      if (!sender->has_value()) continue;  // the sender is gone too
    }
    Status s =
        PushNotice(q.sender_id, Notice{NoticeKind::kUndeliverable, q.id,
                                       q.recipient_name, q.client_msg_id});
    if (!s.ok()) return s;
  }
  Log(LogLevel::kInfo, "account deleted: " + peer.username + " (" +
                           std::to_string(purged->size()) +
                           " undelivered messages discarded)");
  Reply(peer, m.request_id,
        DeletionSuccess{static_cast<uint64_t>(purged->size())});
  for (const std::string& other : sessions_.SessionsOf(id)) {
    if (Peer* p = sessions_.Find(other); p && p != &peer) {
      EndSession(*p, ErrorCode::kAccountDeleted, "the account was deleted");
    }
  }
  sessions_.Logout(peer);
  return Status::Ok();
}

}  // namespace zchat
