#include "broker/log.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <string>

namespace zchat {
namespace {
std::atomic<LogLevel> g_level{LogLevel::kInfo};
constexpr std::string_view kNames[] = {"debug", "info", "warn", "error", "off"};
}  // namespace

void SetLogLevel(LogLevel level) { g_level = level; }

bool LogEnabled(LogLevel level) { return level >= g_level.load(); }

void Log(LogLevel level, std::string_view message) {
  if (!LogEnabled(level)) return;
  using namespace std::chrono;
  const auto now = system_clock::now();
  const std::time_t secs = system_clock::to_time_t(now);
  const auto millis =
      duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char stamp[64];
  std::snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                tm.tm_min, tm.tm_sec, static_cast<int>(millis));
  std::string line = stamp;
  line += ' ';
  for (char c : kNames[static_cast<int>(level)])
    line += static_cast<char>(toupper(c));
  line += ' ';
  line += message;
  line += '\n';
  (void)!write(STDERR_FILENO, line.data(), line.size());
}

bool ParseLogLevel(std::string_view text, LogLevel* out) {
  for (int i = 0; i < 5; ++i) {
    if (kNames[i] == text) {
      *out = static_cast<LogLevel>(i);
      return true;
    }
  }
  return false;
}

}  // namespace zchat
