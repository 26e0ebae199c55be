// A deliberately small logger: one line per record on stderr, with a level and a timestamp.
// Logging is off the hot path: nothing here is called per message by the library.
#pragma once

#include <chrono>
#include <cstdarg>
#include <cstdint>
#include <string>

namespace reactor {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3, kOff = 4 };

void set_log_level(LogLevel level);
// A tag printed on every line after the level (e.g. "worker 2"); set once, before any thread starts.
void set_log_tag(const char* tag);
LogLevel log_level();
void log(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// A budget for one stream of log lines (one connection's, or one kind of event's on one thread):
// at most `burst` lines per `window`. Lines over it are not written but counted, and the next line
// that passes mentions them, so no input, however bad or repeated, can make the log grow faster
// than burst/window per stream. Not thread-safe: one per connection, or one per thread
// (thread_local) for a kind of event.
class LogLimiter {
 public:
  LogLimiter(uint32_t burst, std::chrono::milliseconds window) : burst_(burst), window_ms_(window.count()) {}
  // True if a line may be written now; then `*suppressed_before` (if given) is the number of lines
  // left out since the last one written, for that line to mention.
  bool allow(uint64_t* suppressed_before = nullptr);
  // Lines left out since the last one written (what a summary at the end mentions).
  uint64_t suppressed() const { return suppressed_; }

 private:
  uint32_t burst_;
  uint32_t used_ = 0;
  int64_t window_ms_;
  int64_t window_start_ms_ = 0;
  uint64_t suppressed_ = 0;
};

// " (and N more like it)" when N > 0, else "": the tail of a line that passed a LogLimiter.
std::string more_like_it(uint64_t suppressed);

#define REACTOR_LOG(level, ...)                                                      \
  do {                                                                               \
    if (::reactor::log_level() <= (level)) ::reactor::log((level), __VA_ARGS__);     \
  } while (0)
#define LOG_DEBUG(...) REACTOR_LOG(::reactor::LogLevel::kDebug, __VA_ARGS__)
#define LOG_INFO(...) REACTOR_LOG(::reactor::LogLevel::kInfo, __VA_ARGS__)
#define LOG_WARN(...) REACTOR_LOG(::reactor::LogLevel::kWarn, __VA_ARGS__)
#define LOG_ERROR(...) REACTOR_LOG(::reactor::LogLevel::kError, __VA_ARGS__)

}  // namespace reactor
