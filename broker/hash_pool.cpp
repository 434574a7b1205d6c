#include "broker/hash_pool.h"

#include <pthread.h>
#include <sodium.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdlib>

namespace zchat {
namespace {

std::string HashPassword(const std::string& password, const HashCost& cost) {
  char out[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str(out, password.data(), password.size(), cost.ops,
                        cost.mem_bytes) != 0) {
    return {};  // out of memory
  }
  return out;
}

}  // namespace

HashPool::HashPool(int threads, size_t max_queued, HashCost cost)
    : max_queued_(max_queued),
      cost_(cost),
      wake_fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (sodium_init() < 0) abort();  // libsodium cannot run at all
  char random[33];
  randombytes_buf(random, 32);
  random[32] = 0;
  dummy_hash_ = HashPassword(std::string(random, 32), cost_);
  for (int i = 0; i < threads; ++i) workers_.emplace_back([this] { Work(); });
}

HashPool::~HashPool() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
  // wake_fd_ closes itself, after the workers that write to it are gone.
}

bool HashPool::Submit(HashJob job) {
  {
    std::lock_guard lock(mu_);
    if (jobs_.size() >= max_queued_) return false;
    jobs_.push_back(std::move(job));
  }
  ++in_flight_;
  cv_.notify_one();
  return true;
}

std::vector<HashResult> HashPool::TakeCompleted() {
  uint64_t counter;
  (void)!read(wake_fd_.get(), &counter, sizeof counter);  // EAGAIN when none
  std::vector<HashResult> out;
  {
    std::lock_guard lock(mu_);
    out.swap(done_);
  }
  in_flight_ -= out.size();
  return out;
}

void HashPool::Work() {
  // Told apart from the loop in top -H and /proc/PID/task (and so in
  // zchat-bench's CPU by thread).
  pthread_setname_np(pthread_self(), "zchat-hash");
  for (;;) {
    HashJob job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (stopping_) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    HashResult result;
    result.ticket = job.ticket;
    if (job.kind == HashJob::Kind::kHash) {
      result.hash = HashPassword(job.password, cost_);
      result.ok = !result.hash.empty();
    } else {
      result.ok =
          crypto_pwhash_str_verify(job.stored_hash.c_str(), job.password.data(),
                                   job.password.size()) == 0;
    }
    sodium_memzero(job.password.data(), job.password.size());
    {
      std::lock_guard lock(mu_);
      done_.push_back(std::move(result));
    }
    uint64_t one = 1;
    (void)!write(wake_fd_.get(), &one, sizeof one);
  }
}

}  // namespace zchat
