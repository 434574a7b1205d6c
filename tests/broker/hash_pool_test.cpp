// HashPool (argon2id on worker threads, completion on an eventfd) and the
// UniqueFd that owns that eventfd.
#include "broker/hash_pool.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>
#include <type_traits>
#include <utility>

#include "broker/unique_fd.h"

namespace zchat {
namespace {

// The cheapest cost libsodium allows: the tests check behaviour, not cost.
constexpr HashCost kCheap{1, 8192};

bool IsOpen(int fd) { return fcntl(fd, F_GETFD) != -1; }

// Waits on the pool's wake fd and collects results until `n` are in.
std::vector<HashResult> WaitFor(HashPool& pool, size_t n) {
  std::vector<HashResult> all;
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (all.size() < n && std::chrono::steady_clock::now() < deadline) {
    pollfd p{pool.wake_fd(), POLLIN, 0};
    if (poll(&p, 1, 1000) <= 0) continue;
    for (auto& r : pool.TakeCompleted()) all.push_back(std::move(r));
  }
  return all;
}

HashJob Job(HashJob::Kind kind, std::string password, uint64_t ticket,
            std::string stored = {}) {
  HashJob job;
  job.kind = kind;
  job.password = std::move(password);
  job.stored_hash = std::move(stored);
  job.ticket = ticket;
  return job;
}

TEST(HashPoolTest, HashesThenVerifies) {
  HashPool pool(2, 16, kCheap);
  ASSERT_TRUE(pool.Submit(Job(HashJob::Kind::kHash, "password123", 1)));
  auto hashed = WaitFor(pool, 1);
  ASSERT_EQ(hashed.size(), 1u);
  EXPECT_EQ(hashed[0].ticket, 1u);
  ASSERT_TRUE(hashed[0].ok);
  EXPECT_EQ(hashed[0].hash.rfind("$argon2id$", 0), 0u) << hashed[0].hash;

  ASSERT_TRUE(pool.Submit(
      Job(HashJob::Kind::kVerify, "password123", 2, hashed[0].hash)));
  ASSERT_TRUE(
      pool.Submit(Job(HashJob::Kind::kVerify, "wrong", 3, hashed[0].hash)));
  auto verified = WaitFor(pool, 2);
  ASSERT_EQ(verified.size(), 2u);
  for (const HashResult& r : verified) {
    EXPECT_TRUE(r.hash.empty());
    if (r.ticket == 2) {
      EXPECT_TRUE(r.ok) << "the right password";
    } else {
      EXPECT_EQ(r.ticket, 3u);
      EXPECT_FALSE(r.ok) << "a wrong password";
    }
  }
  EXPECT_EQ(pool.in_flight(), 0u);
}

TEST(HashPoolTest, DummyHashMatchesNoGuess) {
  HashPool pool(1, 4, kCheap);
  ASSERT_FALSE(pool.dummy_hash().empty());
  ASSERT_TRUE(pool.Submit(
      Job(HashJob::Kind::kVerify, "password123", 7, pool.dummy_hash())));
  auto results = WaitFor(pool, 1);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_FALSE(results[0].ok);
}

TEST(HashPoolTest, SubmitRefusesPastTheQueueBound) {
  HashPool pool(0, 2, kCheap);  // no workers: jobs stay queued
  EXPECT_TRUE(pool.Submit(Job(HashJob::Kind::kHash, "a", 1)));
  EXPECT_TRUE(pool.Submit(Job(HashJob::Kind::kHash, "b", 2)));
  EXPECT_FALSE(pool.Submit(Job(HashJob::Kind::kHash, "c", 3)));
  EXPECT_EQ(pool.in_flight(), 2u);
  // Nothing done, nothing to take, and the wake fd is not readable.
  EXPECT_TRUE(pool.TakeCompleted().empty());
  pollfd p{pool.wake_fd(), POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 0), 0);
}

TEST(HashPoolTest, DestructorClosesTheWakeFd) {
  int fd;
  {
    HashPool pool(1, 1, kCheap);
    fd = pool.wake_fd();
    ASSERT_TRUE(IsOpen(fd));
  }
  EXPECT_FALSE(IsOpen(fd));
}

TEST(UniqueFdTest, ClosesWhenDestroyed) {
  int raw = eventfd(0, EFD_CLOEXEC);
  ASSERT_GE(raw, 0);
  {
    UniqueFd fd(raw);
    EXPECT_EQ(fd.get(), raw);
    EXPECT_TRUE(fd);
  }
  EXPECT_FALSE(IsOpen(raw));
}

TEST(UniqueFdTest, MoveTransfersOwnership) {
  int raw = eventfd(0, EFD_CLOEXEC);
  UniqueFd a(raw);
  UniqueFd b(std::move(a));
  EXPECT_EQ(a.get(), -1);  // NOLINT(bugprone-use-after-move): the contract
  EXPECT_FALSE(a);
  EXPECT_EQ(b.get(), raw);
  UniqueFd c;
  c = std::move(b);
  EXPECT_EQ(b.get(), -1);  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(c.get(), raw);
  EXPECT_TRUE(IsOpen(raw));
  static_assert(!std::is_copy_constructible_v<UniqueFd>);
  static_assert(!std::is_copy_assignable_v<UniqueFd>);
}

TEST(UniqueFdTest, ReleaseGivesUpWithoutClosing) {
  int raw = eventfd(0, EFD_CLOEXEC);
  {
    UniqueFd fd(raw);
    EXPECT_EQ(fd.release(), raw);
    EXPECT_EQ(fd.get(), -1);
  }
  EXPECT_TRUE(IsOpen(raw));
  close(raw);
}

TEST(UniqueFdTest, ResetClosesTheOldDescriptor) {
  int first = eventfd(0, EFD_CLOEXEC);
  int second = eventfd(0, EFD_CLOEXEC);
  UniqueFd fd(first);
  fd.reset(second);
  EXPECT_FALSE(IsOpen(first));
  EXPECT_EQ(fd.get(), second);
  fd.reset();
  EXPECT_FALSE(IsOpen(second));
  EXPECT_EQ(fd.get(), -1);
}

}  // namespace
}  // namespace zchat
