#include "tests/support/fd_limit.h"

namespace zchat::testing {

FdLimit GetFdLimit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return {};
  return {lim.rlim_cur, lim.rlim_max};
}

bool SetFdLimit(const FdLimit& limit) {
  const rlimit lim{limit.soft, limit.hard};
  return setrlimit(RLIMIT_NOFILE, &lim) == 0;
}

FdLimit RaiseFdLimit() {
  FdLimit limit = GetFdLimit();
  if (limit.soft < limit.hard) SetFdLimit({limit.hard, limit.hard});
  return GetFdLimit();
}

}  // namespace zchat::testing
