// Child processes for the benchmark: the broker and the baseline run as
// separate processes so that their CPU time and memory can be read from
// /proc, apart from the load generator's.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace zchat::bench {

struct Child {
  pid_t pid = -1;
  std::string endpoint;
};

// Starts `argv` with "--endpoint-file FILE" appended and waits (up to 20 s)
// until FILE holds the endpoint. pid -1 on failure.
Child Spawn(std::vector<std::string> argv, const std::string& endpoint_file);
// SIGTERM, then waits; returns the exit status (or -1).
int Stop(Child& child);

// CPU time (user + system, all threads) of a process, in microseconds.
int64_t CpuMicros(pid_t pid);
// Resident set size of a process, in KiB.
int64_t RssKib(pid_t pid);
// This executable's path (for spawning helpers of our own).
std::string SelfPath();

}  // namespace zchat::bench
