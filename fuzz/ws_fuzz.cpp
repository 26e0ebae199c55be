// Fuzz target for the WebSocket input path: a WsSession (wslay's frame checks, our UTF-8, size and
// opcode rules, the native codec behind them, the hub) fed a client's bytes in arbitrary pieces,
// with a lobby member receiving what is broadcast. Nothing may crash, leak or read out of bounds
// (run under ASan/UBSan).
//
// Raw bytes rarely get past masking, so the input is usually a script of frames that this file
// masks (see frames_from): any first byte (FIN, RSV, opcode), any length, masked payloads, and
// now and then one of a few canned chat requests, so that the fuzzer reaches the codec and the
// rooms. After each input a fresh member on the same thread pings and must get its pong: the wslay
// contexts are pooled per thread, and one left mid-frame by the fuzzed member would garble it.
//
// First byte: bits 0-1 choose --max-frame (64, 256, 1024, 64 KiB); bit 2 set: the rest is raw bytes.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "chat/frontends/web/ws_session.h"
#include "chat_fuzz.h"
#include "reactor/log.h"

namespace {

constexpr size_t kFrameLimits[] = {64, 256, 1024, 64 * 1024};

const char* const kCanned[] = {
    R"({"type":"hello","user":"fuzz"})",
    R"({"type":"join","room":"r"})",
    R"({"type":"join","room":"lobby"})",
    R"({"type":"message","room":"r","text":"hi \u00e9"})",
    R"({"type":"message","room":"lobby","text":"to the lobby"})",
    R"({"type":"ping","id":1})",
    R"({"type":"leave","room":"r"})",
    R"({"type":"rooms"})",
};

using fuzzing::drain;
using fuzzing::make_peer;
using fuzzing::Peer;

// One client frame: `b0` as given (FIN, RSV bits, opcode), the payload masked with `key`.
void append_frame(std::string& out, uint8_t b0, std::string_view payload, const uint8_t key[4]) {
  out.push_back(static_cast<char>(b0));
  size_t n = payload.size();
  if (n < 126) {
    out.push_back(static_cast<char>(0x80 | n));
  } else if (n < 65536) {
    out.push_back(static_cast<char>(0x80 | 126));
    out.push_back(static_cast<char>(n >> 8));
    out.push_back(static_cast<char>(n & 0xff));
  } else {
    out.push_back(static_cast<char>(0x80 | 127));
    for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((uint64_t{n} >> (8 * i)) & 0xff));
  }
  out.append(reinterpret_cast<const char*>(key), 4);
  for (size_t i = 0; i < n; ++i) out.push_back(static_cast<char>(payload[i] ^ key[i % 4]));
}

// The fuzz input as a script of masked frames. Each step: a byte `b0`; then
//   b0 == 0xff: a canned request (text frame) chosen by the next byte;
//   b0 == 0xfe: the next up-to-8 bytes raw (a header the script cannot express: unmasked, a
//               non-minimal or huge length, a frame cut short);
//   otherwise:  a length byte L (255: two more bytes give the length), and L payload bytes from
//               the input (fewer if it runs out), masked with a key from the input.
std::string frames_from(std::string_view in) {
  std::string out;
  size_t at = 0;
  auto next = [&]() -> uint8_t { return at < in.size() ? static_cast<uint8_t>(in[at++]) : 0; };
  while (at < in.size()) {
    uint8_t b0 = next();
    if (b0 == 0xff) {
      uint8_t key[4] = {1, 2, 3, 4};
      append_frame(out, 0x81, kCanned[next() % std::size(kCanned)], key);
      continue;
    }
    if (b0 == 0xfe) {
      size_t n = std::min<size_t>(8, in.size() - at);
      out.append(in.substr(at, n));
      at += n;
      continue;
    }
    size_t len = next();
    if (len == 255) len = (size_t{next()} << 8) | next();
    uint8_t key[4] = {next(), next(), next(), next()};
    size_t n = std::min(len, in.size() - at);
    append_frame(out, b0, in.substr(at, n), key);
    at += n;
  }
  return out;
}

struct Member {
  Peer peer;
  std::shared_ptr<chat::WsSession> session;
};

Member ws_member(reactor::Reactor& loop, chat::SessionContext& shard) {
  Member m{make_peer(loop), nullptr};
  m.session = std::make_shared<chat::WsSession>(shard, *m.peer.conn);
  m.peer.conn->set_handler(m.session);
  m.session->start();
  return m;
}

// A fresh member's ping is answered with its payload: no pooled wslay context was left mid-frame.
void check_canary(reactor::Reactor& loop, chat::SessionContext& shard) {
  Member canary = ws_member(loop, shard);
  static const uint8_t key[4] = {9, 8, 7, 6};
  std::string bytes;
  append_frame(bytes, 0x89, "canary", key);
  reactor::Buffer input;
  input.append(bytes);
  canary.session->on_message(*canary.peer.conn, input);
  std::string got;
  for (int i = 0; i < 8 && got.find("\x8a\x06" "canary") == std::string::npos; ++i) {
    loop.run_once(0);
    got += drain(canary.peer.other_end.get());
  }
  if (got.find("\x8a\x06" "canary") == std::string::npos) std::abort();
  canary.peer.conn->close(reactor::CloseCode::kLocal, "done");
  loop.run_once(0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  static bool quiet = (reactor::set_log_level(reactor::LogLevel::kOff), true);
  (void)quiet;
  static reactor::Reactor loop("poll");
  if (size < 1) return 0;
  fuzzing::Shard shard(loop, kFrameLimits[bytes[0] & 3]);

  std::string_view rest(reinterpret_cast<const char*>(bytes + 1), size - 1);
  std::string data = (bytes[0] & 4) ? std::string(rest) : frames_from(rest);

  {
    Member client = ws_member(loop, shard.context);
    shard.in_pieces(data, client.peer.other_end.get(), [&](reactor::Buffer& input) {
      if (client.peer.conn->open()) client.session->on_message(*client.peer.conn, input);
    });
    client.peer.conn->close(reactor::CloseCode::kLocal, "done");
    loop.run_once(0);
  }
  check_canary(loop, shard.context);
  return 0;
}
