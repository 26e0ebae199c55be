// A deliberately small logger: one line per record on stderr, with a level and a timestamp.
// Logging is off the hot path: nothing here is called per message by the library.
#pragma once

#include <cstdarg>

namespace reactor {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3, kOff = 4 };

void set_log_level(LogLevel level);
// A tag printed on every line after the level (e.g. "worker 2"); set once, before any thread starts.
void set_log_tag(const char* tag);
LogLevel log_level();
void log(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

#define REACTOR_LOG(level, ...)                                                      \
  do {                                                                               \
    if (::reactor::log_level() <= (level)) ::reactor::log((level), __VA_ARGS__);     \
  } while (0)
#define LOG_DEBUG(...) REACTOR_LOG(::reactor::LogLevel::kDebug, __VA_ARGS__)
#define LOG_INFO(...) REACTOR_LOG(::reactor::LogLevel::kInfo, __VA_ARGS__)
#define LOG_WARN(...) REACTOR_LOG(::reactor::LogLevel::kWarn, __VA_ARGS__)
#define LOG_ERROR(...) REACTOR_LOG(::reactor::LogLevel::kError, __VA_ARGS__)

}  // namespace reactor
