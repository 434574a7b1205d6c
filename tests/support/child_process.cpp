#include "tests/support/child_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

namespace zchat::testing {
namespace {

using Clock = std::chrono::steady_clock;
using Millis = std::chrono::milliseconds;

// Milliseconds left until `deadline`, for poll(): never negative, and -1
// (wait for ever) when the deadline is Clock::time_point::max().
int PollTimeout(Clock::time_point deadline) {
  if (deadline == Clock::time_point::max()) return -1;
  const auto left = std::chrono::ceil<Millis>(deadline - Clock::now()).count();
  if (left <= 0) return 0;
  return left > INT_MAX ? INT_MAX : static_cast<int>(left);
}

Clock::time_point DeadlineAfter(Millis timeout) {
  const auto now = Clock::now();
  if (timeout >=
      std::chrono::duration_cast<Millis>(Clock::time_point::max() - now)) {
    return Clock::time_point::max();
  }
  return now + timeout;
}

// poll() that carries on after a signal, until `deadline`.
int PollUntil(pollfd* fds, nfds_t n, Clock::time_point deadline) {
  for (;;) {
    const int rc = poll(fds, n, PollTimeout(deadline));
    if (rc >= 0 || errno != EINTR) return rc;
  }
}

std::string ReadWhole(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

// Fields 3 to 17 of a /proc stat file (a process's or a thread's), those
// after the ")" that ends the command name (which may hold spaces):
// `fields[i - 3]` is the i-th. Empty if it cannot be read.
std::vector<int64_t> StatFields(const std::string& path) {
  const std::string stat = ReadWhole(path);
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return {};
  std::istringstream rest(stat.substr(paren + 1));
  std::vector<int64_t> fields;
  std::string field;
  // Field 3 is the state, a letter: kept as 0.
  for (int i = 3; i <= 17 && rest >> field; ++i) {
    fields.push_back(i == 3 ? 0 : std::stoll(field));
  }
  if (fields.size() != 15) return {};
  return fields;
}

// Clock ticks to microseconds.
int64_t TicksMicros(int64_t ticks) {
  return ticks * 1'000'000 / sysconf(_SC_CLK_TCK);
}

// utime + stime (fields 14 and 15) of a /proc stat file, in microseconds;
// -1 if it cannot be read.
int64_t StatCpuMicros(const std::string& path) {
  const std::vector<int64_t> f = StatFields(path);
  return f.empty() ? -1 : TicksMicros(f[14 - 3] + f[15 - 3]);
}

}  // namespace

ChildProcess::~ChildProcess() {
  Stop();
  ClosePipes();
}

bool ChildProcess::Start(const std::vector<std::string>& argv,
                         const ChildOptions& options) {
  if (running() || argv.empty()) return false;
  ClosePipes();
  exit_status_ = -1;
  // Everything the child touches is prepared before fork: between fork and
  // exec only async-signal-safe calls.
  std::vector<std::string> args = argv;
  std::vector<char*> cargs;
  for (auto& a : args) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  int in[2] = {-1, -1}, out[2] = {-1, -1};
  if (options.pipe_stdio &&
      (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0)) {
    for (int fd : {in[0], in[1], out[0], out[1]}) {
      if (fd >= 0) close(fd);
    }
    return false;
  }
  const char* stderr_path =
      options.stderr_path.empty() ? nullptr : options.stderr_path.c_str();
  const pid_t pid = fork();
  if (pid == 0) {
    if (stderr_path) {
      const int fd =
          open(stderr_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
      if (fd < 0 || dup2(fd, 2) < 0) _exit(126);
    }
    if (options.pipe_stdio && (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0)) {
      _exit(126);
    }
    if (options.fd_limit && !SetFdLimit(*options.fd_limit)) _exit(126);
    execv(cargs[0], cargs.data());
    _exit(127);
  }
  if (options.pipe_stdio) {
    close(in[0]);
    close(out[1]);
    if (pid > 0) {
      to_child_ = in[1];
      from_child_ = out[0];
    } else {
      close(in[1]);
      close(out[0]);
    }
  }
  if (pid < 0) return false;
  pid_ = pid;
  last_pid_ = pid;
  read_buffer_.clear();
  pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));  // -1: polled
  return true;
}

std::string ChildProcess::ReadEndpoint(const std::string& file,
                                       Millis timeout) {
  const auto deadline = DeadlineAfter(timeout);
  // The watch goes up before the first look, so no write falls between.
  int watch = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (watch >= 0) {
    std::string dir = std::filesystem::path(file).parent_path().string();
    if (dir.empty()) dir = ".";
    if (inotify_add_watch(watch, dir.c_str(),
                          IN_CLOSE_WRITE | IN_MOVED_TO | IN_MODIFY) < 0) {
      close(watch);
      watch = -1;
    }
  }
  std::string endpoint;
  for (;;) {
    const std::string content = ReadWhole(file);
    const size_t eol = content.find('\n');
    if (eol != std::string::npos) {
      std::istringstream(content.substr(0, eol)) >> endpoint;
      if (!endpoint.empty()) break;
    }
    if (Wait(Millis(0)).has_value()) break;  // it exited: no endpoint coming
    if (Clock::now() >= deadline) break;
    pollfd fds[2];
    nfds_t n = 0;
    if (watch >= 0) fds[n++] = {watch, POLLIN, 0};
    if (pidfd_ >= 0) fds[n++] = {pidfd_, POLLIN, 0};
    // Without inotify or a pidfd, look again every few milliseconds.
    auto until = deadline;
    if (watch < 0 || pidfd_ < 0) {
      until = std::min(deadline, DeadlineAfter(Millis(10)));
    }
    PollUntil(fds, n, until);
    if (watch >= 0) {
      char events[4096];
      while (read(watch, events, sizeof events) > 0) {
      }
    }
  }
  if (watch >= 0) close(watch);
  return endpoint;
}

std::optional<int> ChildProcess::Wait(Millis timeout) {
  if (pid_ <= 0) return exit_status_;
  const auto deadline = DeadlineAfter(timeout);
  for (;;) {
    int status = 0;
    const pid_t rc = waitpid(pid_, &status, WNOHANG);
    if (rc == pid_ || (rc < 0 && errno == ECHILD)) {
      Reap(rc == pid_ ? status : -1);
      return exit_status_;
    }
    if (Clock::now() >= deadline) return std::nullopt;
    if (pidfd_ >= 0) {
      pollfd fd{pidfd_, POLLIN, 0};
      PollUntil(&fd, 1, deadline);  // readable once the child has exited
    } else {
      PollUntil(nullptr, 0, std::min(deadline, DeadlineAfter(Millis(5))));
    }
  }
}

int ChildProcess::Stop(Millis grace, int signal) {
  if (pid_ <= 0) return exit_status_;
  kill(pid_, signal);
  if (std::optional<int> status = Wait(grace)) return *status;
  Kill();
  return exit_status_;
}

void ChildProcess::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  Wait(Millis::max());
}

