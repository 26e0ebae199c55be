// A file of a test's own in /tmp, holding the bytes it was given, removed when the test ends.
// Shared by the unit and the integration tests.
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <string>

namespace testfiles {

struct TempFile {
  explicit TempFile(const std::string& bytes) {
    std::string name = "/tmp/chat-test-XXXXXX";
    int fd = ::mkstemp(name.data());
    path = name;
    if (fd >= 0) ::close(fd);
    std::ofstream(path, std::ios::binary) << bytes;
  }
  ~TempFile() { ::unlink(path.c_str()); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  std::string path;
};

}  // namespace testfiles
