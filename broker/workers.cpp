#include "broker/workers.h"

#include <pthread.h>

namespace zchat {

Workers::Workers(int threads) {
  for (int i = 1; i < threads; ++i) pool_.emplace_back([this] { Loop(); });
}

Workers::~Workers() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  work_.notify_all();
  for (std::thread& t : pool_) t.join();
}

void Workers::Loop() {
  // Told apart from the loop in top -H and /proc/PID/task.
  pthread_setname_np(pthread_self(), "zchat-worker");
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    work_.wait(lock, [this] {
      return stopping_ || (tasks_ && next_ < tasks_->size());
    });
    if (stopping_) return;
    std::function<void()>& task = (*tasks_)[next_++];
    ++running_;
    lock.unlock();
    task();
    lock.lock();
    if (--running_ == 0 && next_ == tasks_->size()) done_.notify_all();
  }
}

void Workers::RunAll(std::vector<std::function<void()>>& tasks) {
  if (tasks.empty()) return;
  std::unique_lock<std::mutex> lock(mu_);
  tasks_ = &tasks;
  next_ = 0;
  running_ = 0;
  if (!pool_.empty() && tasks.size() > 1) work_.notify_all();
  // The caller takes tasks too, until none is left to take.
  while (next_ < tasks.size()) {
    std::function<void()>& task = tasks[next_++];
    ++running_;
    lock.unlock();
    task();
    lock.lock();
    --running_;
  }
  done_.wait(lock, [this] { return running_ == 0; });
  tasks_ = nullptr;
}

}  // namespace zchat
