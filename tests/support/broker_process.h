// BrokerProcess: the zchat-broker binary (ZCHAT_BROKER_BINARY) as a child
// process on a loopback port chosen by the system, over a database in a
// temporary directory. For the tests that need a real process: to kill it,
// to restart it, or to read its memory and CPU from /proc.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/temp_dir.h"

extern char** environ;

namespace zchat::testing {

class BrokerProcess {
 public:
  // `extra` flags are added to every start; `capture_log` sends the
  // broker's stderr to log_path().
  explicit BrokerProcess(std::vector<std::string> extra = {},
                         bool capture_log = false)
      : extra_(std::move(extra)), capture_log_(capture_log) {
    if (std::find(extra_.begin(), extra_.end(), "--log-level") ==
        extra_.end()) {
      extra_.insert(extra_.end(), {"--log-level", "error"});
    }
  }
  ~BrokerProcess() { Stop(); }

  // Starts on `bind` (default: a port chosen by the system; a restart passes
  // the endpoint of the previous run). Returns the endpoint, "" on failure.
  std::string Start(const std::string& bind = "tcp://127.0.0.1:*") {
    const std::string file = dir_.File("endpoint");
    std::remove(file.c_str());
    std::vector<std::string> args = {ZCHAT_BROKER_BINARY,
                                     "--bind",
                                     bind,
                                     "--db",
                                     dir_.File("broker.db"),
                                     "--pwhash-cost",
                                     "min",
                                     "--endpoint-file",
                                     file};
    args.insert(args.end(), extra_.begin(), extra_.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    if (capture_log_) {
      posix_spawn_file_actions_addopen(&actions, 2, log_path().c_str(),
                                       O_WRONLY | O_CREAT | O_APPEND, 0600);
    }
    const int rc =
        posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    endpoint_.clear();
    if (rc != 0) return "";
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (endpoint_.empty() && std::chrono::steady_clock::now() < deadline) {
      std::ifstream(file) >> endpoint_;
      if (endpoint_.empty()) std::this_thread::yield();
    }
    return endpoint_;
  }
  // SIGKILL: no chance to clean up.
  void Kill() { Signal(SIGKILL); }
  // SIGTERM: a clean stop. Returns the exit status (-1 if none).
  int Stop() { return Signal(SIGTERM); }

  const std::string& endpoint() const { return endpoint_; }
  pid_t pid() const { return pid_; }
  std::string log_path() const { return dir_.File("broker.log"); }
  std::string Log() const {
    std::ifstream in(log_path());
    return std::string((std::istreambuf_iterator<char>(in)), {});
  }
  int64_t RssKib() const {
    std::ifstream in("/proc/" + std::to_string(pid_) + "/status");
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
    }
    return -1;
  }
  // User + system CPU time of the process, in clock ticks.
  int64_t CpuTicks() const {
    std::ifstream in("/proc/" + std::to_string(pid_) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(in)), {});
    std::istringstream rest(stat.substr(stat.rfind(')') + 2));
    std::string field;
    int64_t ticks = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i) {
      if (i == 14 || i == 15) ticks += std::stoll(field);
    }
    return ticks;
  }

 private:
  int Signal(int sig) {
    if (pid_ <= 0) return -1;
    kill(pid_, sig);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  TempDir dir_;
  std::vector<std::string> extra_;
  bool capture_log_;
  pid_t pid_ = -1;
  std::string endpoint_;
};

}  // namespace zchat::testing
