// LOGIN_REQUEST: by token (checked at once) or by password (verified on the
// hash pool; unknown users against a dummy hash, so both cost the same and
// get the same answer). Throttled per username.
#include <sodium.h>

#include "broker/handlers.h"
#include "broker/log.h"
#include "broker/usernames.h"

namespace zchat {
namespace {

constexpr const char* kBadCredentials = "unknown user or wrong credentials";

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

Verdict BadCredentials() {
  return Status(ErrorCode::kBadCredentials, kBadCredentials);
}

// The session starts: LOGIN_SUCCESS, then the oldest notices the user has not
// acknowledged (up to one fetch's worth; FETCH_NOTICES gets the rest).
Verdict StartSession(Context& ctx, Request& req, const Account& account,
                     std::string token, std::string token_hash,
                     bool batch_pushes) {
  // Other brokers sharing the store push this account's messages here from
  // now on (a store of one broker ignores this). First, so that what they
  // commit meanwhile is either pushed here or read below (store.h).
  if (Status s = ctx.store.BeginSession(account.id); !s.ok()) return s;
  Result<int64_t> pending = ctx.store.CountPending(account.id);
  if (!pending.ok()) return pending.status();
  ChangeSession(ctx, req.out, req.peer, [&] {
    ctx.sessions.CompleteLogin(req.peer, account.id, account.name,
                               std::move(token_hash), batch_pushes);
  });
  if (LogEnabled(LogLevel::kInfo)) {
    Log(LogLevel::kInfo,
        "login: " + account.name + " (" +
            std::to_string(ctx.sessions.SessionsOf(account.id).size()) +
            " sessions, " + std::to_string(*pending) + " waiting)");
  }
  req.Reply(LoginSuccess{account.name, static_cast<uint64_t>(*pending),
                         std::move(token)});
  Result<Notices::Resent> resent =
      ctx.notices.Resend(req.out, req.peer.routing_id, account.id,
                         static_cast<int64_t>(kMaxFetchLimit));
  if (!resent.ok()) return resent.status();
  return Verdict::Accepted();
}

}  // namespace

Verdict HandleLoginRequest(Context& ctx, Request& req, const Message& m) {
  const auto& login = std::get<LoginRequest>(m.body);
  const std::string key = UsernameKey(login.username);
  if (int64_t wait = ctx.throttle.RetryAfter(key, ctx.now_ms); wait > 0) {
    return Verdict(Status(ErrorCode::kThrottled,
                          "too many failed logins for this user; retry later"))
        .WithRetryAfter(static_cast<uint64_t>(wait));
  }
  std::optional<Account> account;
  if (IsValidUsername(login.username)) {
    Result<std::optional<Account>> found = ctx.store.FindAccount(key);
    if (!found.ok()) return found.status();
    account = std::move(*found);
  }

  if (login.token) {
    const std::string hash = HashToken(*login.token);
    Result<std::optional<int64_t>> owner =
        ctx.store.FindToken(hash, ctx.now_ms - ctx.config.token_lifetime_ms);
    if (!owner.ok()) return owner.status();
    if (!account || !owner->has_value() || **owner != account->id) {
      ctx.throttle.RecordFailure(key, ctx.now_ms);
      return BadCredentials();
    }
    ctx.throttle.RecordSuccess(key);
    return StartSession(ctx, req, *account, *login.token, hash,
                        login.batch_pushes);
  }

  std::string checked =
      account ? account->password_hash : ctx.hashes.dummy_hash();
  HashJob job{HashJob::Kind::kVerify, *login.password, checked, 0};
  return Verdict::Deferred(
      std::move(job), PendingHash{MessageType::kLoginRequest, login.username,
                                  key, account ? account->id : 0,
                                  std::move(checked), login.batch_pushes});
}

Verdict FinishLoginRequest(Context& ctx, Request& req,
                           const PendingHash& pending,
                           const HashResult& result) {
  std::optional<Account> account;
  if (result.ok && pending.account_id != 0) {
    // The account may have been deleted while the hash ran; the password
    // was checked against this account's hash only.
    Result<std::optional<Account>> found =
        ctx.store.FindAccountById(pending.account_id);
    if (!found.ok()) return found.status();
    if (found->has_value() && (*found)->password_hash == pending.checked_hash) {
      account = std::move(*found);
    }
  }
  if (!account) {
    ctx.throttle.RecordFailure(pending.key, ctx.now_ms);
    Log(LogLevel::kInfo, "login failed: " + pending.username);
    return BadCredentials();
  }
  ctx.throttle.RecordSuccess(pending.key);
  std::string token = NewToken();
  std::string hash = HashToken(token);
  if (Status s = ctx.store.AddToken(hash, account->id, ctx.now_ms); !s.ok()) {
    return s;
  }
  return StartSession(ctx, req, *account, std::move(token), std::move(hash),
                      pending.batch_pushes);
}

}  // namespace zchat
