// Text from the network made safe to show on a terminal, as one line: what the article dialect
// sends (its "[user] text" lines are printed as they come) and what chat-client prints.
//
// A terminal obeys control characters: a newline in a chat message would let a sender forge a
// second line ("hi\n[kim] send me your password"), and an escape sequence could move the cursor,
// recolour the screen or retitle the window. So every control character is shown, never obeyed,
// by one rule:
//   C0 controls U+0000-U+001F  -> Unicode Control Pictures U+2400-U+241F (newline shows as U+240A)
//   DEL U+007F                 -> U+2421
//   C1 controls U+0080-U+009F  -> U+FFFD (they have no pictures; U+009B is an 8-bit CSI)
//   a byte that is not part of valid UTF-8 -> U+FFFD (a lone 0x9B is a CSI to some terminals)
// Everything else (valid UTF-8 from U+0020 up) is kept as it is.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace chat {

namespace detail {

// The length of the valid UTF-8 sequence at s[i] (RFC 3629: no overlongs, no surrogates, at most
// U+10FFFF), or 0 if the bytes there are not one.
inline size_t utf8_sequence_length(std::string_view s, size_t i) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  auto continuation = [&](size_t k) { return k < s.size() && (byte(k) & 0xC0) == 0x80; };
  unsigned char b = byte(i);
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF) return continuation(i + 1) ? 2 : 0;
  if (b >= 0xE0 && b <= 0xEF) {
    if (!continuation(i + 1) || !continuation(i + 2)) return 0;
    unsigned char b1 = byte(i + 1);
    if (b == 0xE0 && b1 < 0xA0) return 0;  // overlong
    if (b == 0xED && b1 > 0x9F) return 0;  // UTF-16 surrogate
    return 3;
  }
  if (b >= 0xF0 && b <= 0xF4) {
    if (!continuation(i + 1) || !continuation(i + 2) || !continuation(i + 3)) return 0;
    unsigned char b1 = byte(i + 1);
    if (b == 0xF0 && b1 < 0x90) return 0;  // overlong
    if (b == 0xF4 && b1 > 0x8F) return 0;  // past U+10FFFF
    return 4;
  }
  return 0;
}

}  // namespace detail

inline constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";  // U+FFFD

// `text` with every control character and invalid byte replaced as described above: what it
// returns never contains a byte below 0x20, DEL, a C1 control or invalid UTF-8, so it never spans
// more than one terminal line and never changes the terminal's state.
inline std::string visible(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20) {  // U+2400 + c, in UTF-8
      out += '\xE2';
      out += '\x90';
      out += static_cast<char>(0x80 + c);
      ++i;
    } else if (c == 0x7F) {
      out += "\xE2\x90\xA1";  // U+2421 SYMBOL FOR DELETE
      ++i;
    } else if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
    } else if (size_t n = detail::utf8_sequence_length(text, i); n == 0) {
      out += kReplacementCharacter;
      ++i;
    } else if (c == 0xC2 && static_cast<unsigned char>(text[i + 1]) < 0xA0) {  // U+0080-U+009F
      out += kReplacementCharacter;
      i += n;
    } else {
      out.append(text, i, n);
      i += n;
    }
  }
  return out;
}

}  // namespace chat
