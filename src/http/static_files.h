// The files of the web page: compiled into the binary (the server finds them wherever it is
// started), or read from a directory (--web-root, to work on the page without rebuilding). A
// request's path is decoded and checked before anything is looked up: percent-escapes decoded
// once, "." and ".." segments, NUL and backslashes refused; from a directory, the file's real
// path (symlinks resolved) must be inside the root's. Nothing outside the root is ever served.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace http {

struct StaticFile {
  std::shared_ptr<const std::string> body;
  std::string content_type;
  std::string etag;  // a strong validator, quoted
};

// The path of a request target ("/a%20b.html?x" -> "a b.html"; "/" -> "index.html"), or nothing
// if it is not one we serve (not absolute, a bad escape, "." or ".." segments, NUL, backslash).
std::optional<std::string> file_path_of(std::string_view target);

// Content-Type by file name extension.
const char* content_type_of(std::string_view name);

class StaticFiles {
 public:
  // The files compiled in from the repository's web/ folder.
  static StaticFiles embedded();
  // Files under `root`, read at each request; throws std::runtime_error if it is not a directory.
  static StaticFiles directory(const std::string& root);

  // The file for a request target, or null (404).
  std::shared_ptr<const StaticFile> find(std::string_view target) const;
  size_t embedded_count() const { return files_.size(); }

 private:
  std::unordered_map<std::string, std::shared_ptr<const StaticFile>> files_;  // embedded
  std::string root_;  // real path of the directory; empty when embedded
};

}  // namespace http
