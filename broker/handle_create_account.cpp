// CREATE_ACCOUNT: checks the name and password, hashes the password on the
// pool, then inserts the account (the UNIQUE key settles a race of two
// creates of one name).
#include "broker/handlers.h"
#include "broker/log.h"
#include "broker/usernames.h"

namespace zchat {

Verdict HandleCreateAccount(Context& ctx, Request&, const Message& m) {
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
  Result<std::optional<Account>> found = ctx.store.FindAccount(key);
  if (!found.ok()) return found.status();
  if (found->has_value()) {
    return Status(ErrorCode::kUsernameTaken,
                  "username '" + req.username + "' is taken");
  }
  return Verdict::Deferred(
      HashJob{HashJob::Kind::kHash, req.password, "", 0},
      PendingHash{MessageType::kCreateAccount, req.username, std::move(key)});
}

Verdict FinishCreateAccount(Context& ctx, Request& req,
                            const PendingHash& pending,
                            const HashResult& result) {
  if (!result.ok) {
    return Status(ErrorCode::kInternal, "password hashing failed");
  }
  Result<int64_t> id = ctx.store.CreateAccount(pending.username, pending.key,
                                               result.hash, ctx.now_ms);
  if (!id.ok()) return id.status();
  Log(LogLevel::kInfo, "account created: " + pending.username);
  req.Reply(CreateSuccess{pending.username});
  return Verdict::Accepted();
}

}  // namespace zchat
