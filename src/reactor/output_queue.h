// OutputQueue: what a connection still has to write. A queue of chunks, each either bytes the
// connection owns (small sends are coalesced into the last owned chunk) or a reference to an
// immutable shared buffer (a broadcast message: one copy for every recipient). write_to() sends as
// much as the kernel takes in one sendmsg over an iovec of the chunks.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace reactor {

using SharedBytes = std::shared_ptr<const std::string>;

class OutputQueue {
 public:
  size_t bytes() const { return bytes_; }
  // Memory this queue accounts for: the bytes plus the bookkeeping of each chunk. A queue of many
  // tiny shared messages costs more than its bytes; limits are checked against this.
  size_t footprint() const { return bytes_ + chunks() * kChunkOverhead; }
  static constexpr size_t kChunkOverhead = 32;  // at least sizeof(Chunk), checked below
  bool empty() const { return bytes_ == 0; }
  size_t chunks() const { return chunks_.size() - head_; }

  void append(std::string_view bytes);
  void append(SharedBytes bytes);
  void clear();

  // One sendmsg(MSG_NOSIGNAL) of up to IOV_MAX chunks. Returns bytes written, or -1 with errno
  // (EAGAIN when the kernel takes nothing, EPIPE/ECONNRESET when the peer is gone).
  // `*attempted` is set to the bytes offered: less written than offered means the kernel is full.
  ssize_t write_to(int fd, size_t* attempted = nullptr);
  // Copies up to `max` bytes from the front into `dst` and drops them from the queue (a filter
  // encoding the queue, as TLS records: reactor/tls.h). Returns how many.
  size_t take(char* dst, size_t max);

 private:
  struct Chunk {
    std::shared_ptr<const std::string> data;
    std::string* owned;  // non-null when this queue may append to data
    size_t offset;
  };
  static_assert(sizeof(Chunk) <= kChunkOverhead);
  void consume(size_t n);

  std::vector<Chunk> chunks_;
  size_t head_ = 0;  // first live chunk
  size_t bytes_ = 0;
};

}  // namespace reactor
