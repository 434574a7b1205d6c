// FullDisk: while it lives, this process cannot write past the first byte
// of any file (RLIMIT_FSIZE; SIGXFSZ ignored so writes fail with EFBIG, as
// on a full disk). SQLite's commit, which appends to the WAL, then fails for
// real: the tests use it to fail a batch's commit after its requests ran.
#pragma once

#include <signal.h>
#include <sys/resource.h>

namespace zchat::testing {

class FullDisk {
 public:
  FullDisk() {
    old_handler_ = signal(SIGXFSZ, SIG_IGN);
    getrlimit(RLIMIT_FSIZE, &old_);
    rlimit limit = old_;
    limit.rlim_cur = 1;
    setrlimit(RLIMIT_FSIZE, &limit);
  }
  ~FullDisk() {
    setrlimit(RLIMIT_FSIZE, &old_);
    signal(SIGXFSZ, old_handler_);
  }
  FullDisk(const FullDisk&) = delete;
  FullDisk& operator=(const FullDisk&) = delete;

 private:
  rlimit old_{};
  sighandler_t old_handler_ = SIG_DFL;
};

}  // namespace zchat::testing
