#include "chat/frontends/web/http_session.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cctype>

#include "chat/frontends/web/ws_session.h"
#include "http/response.h"
#include "http/websocket.h"
#include "reactor/log.h"

namespace chat {

namespace {

// True if the comma-separated header `value` holds `token` (case-insensitive), as Connection and
// Upgrade are written ("keep-alive, Upgrade").
bool has_token(const std::string* value, std::string_view token) {
  if (value == nullptr) return false;
  size_t start = 0;
  while (start <= value->size()) {
    size_t end = value->find(',', start);
    if (end == std::string::npos) end = value->size();
    std::string_view t(value->data() + start, end - start);
    while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
    while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
    if (t.size() == token.size() &&
        std::equal(t.begin(), t.end(), token.begin(), [](char a, char b) { return std::tolower(a) == std::tolower(b); })) {
      return true;
    }
    start = end + 1;
  }
  return false;
}

// Sec-WebSocket-Key must be the base64 of 16 bytes (RFC 6455 4.1): 22 characters of the base64
// alphabet, then "==". (EVP_DecodeBlock alone takes a third '=' as data.)
bool valid_websocket_key(const std::string* key) {
  if (key == nullptr || key->size() != 24 || !key->ends_with("==")) return false;
  auto base64 = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/'; };
  if (!std::all_of(key->begin(), key->begin() + 22, base64)) return false;
  unsigned char out[24];
  return EVP_DecodeBlock(out, reinterpret_cast<const unsigned char*>(key->data()), 24) == 18;
}


}  // namespace

HttpSession::HttpSession(WebContext& web, reactor::TcpConnection& conn)
    : web_(web), conn_(conn), parser_(http::ParserLimits{}) {}

void HttpSession::start() { arm_timer(); }

void HttpSession::arm_timer() {
  // From the connection's start, and again after each response: the next request must be
  // complete within the timeout, however slowly its bytes come. One timer per connection, moved
  // by its deadline: a keep-alive connection answering thousands of requests a second does not
  // leave a cancelled timer behind each of them.
  deadline_ = reactor::Clock::now() + web_.options.request_timeout;
  if (timer_) return;
  timer_ = conn_.reactor().run_at(deadline_, [weak = weak_from_this()] {
    if (auto self = weak.lock()) self->timer_fired();
  });
}

void HttpSession::timer_fired() {
  timer_ = 0;
  if (!conn_.open()) return;  // closed, or lingering (which has its own timeout)
  if (reactor::Clock::now() < deadline_) {
    timer_ = conn_.reactor().run_at(deadline_, [weak = weak_from_this()] {
      if (auto self = weak.lock()) self->timer_fired();
    });
    return;
  }
  if (done_) {
    // The last answer was given and the peer has not taken it within the timeout: a client that
    // does not read is not kept (nor its answers, nor its connection slot).
    conn_.close(reactor::CloseCode::kProtocol, "HTTP client did not read its answer in time");
    return;
  }
  done_ = true;
  ++web_.sessions.stats.http_timeouts;
  conn_.send(http::error_response(408, "the request did not arrive in time", false));
  conn_.close_after_flush(reactor::CloseCode::kProtocol, "HTTP request timed out");
  arm_timer();  // and it has the timeout again to take the 408
}

void HttpSession::on_drain(reactor::TcpConnection&) {
  if (!waiting_for_output_) return;
  waiting_for_output_ = false;
  conn_.resume_reading();  // offers the requests left in the buffer again
}

void HttpSession::on_close(reactor::TcpConnection& conn, const reactor::CloseReason&) {
  if (timer_) conn.reactor().cancel(timer_);
  timer_ = 0;
}

void HttpSession::on_message(reactor::TcpConnection&, reactor::Buffer& input) {
  auto self = shared_from_this();  // an upgrade replaces this handler while it runs
  while (!done_ && !waiting_for_metrics_ && !input.empty() && conn_.accepts_output()) {
    if (conn_.queued_footprint() > kMaxQueued) {
      // Pipelined requests whose answers the client does not read: no more requests are read
      // until those answers have left (on_drain).
      waiting_for_output_ = true;
      conn_.pause_reading();
      conn_.notify_drain();
      return;
    }
    http::ParseResult r = parser_.parse(input.view());
    if (r.status == http::ParseStatus::kError) {
      ++web_.sessions.stats.http_errors;
      done_ = true;
      respond(http::error_response(r.http_status, r.reason, false), false);
      return;
    }
    input.consume(r.consumed);
    if (r.status == http::ParseStatus::kNeedMore) return;
    if (!handle(parser_.request(), input)) return;
  }
}

void HttpSession::respond(std::string bytes, bool keep_alive, reactor::SharedBytes body) {
  conn_.send(bytes);
  if (body) conn_.send(std::move(body));  // a file's bytes, by reference
  if (!keep_alive) {
    done_ = true;
    conn_.close_after_flush(reactor::CloseCode::kLocal, "HTTP connection done");
  }
  arm_timer();
}

bool HttpSession::handle(const http::Request& req, reactor::Buffer& input) {
  Stats& stats = web_.sessions.stats;
  ++stats.http_requests;
  // While the server drains, every answer closes its connection; so does an Upgrade we do not
  // take (anything but /ws, or h2c to a file): the parser reads no HTTP after an Upgrade request.
  bool keep_alive = req.keep_alive && !web_.draining && !req.upgrade;
  std::string_view path = std::string_view(req.target).substr(0, req.target.find('?'));
  bool get = req.method == "GET", head = req.method == "HEAD";
  if (path == "/ws") {
    if (!get) {
      ++stats.http_errors;
      // A response to HEAD has no body, errors included: the client reads no body, and the next
      // response on the connection starts right after these headers.
      respond(http::error_response(405, "", keep_alive, {{"Allow", "GET"}}, head), keep_alive);
      return keep_alive;
    }
    return upgrade(req, input);
  }
  if (!get && !head) {
    ++stats.http_errors;
    respond(http::error_response(405, "", keep_alive, {{"Allow", "GET, HEAD"}}, head), keep_alive);
    return keep_alive;
  }
  if (path == "/healthz") {
    int status = web_.draining ? 503 : 200;
    respond(http::response(status, {{"Content-Type", "text/plain; charset=utf-8"}, {"Cache-Control", "no-store"}},
                           web_.draining ? "draining\n" : "ok\n", keep_alive, head),
            keep_alive);
    return keep_alive;
  }
  if (path == "/metrics" && web_.metrics) {
    answer_metrics(keep_alive, head);
    return false;
  }
  auto file = web_.files.find(req.target);
  if (!file) {
    ++stats.http_errors;
    respond(http::error_response(404, "", keep_alive, {}, head), keep_alive);
    return keep_alive;
  }
  const std::string* match = req.header("if-none-match");
  if (match && *match == file->etag) {
    respond(http::response(304, {{"ETag", file->etag}, {"Cache-Control", "no-cache"}}, "", keep_alive), keep_alive);
    return keep_alive;
  }
  respond(http::response_head(
              200, {{"Content-Type", file->content_type}, {"ETag", file->etag}, {"Cache-Control", "no-cache"}},
              file->body->size(), keep_alive),
          keep_alive, head ? nullptr : file->body);
  return keep_alive;
}

void HttpSession::answer_metrics(bool keep_alive, bool head) {
  // The figures are every reactor's: they come back later, on this reactor. Requests behind this
  // one wait in the buffer, so that answers keep their order.
  waiting_for_metrics_ = true;
  conn_.pause_reading();
  web_.metrics([weak = weak_from_this(), keep_alive, head](std::string text) {
    auto self = weak.lock();
    if (!self || self->done_ || !self->conn_.open()) return;  // gone, or timed out meanwhile
    self->waiting_for_metrics_ = false;
    self->respond(http::response(200,
                                 {{"Content-Type", "text/plain; version=0.0.4; charset=utf-8"}, {"Cache-Control", "no-store"}},
                                 text, keep_alive, head),
                  keep_alive);
    if (keep_alive) self->conn_.resume_reading();  // offers the requests left in the buffer again
  });
}

bool HttpSession::upgrade(const http::Request& req, reactor::Buffer& input) {
  Stats& stats = web_.sessions.stats;
  auto refuse = [&](int status, const char* reason, http::Headers headers = {}) {
    ++stats.http_errors;
    respond(http::error_response(status, reason, false, headers), false);
    return false;
  };
  // RFC 6455 4.1: the handshake is an HTTP/1.1 request (1.0 has no Upgrade).
  if (req.version_major != 1 || req.version_minor < 1) return refuse(400, "a WebSocket handshake needs HTTP/1.1");
  // Fields the handshake reads once must be sent once (RFC 6455 11.3.1, 11.3.5): two keys, or two
  // versions, are two answers to choose from, and a proxy may have chosen the other.
  for (const char* once : {"sec-websocket-key", "sec-websocket-version"}) {
    if (std::count_if(req.headers.begin(), req.headers.end(), [&](const auto& h) { return h.first == once; }) > 1) {
      return refuse(400, "more than one Sec-WebSocket-Key or Sec-WebSocket-Version");
    }
  }
  if (!req.upgrade || !has_token(req.header("upgrade"), "websocket")) {
    return refuse(426, "this is a WebSocket endpoint", {{"Upgrade", "websocket"}, {"Sec-WebSocket-Version", "13"}});
  }
  if (!has_token(req.header("connection"), "upgrade")) return refuse(400, "Connection: Upgrade is missing");
  const std::string* version = req.header("sec-websocket-version");
  if (version == nullptr || *version != "13") {
    return refuse(426, "WebSocket version 13 only", {{"Sec-WebSocket-Version", "13"}});
  }
  const std::string* key = req.header("sec-websocket-key");
  if (!valid_websocket_key(key)) return refuse(400, "Sec-WebSocket-Key must be the base64 of 16 bytes");
  const auto& allowed = web_.options.allowed_origins;
  if (!allowed.empty()) {
    const std::string* origin = req.header("origin");
    if (origin == nullptr || std::find(allowed.begin(), allowed.end(), *origin) == allowed.end()) {
      return refuse(403, "this Origin may not open /ws");
    }
  }
  if (web_.draining) return refuse(503, "the server is stopping");

  conn_.send(http::response(101, {{"Upgrade", "websocket"}, {"Connection", "Upgrade"},
                                  {"Sec-WebSocket-Accept", http::websocket_accept(*key)}},
                            "", false));
  ++stats.ws_upgrades;
  done_ = true;
  if (timer_) conn_.reactor().cancel(timer_);
  timer_ = 0;
  // The connection is a member from now on: its handler becomes a WebSocket session (this one is
  // released once on_message returns; on_message holds a reference until then).
  auto ws = std::make_shared<WsSession>(web_.sessions, conn_);
  conn_.set_handler(ws);
  if (web_.upgraded) web_.upgraded(conn_.id());
  ws->start();
  if (!input.empty()) ws->on_message(conn_, input);  // frames sent right behind the handshake
  return false;
}

}  // namespace chat
