// Errors: a failing system call becomes std::system_error whose what() names the call and errno.
#pragma once

#include <string>
#include <system_error>

namespace reactor {

// Throws std::system_error(errno, "<call>: <strerror>").
[[noreturn]] void throw_system_error(const char* call);
[[noreturn]] void throw_system_error(const char* call, int err);

// "call: strerror(err)" without throwing, for logs.
std::string describe_errno(const char* call, int err);

}  // namespace reactor
