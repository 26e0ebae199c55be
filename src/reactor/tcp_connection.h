// TcpConnection: a non-blocking TCP stream on a Reactor, with an input Buffer and an OutputQueue.
//
// Output: send() only queues. The connection joins the reactor's flush list once per iteration and
// writes its whole queue in one sendmsg just before the reactor polls again, so ten messages to one
// peer in one iteration cost one system call. What the kernel does not take stays queued, write
// interest goes on, and goes off as soon as the queue drains.
//
// Backpressure is a value, not only a notification: send() says whether the bytes were queued or
// refused (connection closing, or the hard output limit passed, which closes the connection after
// the current dispatch). Crossing the high-water mark calls on_high_water once; on_drain is called
// when that queue has emptied again. pause_reading()/resume_reading() let an owner push back on a peer.
//
// Closing: close() unregisters and closes the descriptor at once and drops queued output;
// on_close runs later from the reactor's deferred phase, never re-entrantly, with a typed reason. A peer that half-closes
// (end of stream) gets what is still queued for it, then the connection closes. Reset (ECONNRESET)
// and EPIPE close it with the reason; no signal is ever raised.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "reactor/buffer.h"
#include "reactor/handle.h"
#include "reactor/output_queue.h"
#include "reactor/reactor.h"

namespace reactor {

class TcpConnection;
using TcpConnectionPtr = std::shared_ptr<TcpConnection>;

enum class SendResult { kQueued, kClosed, kOverLimit };

// Why a connection closed: a code to act on (a log level, a counter) and a text for people. Nobody
// matches the text.
enum class CloseCode : uint8_t {
  kPeerClosed,    // the peer closed its side (end of stream, also while we lingered)
  kPeerReset,     // the peer reset the connection (ECONNRESET, EPIPE)
  kIoError,       // another failing read or write
  kOutputLimit,   // the connection's own hard output limit (ConnectionOptions::output_limit)
  kSlowConsumer,  // its owner's output policy: the peer does not read fast enough
  kProtocol,      // the peer broke the protocol past recovery
  kRefused,       // over a limit when it arrived
  kShutdown,      // the server is stopping
  kRestart,       // the server is going away and asks the peer to come back (a drain)
  kTimeout,       // the peer took too long (a handshake)
  kLocal,         // its owner was done with it (a client exiting, a test)
};
const char* to_string(CloseCode code);

struct CloseReason {
  CloseCode code = CloseCode::kLocal;
  std::string text;
  // The close was a reset (SO_LINGER 0): the peer went on sending past the lingering close's budget.
  bool reset = false;
};

// A connection's own handler, typed, owned by the connection: what the shared ConnectionCallbacks
// cannot hold (per-connection state, a session). Called on the connection's reactor only.
class ConnectionHandler {
 public:
  virtual ~ConnectionHandler() = default;
  // Bytes arrived; consume what you used from `input`, leave a partial frame for later.
  virtual void on_message(TcpConnection& conn, Buffer& input) = 0;
  // The peer will send no more. False: the connection closes once its queued output has left.
  // True: it stays open (not reading) until the handler closes it, so answers still being prepared
  // elsewhere go first.
  virtual bool on_peer_closed(TcpConnection& /*conn*/) { return false; }
  // The connection closed (from the reactor's deferred phase); the handler is released after.
  virtual void on_close(TcpConnection& /*conn*/, const CloseReason& /*reason*/) {}
  // The output queue emptied, after TcpConnection::notify_drain() asked to hear of it (once).
  virtual void on_drain(TcpConnection& /*conn*/) {}
};

// Shared by every connection of a server: one copy, not four std::functions per connection.
struct ConnectionCallbacks {
  // Bytes arrived; consume what you used from `input`, leave a partial frame for later.
  std::function<void(const TcpConnectionPtr&, Buffer& input)> on_message;
  std::function<void(const TcpConnectionPtr&, const CloseReason& reason)> on_close;
  std::function<void(const TcpConnectionPtr&, size_t queued)> on_high_water;
  std::function<void(const TcpConnectionPtr&)> on_drain;  // the queue emptied after on_high_water
  // The peer will send no more (end of stream). Without this callback the connection closes itself
  // once its queued output has left. With it, it stays open (not reading) until its owner closes
  // it: an owner whose answers are still being prepared elsewhere sends them first.
  std::function<void(const TcpConnectionPtr&)> on_peer_closed;
};

// A transformation between the socket's bytes and the handler's: TLS (reactor/tls.h). The
// connection reads the socket into it and writes what it makes; the handler sees plain bytes only,
// and what it sends is encoded at flush time, the whole queue at once (ten messages to one peer in
// one iteration are one TLS record, not ten).
class Filter {
 public:
  enum class Status : uint8_t {
    kOk,
    kClosed,         // the peer ended the stream in band (TLS close_notify)
    kError,          // broken past recovery: error() says why
    kWrongProtocol,  // the peer speaks something else (plain text to a TLS port)
  };
  virtual ~Filter() = default;
  // The connection has started: what the filter says first (a TLS client's hello) into `out`.
  virtual void begin(OutputQueue& /*out*/) {}
  // Bytes read from the socket. What they carry for the handler is appended to `plain`; what must
  // go back to the peer (a handshake's messages, an alert) to `out`.
  virtual Status receive(const char* bytes, size_t n, Buffer& plain, OutputQueue& out) = 0;
  // The handshake is over: the handler's bytes may be sent.
  virtual bool ready() const = 0;
  // Encodes the front of `plain` (up to one record's worth, consumed) into `out`.
  virtual void encode(OutputQueue& plain, OutputQueue& out) = 0;
  // Last words before an orderly close (TLS close_notify), into `out`.
  virtual void finish(OutputQueue& out) = 0;
  // Why receive() failed, for a log line.
  virtual const std::string& error() const = 0;
};

class FilterFactory {
 public:
  virtual ~FilterFactory() = default;
  // One filter for a new connection (called on the connection's reactor).
  virtual std::unique_ptr<Filter> make() = 0;
};

// Where a connection's handshake is: what a server counts when it closes.
enum class Handshake : uint8_t {
  kNone,           // a plain connection
  kPending,        // filtered, the handshake not over
  kDone,           // filtered, the handshake over
  kFailed,         // filtered, the handshake failed
  kTimedOut,       // filtered, the handshake took longer than ConnectionOptions::handshake_timeout
  kWrongProtocol,  // plain text to a filtered port, or a TLS hello to a plain one (refuse_tls)
};

// Both limits measure the queue's footprint: bytes plus OutputQueue::kChunkOverhead per chunk.
struct ConnectionOptions {
  size_t high_water_mark = 1 << 20;  // on_high_water when queued output reaches this
  // Hard limit on queued output; 0: none. A backstop for simple servers; the chat front ends leave
  // it off and apply chat::OutputLimit, one policy for every transport.
  size_t output_limit = 0;
  // With a factory, every connection is filtered (TLS); the handler hears nothing before the
  // handshake is over, which must be within handshake_timeout (else kTimeout).
  std::shared_ptr<FilterFactory> filter = nullptr;
  std::chrono::milliseconds handshake_timeout{10000};
  // A plain connection whose first bytes are a TLS handshake record is closed at once (kProtocol,
  // Handshake::kWrongProtocol): a client speaking TLS to a plain port gets a clean close.
  bool refuse_tls = false;
};

struct ConnectionStats {
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  uint64_t reads = 0;   // read system calls
  uint64_t writes = 0;  // write system calls
};

class TcpConnection final : public std::enable_shared_from_this<TcpConnection>, public Flushable {
 public:
  static TcpConnectionPtr create(Reactor& reactor, Handle socket,
                                 std::shared_ptr<const ConnectionCallbacks> callbacks,
                                 ConnectionOptions options = {});
  TcpConnection(Reactor& reactor, Handle socket,
                std::shared_ptr<const ConnectionCallbacks> callbacks, ConnectionOptions options);
  ~TcpConnection() override = default;

