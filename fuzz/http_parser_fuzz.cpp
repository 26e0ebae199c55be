// Fuzz target for http::RequestParser: arbitrary bytes, whole and in pieces. Nothing may crash or
// read out of bounds (ASan/UBSan), and how the bytes are split must not change the requests read
// or whether the stream is refused. (Not always with which status: bytes that break both a limit
// and the grammar are 431 when llhttp hands us the span before it finds the error, which depends
// on where a read ended, and 400 otherwise.) The first byte chooses small or default limits.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "http/request_parser.h"

namespace {

struct Outcome {
  std::vector<std::string> requests;  // method, target, headers, body of each, flattened
  int error = 0;
  bool same(const Outcome& o) const { return requests == o.requests && (error != 0) == (o.error != 0); }
};

std::string flatten(const http::Request& r) {
  std::string s = r.method + ' ' + r.target + ' ' + std::to_string(r.version_minor) + (r.keep_alive ? "k" : "c") +
                  (r.upgrade ? "u" : "-");
  for (const auto& [k, v] : r.headers) s += '\n' + k + ':' + v;
  return s + "\n\n" + r.body;
}

Outcome run(std::string_view data, size_t step, const http::ParserLimits& limits) {
  http::RequestParser parser(limits);
  Outcome out;
  std::string pending;
  size_t off = 0;
  while (off < data.size()) {
    size_t n = std::min(step, data.size() - off);
    pending.append(data.substr(off, n));
    off += n;
    while (!pending.empty()) {
      http::ParseResult r = parser.parse(pending);
      if (r.status == http::ParseStatus::kError) {
        out.error = r.http_status;
        return out;
      }
      if (r.consumed > pending.size()) std::abort();
      if (r.status == http::ParseStatus::kRequest && r.consumed == 0) std::abort();  // no progress
      pending.erase(0, r.consumed);
      if (r.status == http::ParseStatus::kNeedMore) break;
      out.requests.push_back(flatten(parser.request()));
      if (parser.request().upgrade) {
        // Past an upgrade the parser must refuse, never hand the same request out again.
        if (parser.parse(pending).status != http::ParseStatus::kError) std::abort();
        return out;
      }
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  if (size < 1) return 0;
  http::ParserLimits limits;
  if (bytes[0] & 1) limits = {.max_header_bytes = 64, .max_headers = 3, .max_body = 8};
  std::string_view data(reinterpret_cast<const char*>(bytes + 1), size - 1);
  Outcome whole = run(data, data.size() + 1, limits);
  Outcome split = run(data, 1 + bytes[0] % 7, limits);
  if (!whole.same(split)) std::abort();
  return 0;
}
