// Workers: a fixed set of threads that run a batch's tasks in parallel.
// RunAll hands out the tasks, runs the first on the calling thread, and
// returns when every task is done: the caller's data is shared with the
// tasks only for that call. Used by BrokerCore to run a batch's requests
// partition by partition (partitioned_store.h).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace zchat {

class Workers {
 public:
  // `threads` counts the caller: threads - 1 are started.
  explicit Workers(int threads);
  ~Workers();
  Workers(const Workers&) = delete;
  Workers& operator=(const Workers&) = delete;

  int threads() const { return static_cast<int>(pool_.size()) + 1; }

  // Runs every task, at most threads() at once, and returns when all have
  // returned. Tasks must not throw.
  void RunAll(std::vector<std::function<void()>>& tasks);

 private:
  void Loop();

  std::mutex mu_;
  std::condition_variable work_;  // tasks to take, or stopping
  std::condition_variable done_;  // the last task finished
  std::vector<std::function<void()>>* tasks_ = nullptr;
  size_t next_ = 0;     // the next task to take
  size_t running_ = 0;  // tasks taken and not finished
  bool stopping_ = false;
  std::vector<std::thread> pool_;
};

}  // namespace zchat
