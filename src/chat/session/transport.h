// Transport: how one connection's bytes travel (plain TCP today; TLS and WebSocket frames are
// transports too). A session talks to its transport only through this: it queues bytes, asks how
// much is queued (so one output policy serves every transport), pushes back on the peer, closes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "reactor/output_queue.h"
#include "reactor/tcp_connection.h"

namespace chat {

struct QueuedOutput {
  size_t bytes = 0;
  size_t chunks = 0;
  size_t footprint() const { return bytes + chunks * reactor::OutputQueue::kChunkOverhead; }
};

class Transport {
 public:
  virtual ~Transport() = default;

  // Takes sends: false once closing, also while a close after the flush waits for the queue to
  // leave (what is queued goes; nothing more is added, and no output limit is applied).
  virtual bool open() const = 0;
  // Queues `bytes` (by reference) for the peer; written at the end of the reactor's iteration.
  virtual reactor::SendResult send(const reactor::SharedBytes& bytes) = 0;
  // What is queued for the peer and not yet taken by the kernel: bytes, and the chunks they are in
  // (a framing transport counts its frames' bytes). The output limits measure the footprint.
  virtual QueuedOutput queued() const = 0;
  // Stop reading the peer (its TCP window then pushes back); resume offers the bytes already
  // buffered again.
  virtual void pause_reading() = 0;
  virtual void resume_reading() = 0;
  // Offers the bytes the session left unread again, soon (a codec that held back for a while).
  virtual void redeliver_input() = 0;
  // Close after the current dispatch, dropping what is queued.
  virtual void close_soon(reactor::CloseCode code, std::string_view text) = 0;
  // Close once what is queued has left (a last reply, a graceful stop).
  virtual void close_after_flush(reactor::CloseCode code, std::string_view text) = 0;
  // True if the peer has sent bytes not read yet (the server is behind, not the peer). Used
  // rarely (a frame timeout about to close a connection); false where not known.
  virtual bool input_pending() const { return false; }
  // The connection's socket (its peer's address is what per-address budgets count by); -1 if none.
  virtual int peer_fd() const { return -1; }
};

}  // namespace chat