  // Registers for reading. Throws what Reactor::add throws (select: descriptor too high).
  void start();

  SendResult send(std::string_view bytes);
  SendResult send(SharedBytes bytes);
  // Half-close: shut down the write side once the queued output has left.
  void shutdown();
  // Close now, dropping queued output. Idempotent.
  void close(CloseCode code, std::string_view text);
  // Close after the current dispatch (from the reactor's deferred phase). Sends are refused meanwhile.
  void close_soon(CloseCode code, std::string_view text);
  // Close once the queued output has left (a last error reply, a graceful stop). Reading stops and
  // sends are refused meanwhile; a peer that never reads is the caller's to time out (close()).
  // Then the close lingers (see linger()): our FIN goes out, what the peer still sends is read and
  // dropped, and the descriptor closes when the peer closes, at most kLingerTimeout later. A peer
  // that sends more than its linger budget meanwhile is reset (SO_LINGER 0): kAbuseLingerBytes
  // after a close for its own fault (kProtocol, kSlowConsumer, kOutputLimit, kTimeout, kRefused),
  // kLingerBytes after any other.
  void close_after_flush(CloseCode code, std::string_view text);
  static constexpr std::chrono::seconds kLingerTimeout{5};
  static constexpr size_t kLingerBytes = 4 << 20;
  static constexpr size_t kAbuseLingerBytes = 256 * 1024;
  // The linger budget after a close for `code`.
  static size_t linger_budget(CloseCode code);

