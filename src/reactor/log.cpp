#include "reactor/log.h"

#include <atomic>
#include <cstdio>
#include <ctime>

namespace reactor {
namespace {
std::atomic<LogLevel> g_level{LogLevel::kInfo};
char g_tag[48] = "";
const char* level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
    case LogLevel::kOff: break;
  }
  return "?";
}
}  // namespace

bool LogLimiter::allow(uint64_t* suppressed_before) {
  int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::steady_clock::now().time_since_epoch())
                    .count();
  if (used_ == 0 || now - window_start_ms_ >= window_ms_) {
    window_start_ms_ = now;
    used_ = 0;
  }
  if (used_ >= burst_) {
    ++suppressed_;
    return false;
  }
  ++used_;
  if (suppressed_before) *suppressed_before = suppressed_;
  suppressed_ = 0;
  return true;
}

std::string more_like_it(uint64_t suppressed) {
  return suppressed == 0 ? std::string() : " (and " + std::to_string(suppressed) + " more like it)";
}

void set_log_tag(const char* tag) { std::snprintf(g_tag, sizeof g_tag, "[%s] ", tag); }

void set_log_level(LogLevel level) { g_level.store(level, std::memory_order_relaxed); }
LogLevel log_level() { return g_level.load(std::memory_order_relaxed); }

void log(LogLevel level, const char* fmt, ...) {
  char line[1024];
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  tm parts{};
  gmtime_r(&ts.tv_sec, &parts);
  int n = std::snprintf(line, sizeof line, "%02d:%02d:%02d.%03ld %s %s", parts.tm_hour, parts.tm_min,
                        parts.tm_sec, ts.tv_nsec / 1000000, level_name(level), g_tag);
  va_list args;
  va_start(args, fmt);
  int m = std::vsnprintf(line + n, sizeof line - n - 1, fmt, args);
  va_end(args);
  size_t len = static_cast<size_t>(n) + (m < 0 ? 0 : static_cast<size_t>(m));
  if (len > sizeof line - 2) len = sizeof line - 2;
  line[len++] = '\n';
  std::fwrite(line, 1, len, stderr);  // one fwrite: lines from threads do not interleave
}

}  // namespace reactor
