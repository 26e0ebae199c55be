// Fuzz target for what arrives on a room's Redis channel (anyone who can reach Redis can publish
// there). Properties checked on every input:
//   - parse_published never crashes or throws, and accepts only a positive number and a body with
//     string user and text, valid UTF-8, and a front end (if any) that valid_front allows (it
//     becomes an IRC prefix's host);
//   - what it accepts, encoded again, parses to the same message;
//   - any valid UTF-8 user and text survive encode_published_body + parse_published unchanged.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "chat/cluster/backplane.h"
#include "chat/core/names.h"
#include "chat/session/framing.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);

  chat::Published p;
  if (chat::parse_published(input, p)) {
    if (p.seq == 0 || !chat::valid_utf8(p.user) || !chat::valid_utf8(p.text)) std::abort();
    if (!p.front.empty() && !chat::valid_front(p.front)) std::abort();
    chat::Published again;
    std::string round =
        std::to_string(p.seq) + " " + chat::encode_published_body(p.user, p.text, p.ts_ms, p.node, p.n, p.id, p.front);
    if (!chat::parse_published(round, again)) std::abort();
    if (again.seq != p.seq || again.user != p.user || again.text != p.text || again.ts_ms != p.ts_ms) std::abort();
    if (!p.node.empty() && (again.node != p.node || again.n != p.n)) std::abort();  // an empty node is not sent
    if (again.id != p.id || again.front != p.front) std::abort();
  }

  // The input as a user and a text (split at the first NUL), through the encoder and back.
  size_t cut = input.find('\0');
  std::string_view user = input.substr(0, cut);
  std::string_view text = cut == std::string_view::npos ? std::string_view() : input.substr(cut + 1);
  if (chat::valid_utf8(user) && chat::valid_utf8(text)) {
    chat::Published q;
    std::string payload = "7 " + chat::encode_published_body(user, text, 1234);
    if (!chat::parse_published(payload, q)) std::abort();
    if (q.seq != 7 || q.user != user || q.text != text || q.ts_ms != 1234) std::abort();
  }
  return 0;
}
