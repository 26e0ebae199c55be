// Shared by the clients in apps/: which demultiplexer can watch this process's stdin.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

namespace app {

// epoll refuses regular files and devices such as /dev/null; poll takes them (always readable).
inline const char* backend_for_stdin() {
  struct stat st {};
  if (::fstat(STDIN_FILENO, &st) == 0 &&
      (S_ISREG(st.st_mode) || (S_ISCHR(st.st_mode) && !::isatty(STDIN_FILENO)))) {
    return "poll";
  }
  return "";  // the best available
}

}  // namespace app
