// BrokerCore: decodes each request, checks it against the dispatch table
// (which session states allow it), runs its handler, and collects replies and
// pushes in an outbox. It never touches a socket, so every workflow can be
// tested without a network. Work is grouped into batches: BeginBatch, any
// number of OnFrame/OnHashResults/OnTick calls, then EndBatch commits the
// batch's writes in one transaction and returns the frames to send.
// Loop thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "broker/hash_pool.h"
#include "broker/login_throttle.h"
#include "broker/session_table.h"
#include "broker/store.h"
#include "messages/messages.h"
#include "messages/status.h"

namespace zchat {

// Semantic limits (the codec's are in messages/messages.h).
inline constexpr size_t kMinUsernameLength = 1;
inline constexpr size_t kMaxUsernameLength = 32;
inline constexpr size_t kMinPasswordBytes = 8;
inline constexpr size_t kMaxPasswordLength = 256;
inline constexpr uint64_t kDefaultListLimit = 100;
inline constexpr int64_t kListScanBudget = 2000;
inline constexpr size_t kAccountCacheSize = 100'000;

struct BrokerConfig {
  int64_t session_timeout_ms = 60'000;
  int64_t max_queue_per_user = 100'000;
  int64_t dedup_window_ms = 7LL * 24 * 3600 * 1000;
  int64_t token_lifetime_ms = 30LL * 24 * 3600 * 1000;
  ThrottlePolicy throttle;
};

struct OutFrame {
  std::string routing_id;
  std::string frame;
  // Nonzero for a sender notice (MESSAGE_SUCCESS, MESSAGE_UNDELIVERABLE):
  // if every frame of its group bounces (the peer is gone), the notice is
  // stored for the sender's next login instead of being lost.
  uint64_t notice_group = 0;
};

class BrokerCore {
 public:
  using Clock = std::function<int64_t()>;  // Unix time, milliseconds

  BrokerCore(Store& store, HashPool& hashes, BrokerConfig config, Clock clock);

  void BeginBatch();
  // One frame from a peer. `connection` identifies the transport connection
  // it came on (the socket descriptor; -1 if unknown): a routing id that
  // shows up on another connection is a new peer, not the old session.
  void OnFrame(std::string_view routing_id, std::string_view frame,
               int connection = -1);
  // A message the transport refused before decoding (several parts, a
  // client-chosen routing id): answered with ERROR, request id 0.
  void OnTransportError(std::string_view routing_id, ErrorCode code,
                        std::string detail);
  // Finishes password work that the hash pool completed.
  void OnHashResults();
  // Ends sessions silent past the timeout; prunes old dedup ids and tokens.
  void OnTick();
  // Commits the batch and returns what to send, in order. If the commit
  // fails, nothing of the batch is applied and every request in it gets an
  // ERROR storage instead of its replies.
  std::vector<OutFrame> EndBatch();

  // The transport could not deliver to this peer (it is gone): its session
  // ends. Queued messages stay queued.
  void OnPeerGone(std::string_view routing_id);
  // A frame of a notice group bounced (see OutFrame::notice_group).
  void OnNoticeBounced(uint64_t group);

  const SessionTable& sessions() const { return sessions_; }

 private:
  // What must be known about a request to answer it when its batch fails.
  struct LoggedRequest {
    std::string routing_id;
    uint64_t request_id;
    MessageType type;
    uint64_t client_msg_id;
    bool wrote = false;  // its effects are part of the batch's transaction
  };
  // A request waiting for the hash pool.
  struct PendingHash {
    std::string routing_id;
    uint64_t request_id = 0;
    MessageType type = MessageType::kCreateAccount;
    std::string username;    // as given
    std::string key;         // case-folded
    int64_t account_id = 0;  // login: the account checked (0: unknown user)
  };
  using Handler = Status (BrokerCore::*)(Peer&, const Message&);
  struct DispatchEntry {
    Handler handler = nullptr;
    bool before_login = false;
    bool after_login = false;
  };
  friend struct DispatchTable;

