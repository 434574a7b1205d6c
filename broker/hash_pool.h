// HashPool: argon2id password hashing (libsodium crypto_pwhash_str) on worker
// threads, so that a tens-of-milliseconds hash never stalls the broker loop.
// Submit and TakeCompleted are called from the loop thread; workers signal
// completion on an eventfd that the loop polls beside its socket.
// The queue is bounded: Submit refuses work past `max_queued` (login floods).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "broker/unique_fd.h"

namespace zchat {

struct HashCost {
  uint64_t ops = 2;                     // crypto_pwhash_OPSLIMIT_INTERACTIVE
  size_t mem_bytes = 64 * 1024 * 1024;  // crypto_pwhash_MEMLIMIT_INTERACTIVE
};

struct HashJob {
  enum class Kind { kHash, kVerify };
  Kind kind = Kind::kHash;
  std::string password;
  std::string stored_hash;  // kVerify: the hash to check against
  uint64_t ticket = 0;      // the caller's key for the pending request
};

struct HashResult {
  uint64_t ticket = 0;
  bool ok = false;   // kHash: hashed; kVerify: the password matches
  std::string hash;  // kHash: the encoded argon2id string
};

class HashPool {
 public:
  HashPool(int threads, size_t max_queued, HashCost cost);
  ~HashPool();
  HashPool(const HashPool&) = delete;
  HashPool& operator=(const HashPool&) = delete;

  // False when the queue is full; the job is not taken.
  bool Submit(HashJob job);
  // Results finished since the last call, in completion order.
  std::vector<HashResult> TakeCompleted();
  // Readable when results are waiting (poll it; TakeCompleted drains it).
  int wake_fd() const { return wake_fd_.get(); }
  // Jobs submitted and not yet taken back.
  size_t in_flight() const { return in_flight_; }

  // A hash of a random password, for verifying unknown users in equal time.
  const std::string& dummy_hash() const { return dummy_hash_; }

 private:
  void Work();

  const size_t max_queued_;
  const HashCost cost_;
  UniqueFd wake_fd_;
  size_t in_flight_ = 0;  // loop thread only
  std::string dummy_hash_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<HashJob> jobs_;
  std::vector<HashResult> done_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace zchat
