// The address given to --redis.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace app {

struct RedisAddress {
  std::string host;
  uint16_t port = 6379;
};

// "redis://HOST[:PORT][/]" or "HOST[:PORT]" (HOST a name or an IPv4 address; PORT 1..65535,
// 6379 when left out); nullopt for anything else.
std::optional<RedisAddress> parse_redis_url(const std::string& url);

}  // namespace app
