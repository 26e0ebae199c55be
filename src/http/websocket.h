// The parts of RFC 6455 that both ends of a WebSocket need: the handshake's accept value, the
// reading of a frame's header and the writing of a server's frame. (Frame checking beyond the header is wslay's, on the server.)
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace http {

// Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key + the RFC's GUID)).
std::string websocket_accept(std::string_view key);

// Standard base64 of `size` bytes.
std::string base64(const unsigned char* data, size_t size);

struct FrameHeader {
  bool fin = false;
  uint8_t rsv = 0;     // RSV1-3, as (RSV1 << 2) | (RSV2 << 1) | RSV3
  uint8_t opcode = 0;
  bool masked = false;
  size_t size = 0;     // bytes of the header, the masking key included
  uint64_t payload = 0;
};

// The header of the frame at the front of `in`, or nothing while it has not all arrived.
std::optional<FrameHeader> frame_header(std::string_view in);

// A whole frame as a server sends it (RFC 6455 5.2: FIN set, no RSV bits, unmasked) of `opcode`
// carrying `payload`, with the shortest length encoding (7 bits, 16 or 64).
std::string websocket_frame(uint8_t opcode, std::string_view payload);

}  // namespace http
