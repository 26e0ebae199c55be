// The client side of RFC 6455 for loadgen's ws dialect, as a browser does it: the upgrade request
// with a random Sec-WebSocket-Key, the 101 answer checked (status, Upgrade, Connection and the
// Sec-WebSocket-Accept derived from our key), every frame we send masked with a fresh random key,
// and the server's frames parsed: text messages (fragmented or not), ping answered by a pong with
// the same payload, close answered by a close echoing the code. Binary frames, masked server frames
// and reserved bits are protocol errors: the server under test is wrong, and the run says so.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <string_view>

namespace loadgen::ws {

// The frame masks: a fast generator per worker process (one thread), seeded from the OS.
class Masker {
 public:
  Masker();
  uint32_t next() { return static_cast<uint32_t>(rng_()); }
  // 16 random bytes, base64: a handshake key.
  std::string key();

 private:
  std::mt19937_64 rng_;
};

// Appends one whole frame (FIN set) with `opcode`, masked with a fresh key from `masker`.
void append_frame(std::string& out, uint8_t opcode, std::string_view payload, Masker& masker);
inline void append_text(std::string& out, std::string_view payload, Masker& masker) {
  append_frame(out, 0x1, payload, masker);
}

// The Sec-WebSocket-Accept a server must answer to `key`.
std::string accept_for(std::string_view key);

// The upgrade request a browser sends to http://host:port/ws.
std::string upgrade_request(std::string_view host, int port, std::string_view key);

// What the server sent back to the upgrade request so far.
struct HandshakeResult {
  enum Status { kNeedMore, kOpen, kFailed } status = kNeedMore;
  size_t consumed = 0;  // kOpen: the bytes of the response (frames may follow in the same read)
  std::string problem;  // kFailed
};
HandshakeResult check_upgrade_response(std::string_view in, std::string_view expected_accept);

// What the frame parser found, in arrival order.
class FrameSink {
 public:
  virtual ~FrameSink() = default;
  virtual void on_text_message(std::string_view message) = 0;
  virtual void on_ping(std::string_view payload) = 0;
  // The server's close frame (code 1005 when it carried none).
  virtual void on_close(uint16_t code, std::string_view reason) = 0;
};

// One connection's incoming frames. Holds memory only while a fragmented message is open.
class FrameReader {
 public:
  struct Result {
    size_t consumed = 0;
    bool fatal = false;
    std::string problem;
  };
  // Parses the whole frames at the front of `in` (at most `max_message` bytes per message).
  Result parse(std::string_view in, FrameSink& sink, size_t max_message);

 private:
  std::unique_ptr<std::string> fragments_;  // a text message split over frames, so far
};

}  // namespace loadgen::ws
