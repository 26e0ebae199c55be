#include "http/static_files.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace http {

// Generated at build time from web/ (cmake/embed_web.cmake).
struct EmbeddedFile {
  const char* name;
  const unsigned char* data;
  size_t size;
};
extern const EmbeddedFile kEmbeddedFiles[];
extern const size_t kEmbeddedFileCount;

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string etag_of(std::string_view bytes) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a: a validator, not a secret
  for (unsigned char c : bytes) h = (h ^ c) * 1099511628211ull;
  char buf[24];
  std::snprintf(buf, sizeof buf, "\"%016llx\"", static_cast<unsigned long long>(h));
  return buf;
}

std::shared_ptr<const StaticFile> make_file(std::string name, std::string bytes) {
  auto f = std::make_shared<StaticFile>();
  f->content_type = content_type_of(name);
  f->etag = etag_of(bytes);
  f->body = std::make_shared<const std::string>(std::move(bytes));
  return f;
}

}  // namespace

std::optional<std::string> file_path_of(std::string_view target) {
  target = target.substr(0, target.find_first_of("?#"));
  if (target.empty() || target[0] != '/') return std::nullopt;
  std::string decoded;
  for (size_t i = 0; i < target.size(); ++i) {
    char c = target[i];
    if (c == '%') {
      if (i + 2 >= target.size()) return std::nullopt;
      int hi = hex_value(target[i + 1]), lo = hex_value(target[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    }
    if (c == '\0' || c == '\\') return std::nullopt;
    decoded += c;
  }
  // Segments: none may be "." or ".."; empty ones (a doubled slash) are refused too, so one file
  // has one name.
  std::string path;
  size_t start = 1;
  while (start <= decoded.size()) {
    size_t end = decoded.find('/', start);
    if (end == std::string::npos) end = decoded.size();
    std::string_view seg(decoded.data() + start, end - start);
    if (seg == "." || seg == "..") return std::nullopt;
    if (seg.empty() && end != decoded.size()) return std::nullopt;
    if (!seg.empty()) {
      if (!path.empty()) path += '/';
      path.append(seg);
    }
    start = end + 1;
  }
  if (decoded.back() == '/') path += path.empty() ? "index.html" : "/index.html";
  return path;
}

const char* content_type_of(std::string_view name) {
  auto ends = [&](std::string_view ext) { return name.size() >= ext.size() && name.substr(name.size() - ext.size()) == ext; };
  if (ends(".html")) return "text/html; charset=utf-8";
  if (ends(".js")) return "text/javascript; charset=utf-8";
  if (ends(".css")) return "text/css; charset=utf-8";
  if (ends(".json")) return "application/json";
  if (ends(".svg")) return "image/svg+xml";
  if (ends(".png")) return "image/png";
  if (ends(".ico")) return "image/x-icon";
  if (ends(".txt")) return "text/plain; charset=utf-8";
  return "application/octet-stream";
}

StaticFiles StaticFiles::embedded() {
  StaticFiles s;
  for (size_t i = 0; i < kEmbeddedFileCount; ++i) {
    const EmbeddedFile& e = kEmbeddedFiles[i];
    s.files_.emplace(e.name, make_file(e.name, std::string(reinterpret_cast<const char*>(e.data), e.size)));
  }
  return s;
}

StaticFiles StaticFiles::directory(const std::string& root) {
  char real[PATH_MAX];
  struct stat st{};
  if (::realpath(root.c_str(), real) == nullptr || ::stat(real, &st) != 0 || !S_ISDIR(st.st_mode)) {
    throw std::runtime_error("web root '" + root + "' is not a directory");
  }
  StaticFiles s;
  s.root_ = real;
  return s;
}

std::shared_ptr<const StaticFile> StaticFiles::find(std::string_view target) const {
  auto path = file_path_of(target);
  if (!path) return nullptr;
  if (root_.empty()) {
    auto it = files_.find(*path);
    return it == files_.end() ? nullptr : it->second;
  }
  // From disk: the real path, symlinks resolved, must be a regular file inside the root.
  std::string full = root_ + "/" + *path;
  char real[PATH_MAX];
  if (::realpath(full.c_str(), real) == nullptr) return nullptr;
  std::string_view r(real);
  if (!r.starts_with(root_) || r.size() <= root_.size() || r[root_.size()] != '/') return nullptr;
  struct stat st{};
  if (::stat(real, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (16 << 20)) return nullptr;
  std::ifstream in(real, std::ios::binary);
  if (!in) return nullptr;
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return make_file(*path, bytes.str());
}

}  // namespace http
