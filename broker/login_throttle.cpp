#include "broker/login_throttle.h"

#include <algorithm>

namespace zchat {

int64_t LoginThrottle::RetryAfter(std::string_view key, int64_t now_ms) const {
  auto it = entries_.find(std::string(key));
  if (it == entries_.end()) return 0;
  return std::max<int64_t>(0, it->second.next_allowed_ms - now_ms);
}

void LoginThrottle::RecordFailure(std::string_view key, int64_t now_ms) {
  Entry& e = entries_[std::string(key)];
  ++e.failures;
  e.last_failure_ms = now_ms;
  int over = e.failures - policy_.free_failures;
  if (over >= 0) {
    int64_t delay = policy_.base_delay_ms << std::min(over, 20);
    e.next_allowed_ms = now_ms + std::min(delay, policy_.max_delay_ms);
  }
}

void LoginThrottle::RecordSuccess(std::string_view key) {
  entries_.erase(std::string(key));
}

void LoginThrottle::Forget(int64_t now_ms) {
  std::erase_if(entries_, [&](const auto& kv) {
    return kv.second.last_failure_ms + policy_.forget_after_ms < now_ms &&
           kv.second.next_allowed_ms <= now_ms;
  });
}

}  // namespace zchat