void ChildProcess::Reap(int status) {
  exit_status_ = status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  pid_ = -1;
  if (pidfd_ >= 0) close(pidfd_);
  pidfd_ = -1;
}

void ChildProcess::ClosePipes() {
  if (to_child_ >= 0) close(to_child_);
  if (from_child_ >= 0) close(from_child_);
  to_child_ = from_child_ = -1;
}

int64_t ChildProcess::RssKib() const {
  return running() ? testing::RssKib(pid_) : -1;
}

std::chrono::microseconds ChildProcess::CpuTime() const {
  return running() ? testing::CpuTime(pid_) : std::chrono::microseconds(-1);
}

bool ChildProcess::WriteLine(const std::string& line) {
  if (to_child_ < 0) return false;
  const std::string data = line + "\n";
  // A child that has gone away raises SIGPIPE: blocked here, and taken back
  // if it came, so that only this write fails.
  sigset_t pipe_signal, old;
  sigemptyset(&pipe_signal);
  sigaddset(&pipe_signal, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_signal, &old);
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = write(to_child_, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  if (done < data.size() && errno == EPIPE) {
    const timespec zero{};
    sigtimedwait(&pipe_signal, nullptr, &zero);
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return done == data.size();
}

std::optional<std::string> ChildProcess::ReadLine(Millis timeout) {
  if (from_child_ < 0) return std::nullopt;
  const auto deadline = DeadlineAfter(timeout);
  for (;;) {
    const size_t eol = read_buffer_.find('\n');
    if (eol != std::string::npos) {
      std::string line = read_buffer_.substr(0, eol);
      read_buffer_.erase(0, eol + 1);
      return line;
    }
    pollfd fd{from_child_, POLLIN, 0};
    if (PollUntil(&fd, 1, deadline) <= 0) return std::nullopt;  // timeout
    char buf[4096];
    const ssize_t n = read(from_child_, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::nullopt;  // end of file
    read_buffer_.append(buf, static_cast<size_t>(n));
  }
}

int64_t RssKib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  }
  return -1;
}

std::chrono::microseconds CpuTime(pid_t pid) {
  return std::chrono::microseconds(
      StatCpuMicros("/proc/" + std::to_string(pid) + "/stat"));
}

std::map<std::string, std::chrono::microseconds> ThreadCpuTimes(pid_t pid) {
  std::map<std::string, std::chrono::microseconds> out;
  const std::string task = "/proc/" + std::to_string(pid) + "/task";
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(task, ec)) {
    const std::string tid = entry.path().filename();
    const int64_t us = StatCpuMicros(entry.path().string() + "/stat");
    if (us < 0) continue;  // the thread ended meanwhile
    std::string name = "main";
    if (tid != std::to_string(pid)) {
      name = ReadWhole(entry.path().string() + "/comm");
      while (!name.empty() && name.back() == '\n') name.pop_back();
      if (name.empty()) name = "unnamed";  // it ended after its stat
      // "ZMQbg/IO/0", "ZMQbg/IO/1": one group.
      const size_t digits = name.find_last_not_of("0123456789");
      if (digits != std::string::npos && digits + 1 < name.size() &&
          (name[digits] == '/' || name[digits] == '-')) {
        name.resize(digits);
      }
    }
    out[name] += std::chrono::microseconds(us);
  }
  return out;
}

