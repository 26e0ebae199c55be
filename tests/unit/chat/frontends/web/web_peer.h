// The web front end's sessions in one process: an HttpSession (or a WsSession) on a TcpConnection over
// a socketpair, on a shard whose reactor runs on the test's thread; the test is the peer on the other
// end, writing requests and frames and reading what comes back. No server process, no port.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "../../../test_util.h"
#include "../../chat_test_util.h"
#include "chat/frontends/web/http_session.h"
#include "http/static_files.h"
#include "reactor/tcp_connection.h"

namespace webtest {

// A WebSocket frame as the peer reads it (server frames are never masked).
struct Frame {
  bool fin = false;
  uint8_t opcode = 0;
  std::string payload;
  // A close frame's status code (0 if it has none).
  uint16_t close_code() const {
    return payload.size() >= 2 ? static_cast<uint16_t>((uint8_t(payload[0]) << 8) | uint8_t(payload[1])) : 0;
  }
};

// A client frame: FIN set, masked with a fixed key (RFC 6455 5.3: every client frame is masked).
inline std::string client_frame(uint8_t opcode, std::string_view payload, bool fin = true) {
  std::string f;
  f.push_back(static_cast<char>((fin ? 0x80 : 0) | opcode));
  if (payload.size() < 126) {
    f.push_back(static_cast<char>(0x80 | payload.size()));
  } else {
    f.push_back(static_cast<char>(0x80 | 126));
    f.push_back(static_cast<char>(payload.size() >> 8));
    f.push_back(static_cast<char>(payload.size() & 0xff));
  }
  const char key[4] = {0x11, 0x22, 0x33, 0x44};
  f.append(key, 4);
  for (size_t i = 0; i < payload.size(); ++i) f.push_back(static_cast<char>(payload[i] ^ key[i % 4]));
  return f;
}

// A close frame's payload: the code, then the reason.
inline std::string close_payload(uint16_t code, std::string_view reason = "") {
  std::string p{static_cast<char>(code >> 8), static_cast<char>(code & 0xff)};
  p.append(reason);
  return p;
}

// The frame at the front of `in` (consumed), or nothing while it has not all arrived.
inline std::optional<Frame> take_frame(std::string& in) {
  if (in.size() < 2) return std::nullopt;
  auto byte = [&](size_t i) { return static_cast<uint8_t>(in[i]); };
  EXPECT_EQ(byte(1) & 0x80, 0) << "a server frame is never masked";
  uint64_t length = byte(1) & 0x7f;
  size_t header = 2;
  if (length == 126) {
    if (in.size() < 4) return std::nullopt;
    length = (uint64_t(byte(2)) << 8) | byte(3);
    header = 4;
  } else if (length == 127) {
    if (in.size() < 10) return std::nullopt;
    length = 0;
    for (size_t i = 2; i < 10; ++i) length = (length << 8) | byte(i);
    header = 10;
  }
  if (in.size() < header + length) return std::nullopt;
  Frame f{(byte(0) & 0x80) != 0, static_cast<uint8_t>(byte(0) & 0x0f), in.substr(header, length)};
  in.erase(0, header + length);
  return f;
}

// One shard serving the web front end: the files compiled in, the default options.
struct WebShard : chattest::OneShard {
  http::StaticFiles files = http::StaticFiles::embedded();
  chat::WebOptions options;
  bool draining = false;
  std::vector<uint64_t> upgraded;  // connections that became WebSocket members
  chat::WebContext web{shard, files, options, draining, [this](uint64_t id) { upgraded.push_back(id); }, {}};
};

// The test's end of one connection to an HttpSession of `shard`.
class Peer {
 public:
  explicit Peer(WebShard& shard) : shard_(shard) {
    auto [ours, theirs] = testutil::make_socketpair();
    fd_ = std::move(theirs);
    conn_ = reactor::TcpConnection::create(shard.loop, std::move(ours), std::make_shared<reactor::ConnectionCallbacks>());
    auto session = std::make_shared<chat::HttpSession>(shard.web, *conn_);
    conn_->set_handler(session);
    session->start();
    conn_->start();
  }
  ~Peer() {
    // Also a connection lingering after its close: its session goes now, while the shard exists.
    conn_->close(reactor::CloseCode::kLocal, "test over");
    shard_.loop.run_once(0);  // its on_close (the session is released there)
  }

  void send(std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = ::write(fd_.get(), bytes.data(), bytes.size());
      ASSERT_GT(n, 0) << "write: " << errno;
      bytes.remove_prefix(static_cast<size_t>(n));
    }
  }

  // Runs the shard's loop, reading what the session sends, until `done` or the end of the stream
  // (or 5 s); false if neither came.
  bool run_until(const std::function<bool()>& done) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!done()) {
      if (eof_) return false;
      if (std::chrono::steady_clock::now() > deadline) return false;
      shard_.loop.run_once(10);
      read_available();
    }
    return true;
  }
  // The next whole HTTP response (head and Content-Length body), consumed from what was read.
  std::optional<std::string> response() {
    std::optional<std::string> out;
    run_until([&] {
      size_t end = received.find("\r\n\r\n");
      if (end == std::string::npos) return false;
      size_t length = 0;
      std::string head = received.substr(0, end);
      for (const char* name : {"\r\nContent-Length: ", "\r\ncontent-length: "}) {
        size_t at = head.find(name);
        if (at != std::string::npos) length = std::stoul(head.substr(at + std::string_view(name).size()));
      }
      bool bodiless = head.starts_with("HTTP/1.1 101") || head.starts_with("HTTP/1.1 304");
      if (bodiless) length = 0;
      if (received.size() < end + 4 + length) return false;
      out = received.substr(0, end + 4 + length);
      received.erase(0, end + 4 + length);
      return true;
    });
    return out;
  }
  // The next WebSocket frame from the session.
  std::optional<Frame> frame() {
    std::optional<Frame> out;
    run_until([&] { return (out = take_frame(received)).has_value(); });
    return out;
  }
  // True once the session has closed the connection (the peer reads the end of the stream).
  bool closed() {
    run_until([] { return false; });
    return eof_;
  }

  reactor::TcpConnection& conn() { return *conn_; }
  std::string received;  // read and not yet taken

 private:
  void read_available() {
    char buf[65536];
    for (;;) {
      ssize_t n = ::read(fd_.get(), buf, sizeof buf);
      if (n > 0) {
        received.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) eof_ = true;
      return;
    }
  }

  WebShard& shard_;
  reactor::Handle fd_;
  reactor::TcpConnectionPtr conn_;
  bool eof_ = false;
};

// RFC 6455 1.3's example key and its accept value.
inline constexpr std::string_view kKey = "dGhlIHNhbXBsZSBub25jZQ==";
inline constexpr std::string_view kAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

inline std::string upgrade_request(std::string_view key = kKey) {
  return "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " +
         std::string(key) + "\r\n\r\n";
}

}  // namespace webtest