  // The handler's on_drain runs once the output queue is empty (at once, from the deferred phase,
  // if it is empty now): a handler that paused reading while its answers piled up resumes there.
  void notify_drain();

  void pause_reading();
  // Bytes the handler left in the input buffer while reading was paused are offered to on_message
  // again (from the deferred phase), so an owner that paused mid-buffer picks up where it stopped.
  // No effect on a connection closing after its flush.
  void resume_reading();
  // Offers the bytes the handler left in the input buffer again (after the current dispatch), while
  // reading: a handler that stopped short of its input for a while (a flood penalty) goes on.
  void redeliver_input();

  bool open() const { return open_ && !closing_; }
  // Open and taking sends: false also once close_after_flush() or shutdown() was asked for.
  bool accepts_output() const { return open() && !shutdown_requested_; }
  int fd() const { return socket_.get(); }
  uint64_t id() const { return id_; }
  // Filtered, the queue holds the handler's bytes and what is encoded and not yet written.
  size_t queued_bytes() const { return output_.bytes() + (filtered_ ? filtered_->wire.bytes() : 0); }
  size_t queued_chunks() const { return output_.chunks() + (filtered_ ? filtered_->wire.chunks() : 0); }
  // Queued bytes plus per-chunk bookkeeping: what the output limit and high-water mark measure.
  size_t queued_footprint() const { return output_.footprint() + (filtered_ ? filtered_->wire.footprint() : 0); }
  Handshake handshake() const { return handshake_; }
  const ConnectionStats& stats() const { return stats_; }
  Reactor& reactor() { return reactor_; }

  // The connection's own handler (see ConnectionHandler); with one, on_message and on_peer_closed
  // go to it instead of the shared callbacks, and its on_close runs before theirs.
  void set_handler(std::shared_ptr<ConnectionHandler> handler) { handler_ = std::move(handler); }
  ConnectionHandler* handler() const { return handler_.get(); }

 private:
  void flush_pending() override;
  void handle_events(Events events);
  void handle_read();
  void handle_filtered_read();
  void read_ended(ssize_t n);  // a read gave the end of the stream (0) or failed (-1)
  bool opens_with_tls(const char* bytes, size_t n);  // refuse_tls: a TLS hello on a plain port
  void flush_output();
  bool write_queue(OutputQueue& queue);  // false after an error (the connection closes soon)
  bool flush_filtered();
  bool output_pending() const { return !output_.empty() || (filtered_ && !filtered_->wire.empty()); }
  bool can_write() const;  // bytes that may be written now
  bool over_limit(size_t adding);  // true (and closing soon) if `adding` would pass the limit
  void after_queue(size_t before);
  void queue_flush();  // joins this iteration's flush list, unless it is on it or waits for writable
  void update_interest();
  void linger();
  void linger_read();
  void close_with(CloseReason reason);
  void deliver_input();

  Reactor& reactor_;
  Handle socket_;
  std::shared_ptr<const ConnectionCallbacks> callbacks_;
  ConnectionOptions options_;
  Buffer input_;
  OutputQueue output_;
  // With ConnectionOptions::filter: the filter, and the encoded bytes not yet written (apart, so
  // that a plain connection pays one pointer for it).
  struct Filtered {
    std::unique_ptr<Filter> filter;
    OutputQueue wire;
  };
  std::unique_ptr<Filtered> filtered_;
  ConnectionStats stats_;
  std::shared_ptr<ConnectionHandler> handler_;
  // Set by close_after_flush: why, and the bytes read and dropped since, lingering.
  struct Closing {
    CloseReason reason;
    size_t lingered = 0;
  };
  std::unique_ptr<Closing> close_when_drained_;
  uint64_t id_;
  bool open_ = false;
  bool closing_ = false;
  bool reading_ = true;
  bool peer_eof_ = false;
  bool shutdown_requested_ = false;
  bool write_shut_ = false;
  bool flush_queued_ = false;
  bool want_write_ = false;
  bool high_water_signalled_ = false;
  bool lingering_ = false;
  bool handler_closes_ = false;  // the handler took charge of closing after the peer's end of stream
  bool drain_wanted_ = false;    // notify_drain(): tell the handler when the queue is empty
  Handshake handshake_ = Handshake::kNone;
};

}  // namespace reactor
