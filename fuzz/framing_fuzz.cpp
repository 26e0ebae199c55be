// Fuzz target for the two framers. Properties checked on every input:
//   - every frame is bytes of the input, within the size limit, with the right shape;
//   - feeding the input whole or cut into arbitrary chunks gives the same frames (incremental
//     scanning must not depend on how reads split the stream);
//   - the framers always make progress or ask for more bytes.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "chat/framing.h"

namespace {

constexpr size_t kMax = 64;

struct Run {
  std::vector<std::string> frames;
  int too_long = 0;
  bool lost = false;
};

template <typename Framer>
Run feed(const std::vector<std::string_view>& chunks, bool objects) {
  Framer framer(kMax);
  Run run;
  std::string buffer;
  for (auto chunk : chunks) {
    buffer.append(chunk);
    for (int guard = 0; !buffer.empty() && !run.lost; ++guard) {
      if (guard > 1 << 20) std::abort();  // no progress
      auto r = framer.next(buffer);
      if (r.consumed > buffer.size()) std::abort();
      if (r.status == chat::FrameStatus::kFrame) {
        if (r.frame.size() > kMax || r.frame.data() != buffer.data()) std::abort();
        if (objects && (r.frame.front() != '{' || (r.frame.back() != '}' && r.frame.back() != ']'))) std::abort();
        if (!objects && r.frame.find('\n') != std::string_view::npos) std::abort();
        run.frames.emplace_back(r.frame);
      } else if (r.status == chat::FrameStatus::kTooLong) {
        ++run.too_long;
      } else if (r.status == chat::FrameStatus::kLost) {
        run.lost = true;
      }
      buffer.erase(0, r.consumed);
      if (r.status == chat::FrameStatus::kNeedMore && r.consumed == 0) break;
    }
  }
  return run;
}

template <typename Framer>
void check(std::string_view data, const std::vector<std::string_view>& chunks, bool objects) {
  Run whole = feed<Framer>({data}, objects);
  Run split = feed<Framer>(chunks, objects);
  if (whole.lost || split.lost) return;  // where the stream is given up may differ by a chunk
  if (whole.frames != split.frames || whole.too_long != split.too_long) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  if (size < 1) return 0;
  // The first byte seeds the chunk sizes; the rest is the stream.
  unsigned seed = bytes[0];
  std::string_view data(reinterpret_cast<const char*>(bytes + 1), size - 1);
  std::vector<std::string_view> chunks;
  for (size_t off = 0; off < data.size();) {
    seed = seed * 1103515245u + 12345u;
    size_t n = 1 + (seed >> 16) % 17;
    chunks.push_back(data.substr(off, n));
    off += n;
  }
  check<chat::ObjectFramer>(data, chunks, true);
  check<chat::LineFramer>(data, chunks, false);
  chat::valid_utf8(data);
  return 0;
}
