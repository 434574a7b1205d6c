// ChildProcess: an executable run as a child of this process (the broker,
// the benchmark's baseline and its connection helpers), with what the tests
// and the benchmark need of it: the endpoint it writes once listening, a
// clean stop with a deadline, a kill, and its memory and CPU time from /proc.
// Every wait has a deadline and sleeps on the child's pidfd and an inotify
// watch, not on a clock.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/fd_limit.h"

namespace zchat::testing {

struct ChildOptions {
  // "": stderr is inherited; else it is appended to this file.
  std::string stderr_path;
  // stdin and stdout become pipes to us (WriteLine, ReadLine).
  bool pipe_stdio = false;
  // The child's RLIMIT_NOFILE (set between fork and exec).
  std::optional<FdLimit> fd_limit;
};

class ChildProcess {
 public:
  using Millis = std::chrono::milliseconds;

  ChildProcess() = default;
  ~ChildProcess();  // Stop()s a child still running
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Runs argv[0] (a path) with `argv`. False if it could not be started (a
  // missing executable shows as an exit status of 127).
  bool Start(const std::vector<std::string>& argv,
             const ChildOptions& options = {});

  // Waits until `file` holds a whole line (what the broker writes to its
  // --endpoint-file once bound) and returns it. "" if the child exits or
  // `timeout` passes first. The caller removes a stale file before Start.
  std::string ReadEndpoint(const std::string& file,
                           Millis timeout = std::chrono::seconds(20));

  // Waits up to `timeout` for the child to exit. Its exit status (-1 if it
  // died of a signal), or nullopt while it still runs. Once it has exited
  // (or none was started) this returns the same status at once.
  std::optional<int> Wait(Millis timeout);
  // `signal` (SIGTERM unless given), then SIGKILL if it has not exited
  // within `grace`. The exit status: -1 if it died of a signal, was killed,
  // or none was started.
  int Stop(Millis grace = std::chrono::seconds(10), int signal = SIGTERM);
  // SIGKILL: no chance to clean up. Waits until it is gone.
  void Kill();

  bool running() const { return pid_ > 0; }
  // The pid while it runs (and of the last run afterwards).
  pid_t pid() const { return pid_ > 0 ? pid_ : last_pid_; }
  // Resident set size in KiB, -1 if unknown.
  int64_t RssKib() const;
  // User and system CPU time of all its threads.
  std::chrono::microseconds CpuTime() const;

  // With pipe_stdio: writes `line` and a newline to its stdin.
  bool WriteLine(const std::string& line);
  // With pipe_stdio: the next line from its stdout, without the newline;
  // nullopt at end of file or when `timeout` passes.
  std::optional<std::string> ReadLine(Millis timeout);

 private:
  void Reap(int status);
  void ClosePipes();

  pid_t pid_ = -1;
  pid_t last_pid_ = -1;
  int pidfd_ = -1;
  int exit_status_ = -1;
  int to_child_ = -1;
  int from_child_ = -1;
  std::string read_buffer_;
};

// The /proc readings, for any process: resident set size in KiB (-1 if
// unknown) and user + system CPU time.
int64_t RssKib(pid_t pid);
std::chrono::microseconds CpuTime(pid_t pid);
// The CPU time of a process's live threads, by name: "main" for its first
// thread (the broker's loop), the others by their name
// (/proc/PID/task/TID/comm) less a trailing "/N" or "-N", so that libzmq's
// "ZMQbg/IO/0" and "ZMQbg/IO/1" add up together. Threads that ended are not
// in it (their time is in CpuTime's).
std::map<std::string, std::chrono::microseconds> ThreadCpuTimes(pid_t pid);
// CPU time of a process and its children, live and exited: its own, what
// its reaped children used (cutime, cstime), and each live child's own and
// reaped children's. A server that forks a process per connection
// (PostgreSQL) is measured whole this way; grandchildren still running are
// not counted.
std::chrono::microseconds TreeCpuTime(pid_t pid);
// This executable's path (for starting helpers of our own).
std::string SelfExe();

}  // namespace zchat::testing
