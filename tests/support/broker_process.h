// BrokerProcess: the zchat-broker binary (ZCHAT_BROKER_BINARY) as a child
// process on a loopback port chosen by the system, over a database in a
// temporary directory. For the tests that need a real process: to kill it,
// to restart it, to limit its descriptors, or to read its memory and CPU
// from /proc.
#pragma once

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "tests/support/child_process.h"
#include "tests/support/temp_dir.h"

namespace zchat::testing {

class BrokerProcess {
 public:
  // `extra` flags are added to every start; `capture_log` sends the
  // broker's stderr to log_path().
  explicit BrokerProcess(std::vector<std::string> extra = {},
                         bool capture_log = false)
      : extra_(std::move(extra)) {
    if (std::find(extra_.begin(), extra_.end(), "--log-level") ==
        extra_.end()) {
      extra_.insert(extra_.end(), {"--log-level", "error"});
    }
    if (capture_log) child_options_.stderr_path = log_path();
  }

  // Every later start runs the broker under this descriptor limit.
  void set_fd_limit(FdLimit limit) { child_options_.fd_limit = limit; }

  // Starts on `bind` (default: a port chosen by the system; a restart passes
  // the endpoint of the previous run). Returns the endpoint, "" on failure.
  std::string Start(const std::string& bind = "tcp://127.0.0.1:*") {
    const std::string file = dir_.File("endpoint");
    std::remove(file.c_str());
    std::vector<std::string> args = {
        ZCHAT_BROKER_BINARY, "--bind", bind, "--pwhash-cost", "min",
        "--endpoint-file",   file};
    // Its own SQLite file, unless the extra flags name a store (--store).
    if (std::find(extra_.begin(), extra_.end(), "--store") == extra_.end()) {
      args.insert(args.end(), {"--db", dir_.File("broker.db")});
    }
    args.insert(args.end(), extra_.begin(), extra_.end());
    endpoint_.clear();
    if (!child_.Start(args, child_options_)) return "";
    endpoint_ = child_.ReadEndpoint(file, std::chrono::seconds(10));
    return endpoint_;
  }
  // SIGKILL: no chance to clean up.
  void Kill() { child_.Kill(); }
  // SIGTERM: a clean stop (SIGKILL if it takes over 10 s). Returns the
  // exit status (-1 if none).
  int Stop() { return child_.Stop(); }

  const std::string& endpoint() const { return endpoint_; }
  ChildProcess& process() { return child_; }
  std::string log_path() const { return dir_.File("broker.log"); }
  std::string Log() const {
    std::ifstream in(log_path());
    return std::string((std::istreambuf_iterator<char>(in)), {});
  }
  int64_t RssKib() const { return child_.RssKib(); }
  std::chrono::microseconds CpuTime() const { return child_.CpuTime(); }

 private:
  TempDir dir_;  // outlives the child (declared first, destroyed last)
  std::vector<std::string> extra_;
  ChildOptions child_options_;
  ChildProcess child_;
  std::string endpoint_;
};

}  // namespace zchat::testing
