// BrokerConfig: the broker's policy knobs (timeouts, bounds, throttling),
// set from flags in main.cpp and read by the handlers.
#pragma once

#include <cstddef>
#include <cstdint>

#include "broker/login_throttle.h"

namespace zchat {

inline constexpr uint64_t kDefaultListLimit = 100;
inline constexpr int64_t kListScanBudget = 2000;

struct BrokerConfig {
  int64_t session_timeout_ms = 60'000;
  int64_t max_queue_per_user = 100'000;
  int64_t dedup_window_ms = 7LL * 24 * 3600 * 1000;
  int64_t token_lifetime_ms = 30LL * 24 * 3600 * 1000;
  // Requests a connection may pipeline behind one that waits for password
  // hashing, and their bytes; past either, a request is refused with busy.
  size_t max_waiting_requests = 32;
  size_t max_waiting_bytes = 512 * 1024;
  // Unacknowledged sender notices kept per account; past it, those of the
  // oldest messages are dropped (docs/semantics.md).
  int64_t max_notices_per_account = 10'000;
  ThrottlePolicy throttle;
};

}  // namespace zchat
