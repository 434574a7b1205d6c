#include "broker/session_table.h"

namespace zchat {

Peer& SessionTable::Touch(std::string_view routing_id, int64_t now_ms) {
  auto [it, inserted] = peers_.try_emplace(std::string(routing_id));
  if (inserted) it->second.routing_id = it->first;
  it->second.last_seen_ms = now_ms;
  return it->second;
}

Peer* SessionTable::Find(std::string_view routing_id) {
  auto it = peers_.find(std::string(routing_id));
  return it == peers_.end() ? nullptr : &it->second;
}

void SessionTable::Login(Peer& peer, int64_t account_id, std::string username,
                         std::string token_hash) {
  if (peer.logged_in()) Logout(peer);
  peer.account_id = account_id;
  peer.username = std::move(username);
  peer.token_hash = std::move(token_hash);
  by_account_.emplace(account_id, peer.routing_id);
}

void SessionTable::Logout(Peer& peer) {
  if (!peer.logged_in()) return;
  auto [first, last] = by_account_.equal_range(peer.account_id);
  for (auto it = first; it != last; ++it) {
    if (it->second == peer.routing_id) {
      by_account_.erase(it);
      break;
    }
  }
  peer.account_id = 0;
  peer.username.clear();
  peer.token_hash.clear();
}

void SessionTable::Remove(std::string_view routing_id) {
  auto it = peers_.find(std::string(routing_id));
  if (it == peers_.end()) return;
  Logout(it->second);
  peers_.erase(it);
}

std::vector<std::string> SessionTable::SessionsOf(int64_t account_id) const {
  std::vector<std::string> out;
  auto [first, last] = by_account_.equal_range(account_id);
  for (auto it = first; it != last; ++it) out.push_back(it->second);
  return out;
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

size_t SessionTable::session_count() const { return by_account_.size(); }

}  // namespace zchat
