// One-line event log to stderr: "2026-11-26T23:59:59.123Z LEVEL message".
// Thread-safe (each line is one write).
#pragma once

#include <string_view>

namespace zchat {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3, kOff = 4 };

void SetLogLevel(LogLevel level);
bool LogEnabled(LogLevel level);
void Log(LogLevel level, std::string_view message);
// "debug", "info", "warn", "error", "off"; false if not one of them.
bool ParseLogLevel(std::string_view text, LogLevel* out);

}  // namespace zchat
