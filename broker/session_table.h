// SessionTable: who is connected, in which session state, and what each
// connection has waiting. Keyed by the ROUTER routing id of each connection
// (a transport address); the session, not the routing id, says which account
// a connection acts for. A user may hold several sessions at once.
//
// Session states (after Malamute's client state table); every change goes
// through one of the named transitions below:
//
//   kAnonymous --BeginAuthentication--> kAuthenticating  (a password login
//                                                        is being checked)
//   kAuthenticating --EndAuthentication--> kAnonymous    (the check is over)
//   kAnonymous --CompleteLogin--> kLoggedIn              (the password or
//                                                        token was right)
//   kLoggedIn --Logout--> kAnonymous                    (LOGOUT, deletion,
//                                                        expiry)
//
// Independently of its state, a connection is *held* while one of its
// requests waits for the password-hashing pool: frames it sends meanwhile
// wait, in order, in its queue (bounded), so that its requests take effect in
// the order they were sent. Loop thread only.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace zchat {

enum class SessionState : uint8_t { kAnonymous, kAuthenticating, kLoggedIn };

std::string_view SessionStateName(SessionState state);

struct Peer {
  std::string routing_id;
  int connection = -1;  // the transport's connection (socket fd), or -1
  SessionState state = SessionState::kAnonymous;
  int64_t account_id = 0;     // when logged in
  std::string username;       // as registered, when logged in
  std::string token_hash;     // of the token this session logged in with
  bool batch_pushes = false;  // takes MESSAGE_SUCCESS's batch form
  int64_t last_seen_ms = 0;
  // Nonzero while a request of this connection waits for the hash pool:
  // the pool's ticket for it.
  uint64_t hold_ticket = 0;
  std::vector<std::string> waiting;  // frames received while held, in order
  size_t waiting_bytes = 0;

  bool logged_in() const { return state == SessionState::kLoggedIn; }
  bool held() const { return hold_ticket != 0; }
};

// A peer's login, saved before a transition so that it can be put back when
// the batch that made the transition fails (see Batch).
struct LoginSnapshot {
  SessionState state = SessionState::kAnonymous;
  int64_t account_id = 0;
  std::string username;
  std::string token_hash;
  bool batch_pushes = false;
};

class SessionTable {
 public:
  // The peer for a routing id, created on first contact; refreshes liveness.
  // A routing id seen on a different connection than before is a new peer:
  // the old one (and its session) is dropped first. A new peer on a
  // descriptor that another peer holds drops that one, whose connection has
  // closed; but if the other is the newer connection (IsNewerConnection),
  // the frame is a late one of the closed connection: the newer peer stays
  // and this one gets no descriptor.
  Peer& Touch(std::string_view routing_id, int connection, int64_t now_ms);
  Peer* Find(std::string_view routing_id);
  // Whether routing id `a` names a connection libzmq accepted after `b`'s
  // (both ids libzmq's own: 0x00 and a 32-bit count).
  static bool IsNewerConnection(std::string_view a, std::string_view b);

  // Transitions (see the table above).
  void BeginAuthentication(Peer& peer);
  void EndAuthentication(Peer& peer);
  void CompleteLogin(Peer& peer, int64_t account_id, std::string username,
                     std::string token_hash, bool batch_pushes = false);
  void Logout(Peer& peer);

  LoginSnapshot Snapshot(const Peer& peer) const;
  // Puts a peer's login back as it was, if the peer is still the one that
  // was snapshotted (same routing id on the same connection).
  void Restore(std::string_view routing_id, int connection,
               const LoginSnapshot& snapshot);

  // Holding (see above). Wait() queues a frame of a held peer; false when
  // its queue is full (the frame is not taken).
  void Hold(Peer& peer, uint64_t ticket);
  bool Wait(Peer& peer, std::string frame, size_t max_frames, size_t max_bytes);
  // Ends the hold and returns the frames that waited, oldest first.
  std::vector<std::string> Release(Peer& peer);

  void Remove(std::string_view routing_id);

  // Routing ids of every session of an account (copy: callers may end them).
  std::vector<std::string> SessionsOf(int64_t account_id) const;
  // The same, split by the form of MESSAGE_SUCCESS each session takes: one
  // notice a frame (`each`) or the batch form too (`batched`).
  void SessionsOf(int64_t account_id, std::vector<std::string>* each,
                  std::vector<std::string>* batched) const;
  bool IsOnline(int64_t account_id) const;

  // Peers silent since before `cutoff_ms`.
  std::vector<std::string> SilentSince(int64_t cutoff_ms) const;

  size_t peer_count() const { return peers_.size(); }
  size_t session_count() const { return by_account_.size(); }
  // Accounts with at least one session here.
  std::vector<int64_t> Accounts() const;

 private:
  void Index(Peer& peer);
  void Unindex(Peer& peer);

  std::unordered_map<std::string, Peer> peers_;
  std::unordered_multimap<int64_t, std::string> by_account_;
  std::unordered_map<int, std::string> by_connection_;
};

}  // namespace zchat
