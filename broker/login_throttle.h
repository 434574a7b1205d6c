// LoginThrottle: slows password guessing per username. After `free_failures`
// consecutive failures, each further attempt must wait a delay that doubles
// from `base_delay_ms` up to `max_delay_ms`. A success resets the count.
// Unknown and existing usernames are treated alike. In memory only.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

namespace zchat {

struct ThrottlePolicy {
  int free_failures = 5;
  int64_t base_delay_ms = 1000;
  int64_t max_delay_ms = 60'000;
  int64_t forget_after_ms = 15 * 60'000;  // idle entries are dropped
};

class LoginThrottle {
 public:
  explicit LoginThrottle(ThrottlePolicy policy) : policy_(policy) {}

  // 0 if an attempt for `key` may proceed now, else milliseconds to wait.
  int64_t RetryAfter(std::string_view key, int64_t now_ms) const;
  void RecordFailure(std::string_view key, int64_t now_ms);
  void RecordSuccess(std::string_view key);
  void Forget(int64_t now_ms);  // drops idle entries (bounded memory)

 private:
  struct Entry {
    int failures = 0;
    int64_t last_failure_ms = 0;
    int64_t next_allowed_ms = 0;
  };
  ThrottlePolicy policy_;
  std::unordered_map<std::string, Entry> entries_;
};

}  // namespace zchat
