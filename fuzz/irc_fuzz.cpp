// Fuzz target for IRC messages and their line framer. Properties checked on every input:
//   - feeding the stream whole or cut into arbitrary reads gives the same lines and the same
//     overlong-line reports (how reads split a stream must not change what it says), every line
//     is within the limits and holds no LF, and the caller never has to keep more than one line's
//     limits of unconsumed bytes;
//   - every line that parses serializes to a CRLF-terminated line that parses back to the same
//     message, and serializes again to the same bytes (round trip);
//   - utf8_or_latin1 of every line is valid UTF-8 (checked by chat's validator, not irc's own), and
//     leaves valid UTF-8 as it is.
// The first byte chooses whether message-tags is negotiated (the tag limit) and seeds the read
// sizes; the rest is the stream.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "chat/session/framing.h"
#include "irc/message.h"
#include "reads.h"

namespace {

struct Run {
  std::vector<std::string> lines;
  std::vector<size_t> too_long_at;  // index in `lines` at which each overlong line was reported
};

Run feed(const std::vector<std::string_view>& chunks, size_t max_tags) {
  Run run;
  irc::LineState state;
  std::string buffer;
  const size_t hold_limit = irc::kMaxBody + max_tags;
  for (auto chunk : chunks) {
    buffer.append(chunk);
    for (int guard = 0;; ++guard) {
      if (guard > 1 << 20) std::abort();  // no progress
      auto r = irc::next_line(buffer, irc::kMaxBody, max_tags, state);
      if (r.consumed > buffer.size()) std::abort();
      if (r.status == irc::LineResult::kLine) {
        if (r.line.find('\n') != std::string_view::npos) std::abort();
        if (r.line.size() + 2 > hold_limit) std::abort();
        if (r.line.data() < buffer.data() || r.line.data() + r.line.size() > buffer.data() + r.consumed) std::abort();
        run.lines.emplace_back(r.line);
      } else if (r.status == irc::LineResult::kTooLong) {
        run.too_long_at.push_back(run.lines.size());
      }
      buffer.erase(0, r.consumed);
      if (r.status == irc::LineResult::kNeedMore || buffer.empty()) break;
    }
    if (buffer.size() > hold_limit) std::abort();  // unbounded buffering
  }
  return run;
}

void check_round_trip(std::string_view line) {
  irc::Message message;
  if (irc::parse(line, message) != irc::ParseError::kNone) return;
  std::string wire = irc::serialize(message);
  if (wire.size() < 2 || wire.substr(wire.size() - 2) != "\r\n") std::abort();
  std::string_view body(wire.data(), wire.size() - 2);
  if (body.find_first_of(std::string_view("\0\r\n", 3)) != std::string_view::npos) std::abort();
  irc::Message again;
  if (irc::parse(body, again) != irc::ParseError::kNone) std::abort();
  if (!(again == message)) std::abort();
  if (irc::serialize(again) != wire) std::abort();
}

void check_text(std::string_view text) {
  std::string out = irc::utf8_or_latin1(text);
  if (!chat::valid_utf8(out)) std::abort();
  if (irc::valid_utf8(text) != chat::valid_utf8(text)) std::abort();
  if (chat::valid_utf8(text) && out != text) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  if (size < 1) return 0;
  const size_t max_tags = bytes[0] & 1 ? irc::kMaxClientTags : 0;
  // Reads of 1 to 17 bytes, or with bit 1 set up to 4 KiB.
  const size_t chunk_range = bytes[0] & 2 ? 4096 : 17;
  std::string_view data(reinterpret_cast<const char*>(bytes + 1), size - 1);
  std::vector<std::string_view> chunks = fuzzing::split_into_reads(data, bytes[0], chunk_range);
  Run whole = feed({data}, max_tags);
  Run split = feed(chunks, max_tags);
  if (whole.lines != split.lines || whole.too_long_at != split.too_long_at) std::abort();
  for (const auto& line : whole.lines) check_round_trip(line);
  // Lines are at most 512 bytes; the whole input also exercises the parser with LFs and lengths
  // the framer would not give it.
  check_round_trip(data);
  check_text(data);
  return 0;
}
