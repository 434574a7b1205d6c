// SessionTable: who is connected and who is logged in where. Keyed by the
// ROUTER routing id of each connection (a transport address); the session,
// not the routing id, says which account a connection acts for. A user may
// hold several sessions at once. Loop thread only.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace zchat {

struct Peer {
  std::string routing_id;
  int connection = -1;     // the transport's connection (socket fd), or -1
  int64_t account_id = 0;  // 0: connected, not logged in
  std::string username;    // as registered, when logged in
  std::string token_hash;  // of the token this session logged in with
  int64_t last_seen_ms = 0;

  bool logged_in() const { return account_id != 0; }
};

class SessionTable {
 public:
  // The peer for a routing id, created on first contact; refreshes liveness.
  // A routing id seen on a different connection than before is a new peer:
  // the old one (and its session) is dropped first.
  Peer& Touch(std::string_view routing_id, int connection, int64_t now_ms);
  Peer* Find(std::string_view routing_id);

  void Login(Peer& peer, int64_t account_id, std::string username,
             std::string token_hash);
  void Logout(Peer& peer);
  void Remove(std::string_view routing_id);

  // Routing ids of every session of an account (copy: callers may end them).
  std::vector<std::string> SessionsOf(int64_t account_id) const;
  bool IsOnline(int64_t account_id) const;

  // Peers silent since before `cutoff_ms`.
  std::vector<std::string> SilentSince(int64_t cutoff_ms) const;

  size_t peer_count() const { return peers_.size(); }
  size_t session_count() const;

 private:
  std::unordered_map<std::string, Peer> peers_;
  std::unordered_multimap<int64_t, std::string> by_account_;
  std::unordered_map<int, std::string> by_connection_;
};

}  // namespace zchat
