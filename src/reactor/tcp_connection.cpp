#include "reactor/tcp_connection.h"

#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <utility>

#include "reactor/error.h"
#include "reactor/log.h"

namespace reactor {
namespace {
std::atomic<uint64_t> g_next_connection_id{0};
}

const char* to_string(CloseCode code) {
  switch (code) {
    case CloseCode::kPeerClosed: return "peer closed";
    case CloseCode::kPeerReset: return "peer reset";
    case CloseCode::kIoError: return "I/O error";
    case CloseCode::kOutputLimit: return "output limit";
    case CloseCode::kSlowConsumer: return "slow consumer";
    case CloseCode::kProtocol: return "protocol error";
    case CloseCode::kRefused: return "refused";
    case CloseCode::kShutdown: return "shutdown";
    case CloseCode::kRestart: return "restart";
    case CloseCode::kTimeout: return "timeout";
    case CloseCode::kLocal: return "closed locally";
  }
  return "?";
}

namespace {
CloseCode code_of_errno(int err) {
  return err == ECONNRESET || err == EPIPE ? CloseCode::kPeerReset : CloseCode::kIoError;
}
}  // namespace

TcpConnectionPtr TcpConnection::create(Reactor& reactor, Handle socket,
                                       std::shared_ptr<const ConnectionCallbacks> callbacks,
                                       ConnectionOptions options) {
  return std::make_shared<TcpConnection>(reactor, std::move(socket), std::move(callbacks), options);
}

TcpConnection::TcpConnection(Reactor& reactor, Handle socket,
                             std::shared_ptr<const ConnectionCallbacks> callbacks,
                             ConnectionOptions options)
    : reactor_(reactor),
      socket_(std::move(socket)),
      callbacks_(std::move(callbacks)),
      options_(options),
      id_(++g_next_connection_id) {}

void TcpConnection::start() {
  // The registration owns a reference: the connection lives while the reactor watches it.
  reactor_.add(socket_.get(), Interest::kRead,
               [self = shared_from_this()](Events events) { self->handle_events(events); });
  open_ = true;
  if (options_.filter) {
    filtered_ = std::make_unique<Filtered>(Filtered{options_.filter->make(), {}});
    handshake_ = Handshake::kPending;
    filtered_->filter->begin(filtered_->wire);
    if (!filtered_->wire.empty()) queue_flush();
    // Not cancelled: it finds the handshake over, or the connection gone (as linger's timer does).
    reactor_.run_after(options_.handshake_timeout, [weak = weak_from_this(), ms = options_.handshake_timeout.count()] {
      auto self = weak.lock();
      if (!self || !self->open_ || self->handshake_ != Handshake::kPending) return;
      self->handshake_ = Handshake::kTimedOut;
      self->close(CloseCode::kTimeout, "handshake not over within " + std::to_string(ms) + " ms");
    });
  }
}

void TcpConnection::handle_events(Events events) {
  if (lingering_) return linger_read();
  if ((events & kReadable) && open()) handle_read();
  if ((events & kWritable) && open()) flush_output();
}

void TcpConnection::handle_read() {
  if (filtered_) return handle_filtered_read();
  ssize_t n;
  char spill[Buffer::kSpill];
  if (input_.empty()) {
    // Nothing pending: one plain read onto the stack, and the handler sees it in place. Only bytes
    // it leaves (a partial frame) are copied into the connection's buffer.
    n = ::read(socket_.get(), spill, sizeof spill);
    if (n > 0) input_.borrow(spill, static_cast<size_t>(n));
  } else {
    n = input_.read_from(socket_.get());
  }
  ++stats_.reads;
  if (n > 0) {
    stats_.bytes_in += static_cast<uint64_t>(n);
    bool first = stats_.bytes_in == static_cast<uint64_t>(n);
    if (first && options_.refuse_tls && opens_with_tls(input_.data(), input_.size())) return;
    deliver_input();
    input_.keep();
  } else {
    read_ended(n);
  }
}

// A TLS handshake record (content type 22, version 3.x) as the first bytes of a plain connection:
// the client meant a TLS port. Nothing it sent can be answered here.
bool TcpConnection::opens_with_tls(const char* bytes, size_t n) {
  if (n < 2 || bytes[0] != 0x16 || bytes[1] != 0x03) return false;
  handshake_ = Handshake::kWrongProtocol;
  input_.clear();
  close_after_flush(CloseCode::kProtocol, "a TLS handshake on a plain port");
  return true;
}

void TcpConnection::handle_filtered_read() {
  char spill[Buffer::kSpill];
  ssize_t n = ::read(socket_.get(), spill, sizeof spill);
  ++stats_.reads;
  if (n <= 0) return read_ended(n);
  stats_.bytes_in += static_cast<uint64_t>(n);
  Filtered& f = *filtered_;
  bool was_ready = f.filter->ready();
  Filter::Status status = f.filter->receive(spill, static_cast<size_t>(n), input_, f.wire);
  if (!was_ready && f.filter->ready()) handshake_ = Handshake::kDone;
  if (can_write()) queue_flush();  // handshake messages, or output that waited for it
  if (!f.filter->ready() && status != Filter::Status::kOk) {
    // A failed handshake: its alert (if any) goes, then a lingering close.
    handshake_ = status == Filter::Status::kWrongProtocol ? Handshake::kWrongProtocol : Handshake::kFailed;
    return close_after_flush(CloseCode::kProtocol, f.filter->error());
  }
  if (status == Filter::Status::kError) return close_soon(CloseCode::kProtocol, f.filter->error());
  if (!input_.empty()) deliver_input();
  if (status == Filter::Status::kClosed && open()) read_ended(0);
}

// A read gave 0 (the end of the stream) or failed.
void TcpConnection::read_ended(ssize_t n) {
  if (n == 0) {
    // End of stream: the peer will send no more. It still gets what is queued for it.
    peer_eof_ = true;
    update_interest();
    if (handler_) {
      handler_closes_ = handler_->on_peer_closed(*this);
    } else if (callbacks_->on_peer_closed) {
      handler_closes_ = true;
      callbacks_->on_peer_closed(shared_from_this());
    }
    if (!handler_closes_ && !output_pending()) close(CloseCode::kPeerClosed, "peer closed the connection");
  } else if (errno != EAGAIN && errno != EINTR) {
    close(code_of_errno(errno), describe_errno("read", errno));
  }
}

void TcpConnection::deliver_input() {
  if (handler_) {
    handler_->on_message(*this, input_);  // released only in the deferred phase after a close
  } else if (callbacks_->on_message) {
    callbacks_->on_message(shared_from_this(), input_);
  } else {
    input_.clear();
  }
}

SendResult TcpConnection::send(std::string_view bytes) {
  if (!open() || shutdown_requested_) return SendResult::kClosed;
  if (over_limit(bytes.size())) return SendResult::kOverLimit;
  size_t before = output_.footprint();
  output_.append(bytes);
  after_queue(before);
  return SendResult::kQueued;
}

SendResult TcpConnection::send(SharedBytes bytes) {
  if (!open() || shutdown_requested_) return SendResult::kClosed;
  if (over_limit(bytes ? bytes->size() : 0)) return SendResult::kOverLimit;
  size_t before = output_.footprint();
  output_.append(std::move(bytes));
  after_queue(before);
  return SendResult::kQueued;
}

bool TcpConnection::over_limit(size_t adding) {
  if (!options_.output_limit) return false;
  size_t after = output_.footprint() + adding + OutputQueue::kChunkOverhead;
  if (after <= options_.output_limit) return false;
  close_soon(CloseCode::kOutputLimit, "slow consumer: output limit exceeded (" + std::to_string(output_.bytes()) +
                                          " bytes in " + std::to_string(output_.chunks()) + " chunks queued)");
  return true;
}

void TcpConnection::queue_flush() {
  // While write interest is on, the writable event flushes; otherwise join this iteration's
  // flush list (once).
  if (flush_queued_ || want_write_) return;
  flush_queued_ = true;
  reactor_.queue_flush(shared_from_this());
}

void TcpConnection::after_queue(size_t before) {
  queue_flush();
  if (!high_water_signalled_ && before < options_.high_water_mark &&
      output_.footprint() >= options_.high_water_mark) {
    high_water_signalled_ = true;
    if (callbacks_->on_high_water) callbacks_->on_high_water(shared_from_this(), output_.footprint());
  }
}

void TcpConnection::flush_pending() {
  flush_queued_ = false;
  if (open_ && !want_write_) flush_output();
}

bool TcpConnection::write_queue(OutputQueue& queue) {
  while (!queue.empty()) {
    size_t attempted = 0;
    ssize_t n = queue.write_to(socket_.get(), &attempted);
    ++stats_.writes;
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return true;
      // Never close from inside the write path: the owner may be iterating over connections.
      close_soon(code_of_errno(errno), describe_errno("sendmsg", errno));
      return false;
    }
    stats_.bytes_out += static_cast<uint64_t>(n);
    if (static_cast<size_t>(n) < attempted) return true;  // the kernel is full: wait for writable
    // Everything offered was taken; more remains only when the queue had more than IOV_MAX chunks.
  }
  return true;
}

