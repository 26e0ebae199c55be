#include "http/request_parser.h"

#include <llhttp.h>

#include <algorithm>
#include <cctype>

namespace http {

const std::string* Request::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k == name) return &v;
  }
  return nullptr;
}

struct RequestParser::State {
  llhttp_t parser;
  RequestParser* owner = nullptr;
  ParserLimits limits;
  size_t header_bytes = 0;
  bool in_value = false;  // the last header callback was a value (a new field starts a header)
  bool complete = false;
  int status = 0;  // a limit's HTTP status, set before a callback fails
  std::string reason;
  // Obsolete line folding (a header line that starts with a space or a tab, RFC 9112 5.2) is
  // refused: llhttp takes it as more of the value before. A value is folded if what comes before
  // it, past spaces and tabs, is the end of a line: looked for in the bytes given to this
  // execute (from `begin`), or, at their start, in the end of the bytes given before (`ended_line`).
  const char* begin = nullptr;
  bool ended_line = false;

  static State& of(llhttp_t* p) { return *static_cast<State*>(p->data); }
  Request& req() { return owner->request_; }

  int fail(int http_status, const char* why) {
    status = http_status;
    reason = why;
    return -1;
  }
  // Counts request-line and header bytes against the limit.
  int count(size_t n, int http_status, const char* why) {
    header_bytes += n;
    return header_bytes > limits.max_header_bytes ? fail(http_status, why) : 0;
  }

  static int on_message_begin(llhttp_t* p) {
    State& s = of(p);
    s.ended_line = false;
    s.req() = Request{};
    s.header_bytes = 0;
    s.in_value = false;
    s.complete = false;
    return 0;
  }
  static int on_url(llhttp_t* p, const char* at, size_t n) {
    State& s = of(p);
    s.req().target.append(at, n);
    return s.count(n, 414, "request target too long");
  }
  static int on_method(llhttp_t* p, const char* at, size_t n) {
    State& s = of(p);
    s.req().method.append(at, n);
    return s.count(n, 400, "method too long");
  }
  static int on_header_field(llhttp_t* p, const char* at, size_t n) {
    State& s = of(p);
    auto& headers = s.req().headers;
    if (headers.empty() || s.in_value) {
      if (headers.size() == s.limits.max_headers) return s.fail(431, "too many header fields");
      headers.emplace_back();
      s.in_value = false;
    }
    std::string& name = headers.back().first;
    for (size_t i = 0; i < n; ++i) name += static_cast<char>(std::tolower(static_cast<unsigned char>(at[i])));
    return s.count(n, 431, "header fields too large");
  }
  static int on_header_value(llhttp_t* p, const char* at, size_t n) {
    State& s = of(p);
    // (An empty value is reported where the next line starts: nothing to look before.)
    if (n > 0 && folded(s, at)) return s.fail(400, "obsolete line folding in a header (RFC 9112 5.2)");
    s.in_value = true;
    s.req().headers.back().second.append(at, n);
    return s.count(n, 431, "header fields too large");
  }
  // True if the value starting at `at` continues a line folded onto it.
  static bool folded(const State& s, const char* at) {
    const char* q = at;
    while (q > s.begin && (q[-1] == ' ' || q[-1] == '\t')) --q;
    return q > s.begin ? q[-1] == '\n' : s.ended_line;
  }

  static int on_headers_complete(llhttp_t* p) {
    State& s = of(p);
    Request& r = s.req();
    r.version_major = llhttp_get_http_major(p);
    r.version_minor = llhttp_get_http_minor(p);
    if (r.version_major != 1) return s.fail(505, "HTTP version not supported");
    for (auto& [name, value] : r.headers) {  // llhttp drops the whitespace before a value, not after
      while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.pop_back();
    }
    r.keep_alive = llhttp_should_keep_alive(p) != 0;
    r.upgrade = llhttp_get_upgrade(p) != 0;
    // A declared body past the limit is refused before a byte of it is read.
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > s.limits.max_body) {
      return s.fail(413, "request body too large");
    }
    return 0;
  }
  static int on_body(llhttp_t* p, const char* at, size_t n) {
    State& s = of(p);
    if (s.req().body.size() + n > s.limits.max_body) return s.fail(413, "request body too large");
    s.req().body.append(at, n);
    return 0;
  }
  static int on_message_complete(llhttp_t* p) {
    State& s = of(p);
    s.complete = true;
    return HPE_PAUSED;  // one request at a time: the caller answers it before the next is parsed
  }

  static const llhttp_settings_t* settings() {
    static const llhttp_settings_t settings = [] {
      llhttp_settings_t st;
      llhttp_settings_init(&st);
      st.on_message_begin = on_message_begin;
      st.on_url = on_url;
      st.on_method = on_method;
      st.on_header_field = on_header_field;
      st.on_header_value = on_header_value;
      st.on_headers_complete = on_headers_complete;
      st.on_body = on_body;
      st.on_message_complete = on_message_complete;
      return st;
    }();
    return &settings;
  }
};

RequestParser::RequestParser(ParserLimits limits) : state_(std::make_unique<State>()) {
  state_->owner = this;
  state_->limits = limits;
  llhttp_init(&state_->parser, HTTP_REQUEST, State::settings());
  state_->parser.data = state_.get();
}

RequestParser::~RequestParser() = default;

ParseResult RequestParser::parse(std::string_view input) {
  State& s = *state_;
  if (s.status != 0) return {ParseStatus::kError, 0, s.status, s.reason};
  if (upgraded_) {
    // What follows an Upgrade request is another protocol's (or, when the caller declined the
    // upgrade, nothing it may send on this connection): never HTTP again, never a request twice.
    return {ParseStatus::kError, 0, 400, "no HTTP after an Upgrade request"};
  }
  s.begin = input.data();
  llhttp_errno_t err = llhttp_execute(&s.parser, input.data(), input.size());
  size_t used = input.size();
  if (err != HPE_OK) {
    const char* pos = llhttp_get_error_pos(&s.parser);
    used = pos ? static_cast<size_t>(pos - input.data()) : 0;
  }
  if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
    // Paused at the end of a request (on_message_complete). An upgrade leaves the parser there:
    // the bytes after it are the new protocol's, and this connection parses no more HTTP.
    if (request_.upgrade) {
      upgraded_ = true;  // llhttp would answer the next call with HPE_PAUSED_UPGRADE at 0 bytes
    } else if (err == HPE_PAUSED) {
      llhttp_resume(&s.parser);
    }
    s.complete = false;
    return {ParseStatus::kRequest, used, 0, {}};
  }
  if (err == HPE_OK) {
    // Whether these bytes end a line (spaces and tabs after it): a value that starts the next ones
    // would be folded onto it.
    size_t end = input.find_last_not_of(" \t");
    if (end != std::string_view::npos) s.ended_line = input[end] == '\n';
    return {ParseStatus::kNeedMore, used, 0, {}};
  }
  if (s.status == 0) {
    s.status = 400;
    s.reason = llhttp_get_error_reason(&s.parser) ? llhttp_get_error_reason(&s.parser) : "malformed request";
  }
  return {ParseStatus::kError, used, s.status, s.reason};
}

}  // namespace http
