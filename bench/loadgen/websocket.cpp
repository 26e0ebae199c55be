#include "loadgen/websocket.h"

#include "http/websocket.h"

#include <algorithm>
#include <cctype>
#include <cstring>

namespace loadgen::ws {

namespace {

constexpr size_t kMaxResponseHead = 8192;

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// True if the comma-separated `value` holds `token` (case-insensitive), as in "keep-alive, Upgrade".
bool has_token(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    size_t comma = value.find(',');
    if (iequals(trim(value.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace

Masker::Masker() : rng_(std::random_device{}()) {}

std::string Masker::key() {
  unsigned char raw[16];
  for (size_t i = 0; i < sizeof raw; i += 8) {
    uint64_t v = rng_();
    std::memcpy(raw + i, &v, 8);
  }
  return http::base64(raw, sizeof raw);
}

void append_frame(std::string& out, uint8_t opcode, std::string_view payload, Masker& masker) {
  const size_t n = payload.size();
  out.push_back(static_cast<char>(0x80 | opcode));
  if (n < 126) {
    out.push_back(static_cast<char>(0x80 | n));
  } else if (n <= 0xffff) {
    out.push_back(static_cast<char>(0x80 | 126));
    out.push_back(static_cast<char>(n >> 8));
    out.push_back(static_cast<char>(n & 0xff));
  } else {
    out.push_back(static_cast<char>(0x80 | 127));
    for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>((uint64_t{n} >> shift) & 0xff));
  }
  uint32_t m = masker.next();
  unsigned char mask[4];
  std::memcpy(mask, &m, 4);
  out.append(reinterpret_cast<const char*>(mask), 4);
  size_t at = out.size();
  out.append(payload);
  char* p = out.data() + at;
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<char>(p[i] ^ mask[i & 3]);
}

std::string accept_for(std::string_view key) { return http::websocket_accept(key); }

std::string upgrade_request(std::string_view host, int port, std::string_view key) {
  std::string r = "GET /ws HTTP/1.1\r\nHost: ";
  r += host;
  r += ':';
  r += std::to_string(port);
  r += "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ";
  r += key;
  r += "\r\nSec-WebSocket-Version: 13\r\nOrigin: http://";
  r += host;
  r += ':';
  r += std::to_string(port);
  r += "\r\nUser-Agent: loadgen\r\n\r\n";
  return r;
}

HandshakeResult check_upgrade_response(std::string_view in, std::string_view expected_accept) {
  HandshakeResult r;
  const size_t head = std::min<size_t>(in.size(), 5);
  if (in.substr(0, head) != std::string_view("HTTP/").substr(0, head)) {
    r.status = HandshakeResult::kFailed;  // not an HTTP server: say so now, not at the timeout
    std::string first(in.substr(0, std::min<size_t>(in.find('\n'), 60)));
    r.problem = "WebSocket handshake: the answer is not HTTP: " + first;
    return r;
  }
  size_t end = in.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    if (in.size() > kMaxResponseHead) {
      r.status = HandshakeResult::kFailed;
      r.problem = "WebSocket handshake: no end of the response's headers within 8 KiB";
    }
    return r;
  }
  r.status = HandshakeResult::kFailed;
  std::string_view lines = in.substr(0, end);
  size_t eol = lines.find("\r\n");
  std::string_view status_line = lines.substr(0, eol);
  if (status_line.substr(0, 13) != "HTTP/1.1 101 ") {
    r.problem = "WebSocket handshake refused: " + std::string(status_line.substr(0, 80));
    return r;
  }
  bool upgrade = false, connection = false, accept = false;
  std::string_view rest = eol == std::string_view::npos ? std::string_view{} : lines.substr(eol + 2);
  while (!rest.empty()) {
    size_t next = rest.find("\r\n");
    std::string_view line = rest.substr(0, next);
    rest = next == std::string_view::npos ? std::string_view{} : rest.substr(next + 2);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view name = trim(line.substr(0, colon)), value = trim(line.substr(colon + 1));
    if (iequals(name, "upgrade")) upgrade = iequals(value, "websocket");
    if (iequals(name, "connection")) connection = has_token(value, "upgrade");
    if (iequals(name, "sec-websocket-accept")) accept = value == expected_accept;
  }
  if (!upgrade || !connection) {
    r.problem = "WebSocket handshake: the 101 lacks Upgrade: websocket or Connection: Upgrade";
  } else if (!accept) {
    r.problem = "WebSocket handshake: Sec-WebSocket-Accept missing or not derived from our key";
  } else {
    r.status = HandshakeResult::kOpen;
    r.consumed = end + 4;
  }
  return r;
}

FrameReader::Result FrameReader::parse(std::string_view in, FrameSink& sink, size_t max_message) {
  Result r;
  auto fail = [&](std::string problem) {
    r.fatal = true;
    r.problem = "WebSocket: " + std::move(problem);
    return r;
  };
  size_t at = 0;
  while (in.size() - at >= 2) {
    // RSV bits and masking are refused from the first two bytes, before the length has arrived.
    if ((static_cast<uint8_t>(in[at]) & 0x70) != 0) return fail("reserved bits set without an extension");
    if ((static_cast<uint8_t>(in[at + 1]) & 0x80) != 0) return fail("a masked frame from the server");
    auto h = http::frame_header(in.substr(at));
    if (!h) break;
    const bool fin = h->fin;
    const uint8_t opcode = h->opcode;
    const size_t header = h->size;
    const uint64_t length = h->payload;
    if (opcode >= 0x8 && (!fin || length > 125)) return fail("a fragmented or oversized control frame");
    if (length > max_message) return fail("a frame over " + std::to_string(max_message) + " bytes");
    if (in.size() - at - header < length) break;
    std::string_view payload = in.substr(at + header, static_cast<size_t>(length));
    at += header + static_cast<size_t>(length);
    r.consumed = at;
    switch (opcode) {
      case 0x1:  // text
        if (fragments_) return fail("a new message inside a fragmented one");
        if (fin) {
          sink.on_text_message(payload);
        } else {
          fragments_ = std::make_unique<std::string>(payload);
        }
        break;
      case 0x0:  // continuation
        if (!fragments_) return fail("a continuation frame outside a message");
        if (fragments_->size() + payload.size() > max_message) return fail("a message over the limit");
        fragments_->append(payload);
        if (fin) {
          auto whole = std::move(fragments_);
          sink.on_text_message(*whole);
        }
        break;
      case 0x2: return fail("a binary frame (this protocol is JSON text)");
      case 0x8: {
        uint16_t code = 1005;
        std::string_view reason;
        if (payload.size() >= 2) {
          code = static_cast<uint16_t>((static_cast<uint8_t>(payload[0]) << 8) | static_cast<uint8_t>(payload[1]));
          reason = payload.substr(2);
        }
        sink.on_close(code, reason);
        return r;  // nothing may follow a close
      }
      case 0x9: sink.on_ping(payload); break;
      case 0xA: break;  // an unsolicited pong: nothing to do
      default: return fail("reserved opcode " + std::to_string(opcode));
    }
  }
  return r;
}

}  // namespace loadgen::ws
