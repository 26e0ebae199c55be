#include "reactor/error.h"

#include <cerrno>
#include <cstring>

namespace reactor {

void throw_system_error(const char* call) { throw_system_error(call, errno); }

void throw_system_error(const char* call, int err) {
  throw std::system_error(err, std::generic_category(), call);
}

std::string describe_errno(const char* call, int err) {
  return std::string(call) + ": " + std::strerror(err);
}

}  // namespace reactor