namespace {

// utime + stime (+ cutime + cstime with `children`) in clock ticks, and the
// parent pid, of /proc/PID/stat; false if it cannot be read.
bool StatTicks(pid_t pid, bool children, int64_t* ticks, pid_t* parent) {
  const std::vector<int64_t> f =
      StatFields("/proc/" + std::to_string(pid) + "/stat");
  if (f.empty()) return false;
  *parent = static_cast<pid_t>(f[4 - 3]);
  *ticks = f[14 - 3] + f[15 - 3] + (children ? f[16 - 3] + f[17 - 3] : 0);
  return true;
}

}  // namespace

std::chrono::microseconds TreeCpuTime(pid_t pid) {
  int64_t total = 0, ticks = 0;
  pid_t parent = 0;
  if (!StatTicks(pid, true, &ticks, &parent)) {
    return std::chrono::microseconds(-1);
  }
  total += ticks;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.empty() || name.find_first_not_of("0123456789") != name.npos) {
      continue;
    }
    const auto child = static_cast<pid_t>(std::stoll(name));
    if (child == pid) continue;
    if (StatTicks(child, true, &ticks, &parent) && parent == pid) {
      total += ticks;
    }
  }
  return std::chrono::microseconds(TicksMicros(total));
}

std::string SelfExe() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

}  // namespace zchat::testing
