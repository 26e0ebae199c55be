// HTTP/1.1 requests from a byte stream, one at a time, with limits: Node's parser llhttp (from
// Debian's node-llhttp, compiled into the build) does the grammar; this wraps it for our reactor.
// Incremental (a request may arrive a byte at a time) and pipelining-aware: parse() stops at the
// end of each request and says how many bytes it used, so the caller answers requests in order and
// leaves the rest of the input for the next call. After an Upgrade request (WebSocket) the bytes
// that follow belong to the new protocol and are left unparsed.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace http {

struct Request {
  std::string method;  // "GET"
  std::string target;  // "/index.html?x=1", as sent
  int version_major = 1;
  int version_minor = 1;
  std::vector<std::pair<std::string, std::string>> headers;  // names in lower case, in order
  std::string body;
  bool keep_alive = true;  // as HTTP/1.x says for this request (Connection, version)
  bool upgrade = false;    // an Upgrade request: what follows is another protocol

  // The first header named `name` (lower case), or null.
  const std::string* header(std::string_view name) const;
};

struct ParserLimits {
  size_t max_header_bytes = 8 * 1024;  // request line and headers together
  size_t max_headers = 64;
  size_t max_body = 64 * 1024;
};

enum class ParseStatus {
  kNeedMore,  // no complete request yet: call again with more bytes (the same ones, and more)
  kRequest,   // request() is complete; `consumed` bytes of the input were its
  kError,     // the stream is not HTTP we accept: answer `http_status` and close
};

struct ParseResult {
  ParseStatus status = ParseStatus::kNeedMore;
  size_t consumed = 0;   // bytes of the input used (kRequest; kNeedMore: all of it)
  int http_status = 0;   // kError: 400, 413 (body), 414 (target), 431 (headers), 505 (version)
  std::string reason;    // kError: for the log and the error page
};

class RequestParser {
 public:
  explicit RequestParser(ParserLimits limits = {});
  ~RequestParser();
  RequestParser(const RequestParser&) = delete;
  RequestParser& operator=(const RequestParser&) = delete;

  // Parses from the start of `input`, which holds whatever the previous call did not consume
  // followed by new bytes. kNeedMore consumes everything given (the parser keeps its state);
  // kRequest consumes up to the end of one request. After kError the parser stays failed; after
  // an Upgrade request (Request::upgrade, also CONNECT) every later call is kError too: the caller
  // switches protocols or closes the connection.
  ParseResult parse(std::string_view input);
  const Request& request() const { return request_; }

 private:
  struct State;
  friend struct State;
  std::unique_ptr<State> state_;
  Request request_;
  bool upgraded_ = false;  // an Upgrade request was returned: the stream is not HTTP any more
};

}  // namespace http
