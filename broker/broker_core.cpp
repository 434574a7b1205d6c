#include "broker/broker_core.h"

#include <array>
#include <utility>

#include "broker/log.h"
#include "messages/codec.h"
#include "messages/utf8.h"

namespace zchat {

// Which handler serves each message type, and in which session states.
// Replies and pushes have no entry: a client may not send them.
struct DispatchTable {
  using Entry = BrokerCore::DispatchEntry;
  std::array<Entry, kMessageTypeCount + 1> entries{};

  DispatchTable() {
    Set(MessageType::kCreateAccount, &BrokerCore::HandleCreateAccount, true,
        true);
    Set(MessageType::kLoginRequest, &BrokerCore::HandleLoginRequest, true,
        false);
    Set(MessageType::kPing, &BrokerCore::HandlePing, true, true);
    Set(MessageType::kLogout, &BrokerCore::HandleLogout, false, true);
    Set(MessageType::kListAccounts, &BrokerCore::HandleListAccounts, false,
        true);
    Set(MessageType::kSendMessage, &BrokerCore::HandleSendMessage, false, true);
    Set(MessageType::kFetchMessages, &BrokerCore::HandleFetchMessages, false,
        true);
    Set(MessageType::kMessageReceipt, &BrokerCore::HandleMessageReceipt, false,
        true);
    Set(MessageType::kDeletionRequest, &BrokerCore::HandleDeletionRequest,
        false, true);
  }
  void Set(MessageType type, BrokerCore::Handler handler, bool before,
           bool after) {
    entries[static_cast<size_t>(type)] = Entry{handler, before, after};
  }
  const Entry& Get(MessageType type) const {
    return entries[static_cast<size_t>(type)];
  }
};

namespace {
const DispatchTable& Table() {
  static const DispatchTable table;
  return table;
}
}  // namespace

// Exposed for the test that every request type has an entry.
bool HasDispatchEntry(MessageType type) {
  return Table().Get(type).handler != nullptr;
}

BrokerCore::BrokerCore(Store& store, HashPool& hashes, BrokerConfig config,
                       Clock clock)
    : store_(store),
      hashes_(hashes),
      config_(config),
      clock_(std::move(clock)),
      throttle_(config.throttle) {}

void BrokerCore::BeginBatch() {
  assert(!in_batch_);
  in_batch_ = true;
  outbox_.clear();
  owners_.clear();
  batch_requests_.clear();
  // If BEGIN fails, requests still run: reads work, writes are refused.
  in_transaction_at_start_ = store_.Begin().ok();
  if (Status s = StoreBouncedNotices(); !s.ok()) {
    Log(LogLevel::kWarn, "notices for gone senders lost: " + s.ToString());
  }
}

std::vector<OutFrame> BrokerCore::EndBatch() {
  assert(in_batch_);
  in_batch_ = false;
  if (store_.InTransaction()) {
    if (Status s = store_.Commit(); !s.ok()) FailBatch(s);
  }
  batch_requests_.clear();
  return std::move(outbox_);
}

void BrokerCore::FailBatch(const Status& status) {
  store_.Rollback();
  // Frames that do not depend on the commit (refusals, replies of requests
  // that wrote nothing) still stand; requests that wrote get storage errors.
  std::vector<OutFrame> kept;
  for (size_t i = 0; i < outbox_.size(); ++i) {
    if (owners_[i] < 0) kept.push_back(std::move(outbox_[i]));
  }
  outbox_ = std::move(kept);
  owners_.assign(outbox_.size(), -1);
  queue_sizes_.clear();  // counts and cached accounts may include
  accounts_.clear();     // rolled-back writes
  Status failure(ErrorCode::kStorage,
                 "the database refused the write: " + status.detail());
  for (const LoggedRequest& r : batch_requests_) {
    if (!r.wrote) continue;
    Message reply{r.request_id, FailureReply(r.type, r.client_msg_id, failure)};
    outbox_.push_back({r.routing_id, Encode(reply)});
    owners_.push_back(-1);
  }
  batch_requests_.clear();
}

void BrokerCore::Refuse(const Peer& peer, uint64_t request_id, Error error) {
  TruncateUtf8(error.reason, kMaxReasonBytes);
  Emit(peer.routing_id, Encode(Message{request_id, std::move(error)}));
}

void BrokerCore::Emit(std::string routing_id, std::string frame) {
  outbox_.push_back({std::move(routing_id), std::move(frame), current_group_});
  owners_.push_back(current_request_);
}

static Body NoticeBody(const Notice& n) {
  if (n.kind == NoticeKind::kDelivered) {
    return MessageSuccess{static_cast<uint64_t>(n.message_id), n.peer_name,
                          n.client_msg_id};
  }
  return MessageUndeliverable{static_cast<uint64_t>(n.message_id), n.peer_name,
                              n.client_msg_id, ErrorCode::kRecipientDeleted,
                              "recipient account was deleted"};
}

Status BrokerCore::PushNotice(int64_t account_id, const Notice& notice) {
  const std::vector<std::string> sessions = sessions_.SessionsOf(account_id);
  if (sessions.empty()) return store_.AddNotice(account_id, notice);
  const uint64_t group = next_notice_group_++;
  notice_groups_[group] =
      NoticeGroup{account_id, notice, static_cast<int>(sessions.size()), 0};
  current_group_ = group;
  PushToAccount(account_id, NoticeBody(notice));
  current_group_ = 0;
  return Status::Ok();
}

void BrokerCore::OnNoticeBounced(uint64_t group) {
  if (auto it = notice_groups_.find(group); it != notice_groups_.end()) {
    ++it->second.bounced;
  }
}

Status BrokerCore::StoreBouncedNotices() {
  Status result;
  for (const auto& [group, g] : notice_groups_) {
    if (g.bounced < g.frames) continue;  // someone got it
    Status s = store_.AddNotice(g.account_id, g.notice);
    if (!s.ok()) result = s;
  }
  notice_groups_.clear();
  return result;
}

void BrokerCore::Reply(const Peer& peer, uint64_t request_id, Body body) {
  Emit(peer.routing_id, Encode(Message{request_id, std::move(body)}));
}

void BrokerCore::Push(std::string_view routing_id, Body body) {
  Emit(std::string(routing_id), Encode(Message{0, std::move(body)}));
}

void BrokerCore::PushToAccount(int64_t account_id, const Body& body) {
  std::vector<std::string> targets = sessions_.SessionsOf(account_id);
  if (targets.empty()) return;
  const std::string frame = Encode(Message{0, body});
  for (auto& id : targets) Emit(std::move(id), frame);
}

Result<std::optional<Account>> BrokerCore::FindAccountCached(
    const std::string& key) {
  if (auto it = accounts_.find(key); it != accounts_.end()) {
    return std::optional<Account>(it->second);
  }
  Result<std::optional<Account>> found = store_.FindAccount(key);
  if (found.ok() && found->has_value()) {
    if (accounts_.size() >= kAccountCacheSize) accounts_.clear();
    accounts_.emplace(key, **found);
  }
  return found;
}

Body BrokerCore::FailureReply(MessageType type, uint64_t client_msg_id,
                              const Status& s) const {
  std::string reason = s.detail();
  TruncateUtf8(reason, kMaxReasonBytes);
  switch (type) {
    case MessageType::kCreateAccount:
      return CreateFailure{s.code(), reason};
    case MessageType::kLoginRequest:
      return LoginFailure{s.code(), reason, 0};
    case MessageType::kSendMessage:
      return MessageFailure{s.code(), reason, client_msg_id};
    case MessageType::kDeletionRequest:
      return DeletionFailure{s.code(), reason, 0};
    default:
      return Error{s.code(), reason};
  }
}

void BrokerCore::RunRequest(const LoggedRequest& logged,
                            const std::function<Status()>& work) {
  // No savepoint per request (they cost more than the request): handlers
  // check everything before their first write, so a failure after a write
  // can only be the database's, and that fails the batch.
  const auto index = static_cast<int>(batch_requests_.size());
  batch_requests_.push_back(logged);
  const size_t outbox_mark = outbox_.size();
  const int64_t changes_before = store_.TotalChanges();
  current_request_ = index;
  Status s = work();
  current_request_ = -1;
  const bool wrote = store_.TotalChanges() != changes_before;
  if (wrote) batch_requests_[index].wrote = true;
  if (s.ok()) {
    // Replies of a request that wrote nothing stand even if the commit fails.
    if (!wrote) std::fill(owners_.begin() + outbox_mark, owners_.end(), -1);
    return;
  }
  const bool had_transaction = in_transaction_at_start_;
  if (wrote || (had_transaction && !store_.InTransaction())) {
    // A partial write, or SQLite dropped the whole transaction (disk full,
    // I/O error): undo the batch so far.
    batch_requests_[index].wrote = true;
    FailBatch(s);
    in_transaction_at_start_ = store_.Begin().ok();
    return;
  }
  outbox_.resize(outbox_mark);
  owners_.resize(outbox_mark);
  Message reply{logged.request_id,
                FailureReply(logged.type, logged.client_msg_id, s)};
  Emit(logged.routing_id, Encode(reply));
}

void BrokerCore::OnFrame(std::string_view routing_id, std::string_view frame,
                         int connection) {
  assert(in_batch_);
  if (LogEnabled(LogLevel::kDebug) && !sessions_.Find(routing_id)) {
    // Local diagnostics only: routing ids never go to clients.
    static constexpr char kHex[] = "0123456789abcdef";
    std::string hex;
    for (unsigned char c : routing_id) {
      hex.push_back(kHex[c >> 4]);
      hex.push_back(kHex[c & 15]);
    }
    Log(LogLevel::kDebug, "new peer " + hex);
  }
  Peer& peer = sessions_.Touch(routing_id, connection, Now());
  uint64_t request_id = 0;
  Result<Message> decoded = Decode(frame, &request_id);
  if (!decoded.ok()) {
    Reply(peer, request_id,
          Error{decoded.status().code(), decoded.status().detail()});
    return;
  }
  Dispatch(peer, *decoded);
}

void BrokerCore::OnTransportError(std::string_view routing_id, ErrorCode code,
                                  std::string detail) {
  // No session is looked up or created: the frame is not a request.
  Emit(std::string(routing_id),
       Encode(Message{0, Error{code, std::move(detail)}}));
}

void BrokerCore::Dispatch(Peer& peer, const Message& message) {
  const MessageType type = TypeOf(message.body);
  const auto& entry = Table().Get(type);
  if (!entry.handler) {
    Refuse(peer, message.request_id,
           Error{ErrorCode::kInvalidArgument,
                 std::string(MessageTypeName(type)) +
                     " is not a request a client may send"});
    return;
  }
  if (peer.logged_in() ? !entry.after_login : !entry.before_login) {
    if (peer.logged_in()) {
      Refuse(peer, message.request_id,
             Error{ErrorCode::kAlreadyLoggedIn,
                   "this connection is already logged in; LOGOUT first"});
    } else {
      Refuse(peer, message.request_id,
             Error{ErrorCode::kNotLoggedIn,
                   std::string(MessageTypeName(type)) + " requires login"});
    }
    return;
  }
  uint64_t client_msg_id = 0;
  if (const auto* send = std::get_if<SendMessage>(&message.body)) {
    client_msg_id = send->client_msg_id;
  }
  RunRequest({peer.routing_id, message.request_id, type, client_msg_id},
             [&] { return (this->*entry.handler)(peer, message); });
}

Status BrokerCore::HandlePing(Peer& peer, const Message& m) {
  Reply(peer, m.request_id, Pong{});
  return Status::Ok();
}

void BrokerCore::EndSession(Peer& peer, ErrorCode code, std::string reason) {
  if (!peer.logged_in()) return;
  Log(LogLevel::kInfo, "session ended: " + peer.username + " (" +
                           std::string(ErrorCodeName(code)) + ")");
  Push(peer.routing_id, SessionEnded{code, std::move(reason)});
  sessions_.Logout(peer);
}

void BrokerCore::OnPeerGone(std::string_view routing_id) {
  if (const Peer* peer = sessions_.Find(routing_id);
      peer && peer->logged_in()) {
    Log(LogLevel::kInfo,
        "session ended: " + peer->username + " (connection gone)");
  }
  sessions_.Remove(routing_id);
}

void BrokerCore::OnTick() {
  const int64_t now = Now();
  for (const std::string& id :
       sessions_.SilentSince(now - config_.session_timeout_ms)) {
    if (Peer* peer = sessions_.Find(id)) {
      EndSession(*peer, ErrorCode::kSessionExpired,
                 "no traffic for " +
                     std::to_string(config_.session_timeout_ms / 1000) + " s");
    }
    sessions_.Remove(id);
  }
  throttle_.Forget(now);
  if (store_.InTransaction()) {
    store_.Prune(now - config_.dedup_window_ms,
                 now - config_.token_lifetime_ms);
  }
}

void BrokerCore::OnHashResults() {
  for (const HashResult& result : hashes_.TakeCompleted()) FinishHash(result);
}

void BrokerCore::FinishHash(const HashResult& result) {
  auto it = pending_hashes_.find(result.ticket);
  if (it == pending_hashes_.end()) return;
  PendingHash pending = std::move(it->second);
  pending_hashes_.erase(it);
  // The connection may have gone while the hash ran.
  Peer* peer = sessions_.Find(pending.routing_id);
  if (!peer) return;
  if (pending.type == MessageType::kCreateAccount) {
    FinishCreate(pending, result);
  } else {
    FinishLogin(pending, result);
  }
}

Result<int64_t> BrokerCore::QueueSize(int64_t account_id) {
  auto it = queue_sizes_.find(account_id);
  if (it != queue_sizes_.end()) return it->second;
  Result<int64_t> n = store_.CountPending(account_id);
  if (n.ok()) queue_sizes_[account_id] = *n;
  return n;
}

void BrokerCore::AdjustQueueSize(int64_t account_id, int64_t delta) {
  auto it = queue_sizes_.find(account_id);
  if (it != queue_sizes_.end()) it->second += delta;
}

// --- Username rules and wildcards -------------------------------------------

bool IsValidUsername(std::string_view name) {
  if (name.size() < kMinUsernameLength || name.size() > kMaxUsernameLength) {
    return false;
  }
  auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9');
  };
  if (!alnum(name[0])) return false;
  for (char c : name) {
    if (!alnum(c) && c != '_' && c != '.' && c != '-') return false;
  }
  return true;
}

std::string UsernameKey(std::string_view name) {
  std::string key(name);
  for (char& c : key) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return key;
}

bool WildcardMatch(std::string_view pattern, std::string_view key) {
  // Iterative matcher with single-star backtracking: O(|pattern| * |key|).
  size_t p = 0, k = 0, star = std::string_view::npos, star_k = 0;
  while (k < key.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      star_k = k;
    } else if (p < pattern.size() && pattern[p] == '?') {
      ++p, ++k;
    } else if (p < pattern.size() &&
               (pattern[p] == '\\'
                    ? p + 1 < pattern.size() && pattern[p + 1] == key[k]
                    : pattern[p] == key[k])) {
      p += pattern[p] == '\\' ? 2 : 1;
      ++k;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      k = ++star_k;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

std::string WildcardPrefix(std::string_view pattern) {
  std::string prefix;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '*' || pattern[i] == '?') break;
    if (pattern[i] == '\\') {
      if (++i == pattern.size()) break;
    }
    prefix.push_back(pattern[i]);
  }
  return prefix;
}

}  // namespace zchat