// Encodes the queue a few records at a time (one write for them), as long as the kernel takes
// them: what waits unwritten is at most those records; the rest stays plain, shared, in output_.
bool TcpConnection::flush_filtered() {
  static constexpr size_t kEncodeAhead = 64 * 1024;
  Filtered& f = *filtered_;
  for (;;) {
    if (!write_queue(f.wire)) return false;
    if (!f.wire.empty() || output_.empty() || !f.filter->ready()) return true;
    while (!output_.empty() && f.wire.bytes() < kEncodeAhead) f.filter->encode(output_, f.wire);
  }
}

bool TcpConnection::can_write() const {
  if (!filtered_) return !output_.empty();
  return !filtered_->wire.empty() || (filtered_->filter->ready() && !output_.empty());
}

void TcpConnection::flush_output() {
  bool had_output = output_pending();
  if (!(filtered_ ? flush_filtered() : write_queue(output_))) return;
  want_write_ = can_write();
  if (!output_pending()) {
    // on_drain answers on_high_water: only a queue that crossed the mark reports draining.
    bool was_high = std::exchange(high_water_signalled_, false);
    if (had_output && was_high && callbacks_->on_drain) callbacks_->on_drain(shared_from_this());
    if (std::exchange(drain_wanted_, false) && handler_ && open()) handler_->on_drain(*this);
    if (!open_) return;
    if (close_when_drained_) {
      linger();
      return;
    }
    if (peer_eof_ && !handler_closes_) {
      close(CloseCode::kPeerClosed, "peer closed the connection");
      return;
    }
    if (shutdown_requested_ && !write_shut_) {
      write_shut_ = true;
      ::shutdown(socket_.get(), SHUT_WR);
    }
  }
  update_interest();
}

