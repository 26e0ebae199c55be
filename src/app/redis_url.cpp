#include "app/redis_url.h"

#include <regex>

namespace app {

std::optional<RedisAddress> parse_redis_url(const std::string& url) {
  static const std::regex re(R"(^(?:redis://)?([A-Za-z0-9_.\-]+)(?::(\d{1,5}))?/?$)");
  std::smatch m;
  if (!std::regex_match(url, m, re)) return std::nullopt;
  RedisAddress address;
  address.host = m[1];
  if (m[2].matched) {
    long p = std::stol(m[2]);
    if (p < 1 || p > 65535) return std::nullopt;
    address.port = static_cast<uint16_t>(p);
  }
  return address;
}

}  // namespace app
