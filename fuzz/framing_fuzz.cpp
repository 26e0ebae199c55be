// Fuzz target for the two framers. Properties checked on every input:
//   - every frame is bytes of the input, within the size limit, with the right shape;
//   - feeding the input whole or cut into arbitrary chunks gives the same frames, the same
//     overlong frames, and gives the stream up (or not) at the same frame, after the same frames
//     (incremental scanning must not depend on how reads split the stream: a connection is closed
//     for its bytes, not for the way they arrived);
//   - the framers always make progress or ask for more bytes.
// The first byte chooses the frame limit (a tiny one, the old 64 bytes, the server's default of
// 64 KiB, and 1 MiB: the limits a server runs with must be fuzzed too) and seeds the chunk sizes;
// the rest is the stream.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "chat/session/framing.h"
#include "reads.h"

namespace {

constexpr size_t kLimits[] = {16, 64, 64 * 1024, 1024 * 1024};

struct Run {
  std::vector<std::string> frames;
  int too_long = 0;
  bool lost = false;
  size_t lost_at = 0;  // stream offset where the frame given up began
};

template <typename Framer>
Run feed(const std::vector<std::string_view>& chunks, bool objects, size_t max_frame) {
  Framer framer(max_frame);
  Run run;
  std::string buffer;
  size_t consumed = 0;  // stream bytes dropped so far
  for (auto chunk : chunks) {
    buffer.append(chunk);
    for (int guard = 0; !buffer.empty() && !run.lost; ++guard) {
      if (guard > 1 << 20) std::abort();  // no progress
      auto r = framer.next(buffer);
      if (r.consumed > buffer.size()) std::abort();
      if (r.status == chat::FrameStatus::kFrame) {
        if (r.frame.size() > max_frame || r.frame.data() != buffer.data()) std::abort();
        if (objects && (r.frame.front() != '{' || (r.frame.back() != '}' && r.frame.back() != ']'))) std::abort();
        if (!objects && r.frame.find('\n') != std::string_view::npos) std::abort();
        run.frames.emplace_back(r.frame);
      } else if (r.status == chat::FrameStatus::kTooLong) {
        if (r.frame_size <= max_frame) std::abort();
        ++run.too_long;
      } else if (r.status == chat::FrameStatus::kLost) {
        // Given up only past kDiscardFactor times the limit; frame_size counts the frame's bytes
        // consumed, this call's included, so the frame began that far back.
        if (r.frame_size <= max_frame * chat::kDiscardFactor) std::abort();
        if (r.frame_size > consumed + r.consumed) std::abort();
        run.lost = true;
        run.lost_at = consumed + r.consumed - r.frame_size;
      }
      buffer.erase(0, r.consumed);
      consumed += r.consumed;
      if (r.status == chat::FrameStatus::kNeedMore && r.consumed == 0) break;
    }
  }
  return run;
}

template <typename Framer>
void check(std::string_view data, const std::vector<std::string_view>& chunks, bool objects, size_t max_frame) {
  Run whole = feed<Framer>({data}, objects, max_frame);
  Run split = feed<Framer>(chunks, objects, max_frame);
  if (whole.lost != split.lost || whole.lost_at != split.lost_at) std::abort();
  if (whole.frames != split.frames || whole.too_long != split.too_long) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  if (size < 1) return 0;
  const size_t max_frame = kLimits[bytes[0] & 3];
  // Chunks of 1 to 17 bytes, or with bit 2 set up to 4 KiB (reads of realistic sizes).
  const size_t chunk_range = bytes[0] & 4 ? 4096 : 17;
  std::string_view data(reinterpret_cast<const char*>(bytes + 1), size - 1);
  std::vector<std::string_view> chunks = fuzzing::split_into_reads(data, bytes[0], chunk_range);
  check<chat::ObjectFramer>(data, chunks, true, max_frame);
  check<chat::LineFramer>(data, chunks, false, max_frame);
  chat::valid_utf8(data);
  return 0;
}
