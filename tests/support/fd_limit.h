// The descriptor limit (RLIMIT_NOFILE): one descriptor per connection, so
// the tests, the benchmark and the broker children they start read, raise
// or lower it.
#pragma once

#include <sys/resource.h>

namespace zchat::testing {

struct FdLimit {
  rlim_t soft = 0;
  rlim_t hard = 0;
};

// The limit in force for this process.
FdLimit GetFdLimit();
// Sets it; false if the system refused. Only calls setrlimit, so it is safe
// between fork and exec.
bool SetFdLimit(const FdLimit& limit);
// Raises the soft limit to the hard one (what the broker does for itself,
// and what a process holding many connections needs). Children inherit it.
// Returns the limit now in force.
FdLimit RaiseFdLimit();

}  // namespace zchat::testing