void TcpConnection::shutdown() {
  if (!open() || shutdown_requested_) return;
  shutdown_requested_ = true;
  if (!output_pending() && !flush_queued_) {
    write_shut_ = true;
    ::shutdown(socket_.get(), SHUT_WR);
  }
}

void TcpConnection::close_after_flush(CloseCode code, std::string_view text) {
  if (!open() || close_when_drained_) return;
  close_when_drained_ = std::make_unique<Closing>(Closing{CloseReason{code, std::string(text)}});
  shutdown_requested_ = true;  // refuse further sends
  pause_reading();
  // Plain bytes never go before the handshake is over, and with reading paused it will not be.
  if (filtered_ && !filtered_->filter->ready()) output_.clear();
  if (!output_pending() && !flush_queued_) {
    reactor_.defer([self = shared_from_this()] {
      if (self->open_ && !self->lingering_) self->linger();
    });
  }
}

// The output has left. Closing now, with bytes from the peer unread (a request after the last one
// we handled, a keep-alive), would make the kernel answer with a reset, and a reset destroys what
// is still in flight to the peer: the last replies, the end of a graceful stop's flush. So, as
// nginx's lingering close does: send our FIN, read and drop whatever still comes, and close once
// the peer closes too, or after kLingerTimeout.
void TcpConnection::linger() {
  if (peer_eof_) return close(close_when_drained_->reason.code, close_when_drained_->reason.text);
  lingering_ = true;
  closing_ = true;  // open() is false: no more sends, no more input for the owner
  if (filtered_ && filtered_->filter->ready()) {  // TLS: close_notify, best effort
    filtered_->filter->finish(filtered_->wire);
    write_queue(filtered_->wire);
  }
  ::shutdown(socket_.get(), SHUT_WR);
  reactor_.modify(socket_.get(), Interest::kRead);
  // Not cancelled at an earlier close: it then finds the connection closed (and holds its memory
  // until it fires, which costs less than a timer id in every connection).
  reactor_.run_after(kLingerTimeout, [weak = weak_from_this()] {
    if (auto self = weak.lock(); self && self->open_) {
      self->close(self->close_when_drained_->reason.code, self->close_when_drained_->reason.text);
    }
  });
}

