// Fuzz target for --auth-secret's tokens (chat/ops/auth.h). Properties checked on every input:
//   - verify never crashes or throws on any input as a token (also past TokenAuthority::kMaxToken),
//     and accepts only with a non-empty user;
//   - only what the secret signed verifies: a token minted here, with the input written over it at
//     a place the input's first bytes choose, verifies only if it is unchanged (strict base64url:
//     every token has one spelling, so any other bytes are another signing input or signature);
//   - a token minted for any UTF-8 user (the input) verifies to that user, and to nobody once
//     expired;
//   - base64url and base64 decode whatever they accept back to the same encoding.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "chat/ops/auth.h"
#include "chat/session/framing.h"

namespace {

const chat::TokenAuthority& authority() {
  static const chat::TokenAuthority a("fuzzing-secret-fuzzing-secret-fuzzing-secret");
  return a;
}

constexpr int64_t kNow = 1'700'000'000;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  const chat::TokenAuthority& a = authority();

  // The input as a token.
  chat::TokenAuthority::Verdict v = a.verify(input, kNow);
  if (v.ok() && v.user.empty()) std::abort();

  // The input written over a good token.
  std::string good = a.mint("bob", 3600, kNow);
  if (size >= 2) {
    size_t at = (static_cast<size_t>(data[0]) << 8 | data[1]) % (good.size() + 1);
    std::string_view patch = input.substr(2);
    std::string t = good.substr(0, at);
    t.append(patch);
    if (at + patch.size() < good.size()) t.append(good.substr(at + patch.size()));
    chat::TokenAuthority::Verdict w = a.verify(t, kNow);
    if (w.ok() != (t == good)) std::abort();
    if (w.ok() && w.user != "bob") std::abort();
  }

  // The input as a user.
  if (!input.empty() && chat::valid_utf8(input)) {
    std::string token = a.mint(input, 60, kNow);
    chat::TokenAuthority::Verdict u = a.verify(token, kNow);
    if (token.size() <= chat::TokenAuthority::kMaxToken && (!u.ok() || u.user != input)) std::abort();
    if (a.verify(token, kNow + 60 + chat::TokenAuthority::kLeeway).ok()) std::abort();
  }

  // Decoders: one spelling per byte string.
  std::string bytes;
  if (chat::base64url_decode(input, bytes) && chat::base64url_encode(bytes) != input) std::abort();
  if (chat::base64_decode(input, bytes) && chat::base64_encode(bytes) != input) std::abort();
  return 0;
}
