#include "broker/session_table.h"

#include <cassert>
#include <utility>

namespace zchat {

std::string_view SessionStateName(SessionState state) {
  switch (state) {
    case SessionState::kAnonymous:
      return "anonymous";
    case SessionState::kAuthenticating:
      return "authenticating";
    case SessionState::kLoggedIn:
      return "logged_in";
  }
  return "?";
}

bool SessionTable::IsNewerConnection(std::string_view a, std::string_view b) {
  // libzmq names a ROUTER's connections 0x00 and a 32-bit big-endian count.
  return a.size() == 5 && b.size() == 5 && a[0] == '\0' && b[0] == '\0' &&
         a > b;
}

Peer& SessionTable::Touch(std::string_view routing_id, int connection,
                          int64_t now_ms) {
  auto it = peers_.find(std::string(routing_id));
  if (it != peers_.end() && it->second.connection != connection) {
    Remove(routing_id);
    it = peers_.end();
  }
  if (it == peers_.end()) {
    it = peers_.try_emplace(std::string(routing_id)).first;
    it->second.routing_id = it->first;
    it->second.connection = connection;
    if (connection >= 0) {
      // Descriptors are unique among open connections: a peer still mapped
      // to this one belongs to a connection that has closed. Drop it...
      auto old = by_connection_.find(connection);
      if (old != by_connection_.end() && old->second != it->first &&
          IsNewerConnection(old->second, it->first)) {
        // ... unless this frame is the closed connection's: libzmq can hand
        // over its last frames after the first ones of the newer connection
        // that took its descriptor. The newer peer stays; this one is served
        // without a descriptor (its replies find no one).
        it->second.connection = -1;
      } else {
        if (old != by_connection_.end() && old->second != it->first) {
          std::string stale = old->second;
          Remove(stale);
        }
        by_connection_[connection] = it->first;
      }
    }
  }
  it->second.last_seen_ms = now_ms;
  return it->second;
}

Peer* SessionTable::Find(std::string_view routing_id) {
  auto it = peers_.find(std::string(routing_id));
  return it == peers_.end() ? nullptr : &it->second;
}

void SessionTable::BeginAuthentication(Peer& peer) {
  assert(peer.state == SessionState::kAnonymous);
  peer.state = SessionState::kAuthenticating;
}

void SessionTable::EndAuthentication(Peer& peer) {
  assert(peer.state == SessionState::kAuthenticating);
  peer.state = SessionState::kAnonymous;
}

std::vector<int64_t> SessionTable::Accounts() const {
  std::vector<int64_t> out;
  for (auto it = by_account_.begin(); it != by_account_.end();
       it = by_account_.equal_range(it->first).second) {
    out.push_back(it->first);
  }
  return out;
}

void SessionTable::CompleteLogin(Peer& peer, int64_t account_id,
                                 std::string username, std::string token_hash,
                                 bool batch_pushes) {
  assert(peer.state == SessionState::kAnonymous);
  peer.state = SessionState::kLoggedIn;
  peer.account_id = account_id;
  peer.username = std::move(username);
  peer.token_hash = std::move(token_hash);
  peer.batch_pushes = batch_pushes;
  Index(peer);
}

void SessionTable::Logout(Peer& peer) {
  if (!peer.logged_in()) return;
  Unindex(peer);
  peer.state = SessionState::kAnonymous;
  peer.account_id = 0;
  peer.username.clear();
  peer.token_hash.clear();
}

LoginSnapshot SessionTable::Snapshot(const Peer& peer) const {
  return LoginSnapshot{peer.state, peer.account_id, peer.username,
                       peer.token_hash, peer.batch_pushes};
}

void SessionTable::Restore(std::string_view routing_id, int connection,
                           const LoginSnapshot& snapshot) {
  Peer* peer = Find(routing_id);
  if (!peer || peer->connection != connection) return;  // gone meanwhile
  if (peer->logged_in()) Unindex(*peer);
  peer->state = snapshot.state;
  peer->account_id = snapshot.account_id;
  peer->username = snapshot.username;
  peer->token_hash = snapshot.token_hash;
  peer->batch_pushes = snapshot.batch_pushes;
  if (peer->logged_in()) Index(*peer);
}

void SessionTable::Hold(Peer& peer, uint64_t ticket) {
  assert(!peer.held() && ticket != 0);
  peer.hold_ticket = ticket;
}

bool SessionTable::Wait(Peer& peer, std::string frame, size_t max_frames,
                        size_t max_bytes) {
  assert(peer.held());
  if (peer.waiting.size() >= max_frames ||
      peer.waiting_bytes + frame.size() > max_bytes) {
    return false;
  }
  peer.waiting_bytes += frame.size();
  peer.waiting.push_back(std::move(frame));
  return true;
}

std::vector<std::string> SessionTable::Release(Peer& peer) {
  peer.hold_ticket = 0;
  peer.waiting_bytes = 0;
  return std::exchange(peer.waiting, {});
}

void SessionTable::Remove(std::string_view routing_id) {
  auto it = peers_.find(std::string(routing_id));
  if (it == peers_.end()) return;
  Logout(it->second);
  if (auto c = by_connection_.find(it->second.connection);
      c != by_connection_.end() && c->second == it->first) {
    by_connection_.erase(c);
  }
  peers_.erase(it);
}

void SessionTable::Index(Peer& peer) {
  by_account_.emplace(peer.account_id, peer.routing_id);
}

void SessionTable::Unindex(Peer& peer) {
  auto [first, last] = by_account_.equal_range(peer.account_id);
  for (auto it = first; it != last; ++it) {
    if (it->second == peer.routing_id) {
      by_account_.erase(it);
      return;
    }
  }
}

std::vector<std::string> SessionTable::SessionsOf(int64_t account_id) const {
  std::vector<std::string> out;
  auto [first, last] = by_account_.equal_range(account_id);
  for (auto it = first; it != last; ++it) out.push_back(it->second);
  return out;
}

void SessionTable::SessionsOf(int64_t account_id,
                              std::vector<std::string>* each,
                              std::vector<std::string>* batched) const {
  auto [first, last] = by_account_.equal_range(account_id);
  for (auto it = first; it != last; ++it) {
    auto peer = peers_.find(it->second);
    const bool batch = peer != peers_.end() && peer->second.batch_pushes;
    (batch ? batched : each)->push_back(it->second);
  }
}

bool SessionTable::IsOnline(int64_t account_id) const {
  return by_account_.count(account_id) > 0;
}

std::vector<std::string> SessionTable::SilentSince(int64_t cutoff_ms) const {
  std::vector<std::string> out;
  for (const auto& [id, peer] : peers_) {
    if (peer.last_seen_ms < cutoff_ms) out.push_back(id);
  }
  return out;
}

}  // namespace zchat