size_t TcpConnection::linger_budget(CloseCode code) {
  switch (code) {
    case CloseCode::kProtocol:
    case CloseCode::kSlowConsumer:
    case CloseCode::kOutputLimit:
    case CloseCode::kTimeout:
    case CloseCode::kRefused: return kAbuseLingerBytes;
    default: return kLingerBytes;
  }
}

void TcpConnection::linger_read() {
  char drop[16384];
  const size_t budget = linger_budget(close_when_drained_->reason.code);
  for (int i = 0; i < 16; ++i) {  // bounded: a peer that keeps sending does not hold the loop
    ssize_t n = ::read(socket_.get(), drop, sizeof drop);
    if (n > 0) {
      size_t& lingered = close_when_drained_->lingered;
      lingered += static_cast<size_t>(n);
      if (lingered <= budget) continue;
      // Past its budget: a peer that goes on sending after the close (a flood that never reads)
      // is not read for kLingerTimeout more; a reset ends it, and whatever of ours it had not
      // taken is lost, which is its own doing.
      struct linger l {};
      l.l_onoff = 1;  // and l_linger 0: close() resets
      ::setsockopt(socket_.get(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
      return close_with({close_when_drained_->reason.code,
                         close_when_drained_->reason.text + " (reset: " + std::to_string(lingered) +
                             " bytes more came after the close, over " + std::to_string(budget) + ")",
                         /*reset=*/true});
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    return close(close_when_drained_->reason.code, close_when_drained_->reason.text);  // the peer closed (or reset): done
  }
}

void TcpConnection::notify_drain() {
  if (output_pending() || flush_queued_) {
    drain_wanted_ = true;
    return;
  }
  reactor_.defer([self = shared_from_this()] {
    if (self->handler_ && self->open()) self->handler_->on_drain(*self);
  });
}

void TcpConnection::pause_reading() {
  reading_ = false;
  update_interest();
}

void TcpConnection::resume_reading() {
  if (close_when_drained_ || reading_) return;
  reading_ = true;
  update_interest();
  if (!input_.empty()) {
    reactor_.defer([self = shared_from_this()] {
      if (!self->open() || !self->reading_ || self->input_.empty()) return;
      self->deliver_input();
    });
  }
}

void TcpConnection::redeliver_input() {
  if (!reading_ || input_.empty()) return;
  reactor_.defer([self = shared_from_this()] {
    if (!self->open() || !self->reading_ || self->input_.empty()) return;
    self->deliver_input();
  });
}

void TcpConnection::update_interest() {
  if (!open_ || lingering_) return;
  Interest want = Interest::kNone;
  if (reading_ && !peer_eof_) want = want | Interest::kRead;
  if (want_write_) want = want | Interest::kWrite;
  reactor_.modify(socket_.get(), want);
}

void TcpConnection::close_soon(CloseCode code, std::string_view text) {
  if (!open_ || closing_) return;
  closing_ = true;
  reactor_.defer([self = shared_from_this(), code, why = std::string(text)] { self->close(code, why); });
}

void TcpConnection::close(CloseCode code, std::string_view text) {
  close_with({code, std::string(text)});
}

void TcpConnection::close_with(CloseReason reason) {
  if (!open_) return;
  open_ = false;
  closing_ = true;
  auto self = shared_from_this();
  reactor_.remove(socket_.get());
  socket_.reset();
  output_.clear();
  input_.clear();
  filtered_.reset();  // handshake() still says how far it got
  if (handler_ || callbacks_->on_close) {
    reactor_.defer([self, why = std::move(reason)] {
      if (auto handler = std::move(self->handler_)) handler->on_close(*self, why);
      if (self->callbacks_->on_close) self->callbacks_->on_close(self, why);
    });
  }
}

}  // namespace reactor
