// HTTP/1.1 responses, as bytes ready to queue: status line, the headers every response carries
// (Date, Content-Length, Connection), the ones given, and the body.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace http {

using Headers = std::vector<std::pair<std::string, std::string>>;

// "Not Found" for 404; "Unknown" for a code not in the table.
const char* status_text(int status);

// The status line and headers of a response whose body has `content_length` bytes (sent apart,
// e.g. a shared file body queued by reference).
std::string response_head(int status, const Headers& headers, size_t content_length, bool keep_alive);

// The response's head and body. `head_only` (HEAD): the headers say the body's length, no body.
std::string response(int status, const Headers& headers, std::string_view body, bool keep_alive,
                     bool head_only = false);

// A small text/plain error response: "404 Not Found\n" and a reason (`head_only`: its headers only,
// for a HEAD request).
std::string error_response(int status, std::string_view reason, bool keep_alive, const Headers& extra = {},
                           bool head_only = false);

// The current time as an HTTP date (RFC 9110 IMF-fixdate), computed at most once a second per thread.
const std::string& http_date();

}  // namespace http
