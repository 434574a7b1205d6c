// LoginThrottle: free failures, a doubling delay up to a cap, reset on
// success, per-key state, and forgetting idle keys.
#include "broker/login_throttle.h"

#include <gtest/gtest.h>

namespace zchat {
namespace {

ThrottlePolicy Policy() {
  ThrottlePolicy p;
  p.free_failures = 3;
  p.base_delay_ms = 100;
  p.max_delay_ms = 1000;
  p.forget_after_ms = 10'000;
  return p;
}

TEST(LoginThrottleTest, FirstFailuresAreFree) {
  LoginThrottle t(Policy());
  EXPECT_EQ(t.RetryAfter("alice", 0), 0);
  t.RecordFailure("alice", 0);
  t.RecordFailure("alice", 0);
  EXPECT_EQ(t.RetryAfter("alice", 0), 0);
  // The free_failures-th failure makes the next attempt wait.
  t.RecordFailure("alice", 0);
  EXPECT_EQ(t.RetryAfter("alice", 0), 100);
}

TEST(LoginThrottleTest, DelayCountsDownWithTime) {
  LoginThrottle t(Policy());
  for (int i = 0; i < 3; ++i) t.RecordFailure("alice", 1000);
  EXPECT_EQ(t.RetryAfter("alice", 1040), 60);
  EXPECT_EQ(t.RetryAfter("alice", 1100), 0);
  EXPECT_EQ(t.RetryAfter("alice", 5000), 0);
}

TEST(LoginThrottleTest, DelayDoublesUpToTheCap) {
  LoginThrottle t(Policy());
  for (int i = 0; i < 3; ++i) t.RecordFailure("alice", 0);
  for (int64_t want : {200, 400, 800, 1000, 1000}) {
    t.RecordFailure("alice", 0);
    EXPECT_EQ(t.RetryAfter("alice", 0), want);
  }
  // Very many failures neither overflow nor pass the cap.
  for (int i = 0; i < 200; ++i) t.RecordFailure("alice", 0);
  EXPECT_EQ(t.RetryAfter("alice", 0), 1000);
}

TEST(LoginThrottleTest, SuccessResetsTheCount) {
  LoginThrottle t(Policy());
  for (int i = 0; i < 5; ++i) t.RecordFailure("alice", 0);
  ASSERT_GT(t.RetryAfter("alice", 0), 0);
  t.RecordSuccess("alice");
  EXPECT_EQ(t.RetryAfter("alice", 0), 0);
  t.RecordFailure("alice", 0);
  t.RecordFailure("alice", 0);
  EXPECT_EQ(t.RetryAfter("alice", 0), 0);
}

TEST(LoginThrottleTest, KeysAreIndependent) {
  LoginThrottle t(Policy());
  for (int i = 0; i < 3; ++i) t.RecordFailure("alice", 0);
  EXPECT_GT(t.RetryAfter("alice", 0), 0);
  EXPECT_EQ(t.RetryAfter("bob", 0), 0);
  // Unknown usernames are throttled like existing ones (no key is special).
  for (int i = 0; i < 3; ++i) t.RecordFailure("nobody-by-this-name", 0);
  EXPECT_EQ(t.RetryAfter("nobody-by-this-name", 0), 100);
}

TEST(LoginThrottleTest, ForgetDropsOnlyIdleEntries) {
  LoginThrottle t(Policy());
  for (int i = 0; i < 3; ++i) t.RecordFailure("idle", 0);
  for (int i = 0; i < 3; ++i) t.RecordFailure("recent", 9'000);
  t.Forget(10'001);  // "idle" failed more than forget_after_ms ago
  // A forgotten key starts over: one failure is free again.
  t.RecordFailure("idle", 10'001);
  EXPECT_EQ(t.RetryAfter("idle", 10'001), 0);
  // A kept key goes on counting.
  t.RecordFailure("recent", 10'001);
  EXPECT_EQ(t.RetryAfter("recent", 10'001), 200);
}

TEST(LoginThrottleTest, ForgetKeepsEntriesStillWaiting) {
  ThrottlePolicy p = Policy();
  p.forget_after_ms = 10;  // shorter than the delay
  LoginThrottle t(p);
  for (int i = 0; i < 6; ++i) t.RecordFailure("alice", 0);
  ASSERT_EQ(t.RetryAfter("alice", 0), 800);
  t.Forget(100);
  EXPECT_EQ(t.RetryAfter("alice", 100), 700);
}

}  // namespace
}  // namespace zchat
