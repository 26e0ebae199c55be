#include "http/websocket.h"

#include <openssl/evp.h>

namespace http {

std::string base64(const unsigned char* data, size_t size) {
  std::string out(4 * ((size + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(size));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::string websocket_accept(std::string_view key) {
  std::string in(key);
  in += "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(in.data(), in.size(), md, &n, EVP_sha1(), nullptr);
  return base64(md, n);
}

std::optional<FrameHeader> frame_header(std::string_view in) {
  if (in.size() < 2) return std::nullopt;
  auto byte = [&](size_t i) { return static_cast<uint8_t>(in[i]); };
  FrameHeader h;
  h.fin = (byte(0) & 0x80) != 0;
  h.rsv = (byte(0) >> 4) & 0x7;
  h.opcode = byte(0) & 0x0f;
  h.masked = (byte(1) & 0x80) != 0;
  uint8_t len7 = byte(1) & 0x7f;
  h.size = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (h.masked ? 4 : 0);
  if (in.size() < h.size) return std::nullopt;
  h.payload = len7;
  if (len7 == 126) h.payload = (uint64_t{byte(2)} << 8) | byte(3);
  if (len7 == 127) {
    h.payload = 0;
    for (size_t i = 0; i < 8; ++i) h.payload = (h.payload << 8) | byte(2 + i);
  }
  return h;
}

std::string websocket_frame(uint8_t opcode, std::string_view payload) {
  std::string f;
  f.reserve(payload.size() + 10);
  f += static_cast<char>(0x80 | opcode);
  size_t n = payload.size();
  if (n < 126) {
    f += static_cast<char>(n);
  } else if (n <= 0xffff) {
    f += static_cast<char>(126);
    f += static_cast<char>(n >> 8);
    f += static_cast<char>(n & 0xff);
  } else {
    f += static_cast<char>(127);
    for (int shift = 56; shift >= 0; shift -= 8) f += static_cast<char>((static_cast<uint64_t>(n) >> shift) & 0xff);
  }
  f.append(payload);
  return f;
}

}  // namespace http