  void Dispatch(Peer& peer, const Message& message);
  void Reply(const Peer& peer, uint64_t request_id, Body body);
  // An ERROR that does not depend on the batch's commit (bad frame, wrong
  // state): it is sent even if the commit fails.
  void Refuse(const Peer& peer, uint64_t request_id, Error error);
  // Appends a frame to the outbox, owned by the request running (if any).
  void Emit(std::string routing_id, std::string frame);
  // Account lookup by key through a small cache (sends look up recipients).
  Result<std::optional<Account>> FindAccountCached(const std::string& key);
  void Push(std::string_view routing_id, Body body);
  void PushToAccount(int64_t account_id, const Body& body);
  // PushToAccount for a sender notice: stored if no session can take it.
  Status PushNotice(int64_t account_id, const Notice& notice);
  Status StoreBouncedNotices();
  // One place that turns a failed request into the reply the client sees.
  Body FailureReply(MessageType type, uint64_t client_msg_id,
                    const Status& status) const;
  void FailBatch(const Status& status);
  void EndSession(Peer& peer, ErrorCode code, std::string reason);
  Status StartSession(Peer& peer, const Account& account, uint64_t request_id,
                      std::string token, std::string token_hash);
  void DeliverStoredNotices(int64_t account_id);
  void FinishHash(const HashResult& result);
  void FinishCreate(const PendingHash& pending, const HashResult& result);
  void FinishLogin(const PendingHash& pending, const HashResult& result);
  // Runs `work` in a savepoint; on failure undoes its writes and replies.
  void RunRequest(const LoggedRequest& logged,
                  const std::function<Status()>& work);
  int64_t Now() const { return clock_(); }
  // Undelivered messages for an account, cached (counting is O(queue)).
  Result<int64_t> QueueSize(int64_t account_id);
  void AdjustQueueSize(int64_t account_id, int64_t delta);

  // Handlers, one per request type (handle_account.cpp, handle_message.cpp,
  // handle_list.cpp).
  Status HandleCreateAccount(Peer& peer, const Message& m);
  Status HandleLoginRequest(Peer& peer, const Message& m);
  Status HandleLogout(Peer& peer, const Message& m);
  Status HandleListAccounts(Peer& peer, const Message& m);
  Status HandleSendMessage(Peer& peer, const Message& m);
  Status HandleFetchMessages(Peer& peer, const Message& m);
  Status HandleMessageReceipt(Peer& peer, const Message& m);
  Status HandleDeletionRequest(Peer& peer, const Message& m);
  Status HandlePing(Peer& peer, const Message& m);

  Store& store_;
  HashPool& hashes_;
  const BrokerConfig config_;
  const Clock clock_;
  SessionTable sessions_;
  LoginThrottle throttle_;
  std::unordered_map<uint64_t, PendingHash> pending_hashes_;
  uint64_t next_ticket_ = 1;
  std::unordered_map<int64_t, int64_t> queue_sizes_;

  bool in_batch_ = false;
  std::vector<OutFrame> outbox_;
  std::vector<LoggedRequest> batch_requests_;
  // For each outbox frame: the index in batch_requests_ of the request whose
  // writes it reports, or -1 if it stands whether or not the batch commits.
  std::vector<int> owners_;
  int current_request_ = -1;
  bool in_transaction_at_start_ = false;
  std::unordered_map<std::string, Account> accounts_;
  struct NoticeGroup {
    int64_t account_id = 0;
    Notice notice;
    int frames = 0;
    int bounced = 0;
  };
  // Notice groups sent by the last batch, checked at the next BeginBatch.
  std::unordered_map<uint64_t, NoticeGroup> notice_groups_;
  uint64_t next_notice_group_ = 1;
  uint64_t current_group_ = 0;
};

// Username rules: kMin..kMaxUsernameLength characters from [A-Za-z0-9_.-],
// starting with a letter or digit.
bool IsValidUsername(std::string_view name);
// The case-folded key under which a username is unique.
std::string UsernameKey(std::string_view name);
// Wildcard match ('*' any run, '?' one character, '\' escapes) of an already
// case-folded pattern against a key.
bool WildcardMatch(std::string_view pattern, std::string_view key);
// The literal text before the pattern's first wildcard (unescaped).
std::string WildcardPrefix(std::string_view pattern);

}  // namespace zchat
