#include "chat/frontends/web/ws_session.h"

#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <wslay/wslay.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "chat/frontends/tcp/native.h"
#include "chat/session/framing.h"
#include "http/websocket.h"

namespace chat {
namespace {

// The session wslay is working for now. A context's user data is fixed when it is made, and
// contexts are lent from session to session (below), so the callbacks find their session here.
thread_local WsSession* g_current = nullptr;

ssize_t recv_cb(wslay_event_context_ptr, uint8_t* buf, size_t len, int, void*) {
  return g_current->on_wslay_recv(buf, len);
}
ssize_t send_cb(wslay_event_context_ptr, const uint8_t* data, size_t len, int, void*) {
  return g_current->on_wslay_send(data, len);
}
void msg_cb(wslay_event_context_ptr, const wslay_event_on_msg_recv_arg* arg, void*) {
  g_current->on_wslay_message(arg->opcode, arg->msg, arg->msg_length);
}
void frame_start_cb(wslay_event_context_ptr, const wslay_event_on_frame_recv_start_arg* arg, void*) {
  g_current->on_wslay_frame_start(arg->fin != 0, arg->opcode, arg->payload_length);
}

const wslay_event_callbacks kCallbacks = {recv_cb, send_cb, nullptr, frame_start_cb, nullptr, nullptr, msg_cb};

// This thread's idle contexts: a member holds one only while it is needed (about 9 KiB each).
std::vector<wslay_event_context_ptr>& pool() {
  static thread_local struct Pool {
    std::vector<wslay_event_context_ptr> free;
    ~Pool() {
      for (auto* c : free) wslay_event_context_free(c);
    }
  } p;
  return p.free;
}
constexpr size_t kPoolMax = 16;

// Bytes the kernel holds for the peer, sent and not acknowledged or not sent yet (0 if it cannot say).
size_t kernel_unacked(int fd) {
  int n = 0;
  return fd >= 0 && ::ioctl(fd, SIOCOUTQ, &n) == 0 && n > 0 ? static_cast<size_t>(n) : 0;
}

// The bytes of the whole frames at the front of `in`; stops at the first incomplete frame. A frame
// whose payload is over `max_payload` ends the scan at its header (`*too_big`): wslay refuses it
// from the header alone (1009), and nobody buffers its payload.
size_t whole_frames(std::string_view in, uint64_t max_payload, bool* too_big) {
  size_t at = 0;
  *too_big = false;
  while (auto h = http::frame_header(in.substr(at))) {
    if (h->payload > max_payload) {
      *too_big = true;
      return at + h->size;
    }
    if (in.size() - at - h->size < h->payload) break;
    at += h->size + h->payload;
  }
  return at;
}

}  // namespace

WsSession::WsSession(SessionContext& shard, reactor::TcpConnection& conn)
    : Session(shard, *this, conn.id(),
              std::make_unique<NativeCodec>(shard.limits.max_frame, NativeCodec::Carrier::kWebSocket)),
      conn_(conn),
      last_input_(reactor::Clock::now()) {}

WsSession::~WsSession() {
  if (ctx_) wslay_event_context_free(ctx_);
}

void WsSession::on_message(reactor::TcpConnection&, reactor::Buffer& input) {
  last_input_ = reactor::Clock::now();
  pinged_at_ = {};
  if (!messages_.empty()) {
    Session::input(messages_);  // left while the reactors were congested
    if (!messages_.empty()) return;
  }
  if (closing_ || !conn_.open()) return input.clear();
  // Pongs owed are at most what the peer has not taken yet: ours queued, and the kernel's not yet
  // acknowledged (asked only of a member that pinged since it last took everything).
  if (unread_pongs_ > 0) {
    size_t untaken = conn_.queued_bytes() + kernel_unacked(conn_.fd());
    if (untaken < unread_pongs_) unread_pongs_ = static_cast<uint32_t>(untaken);
  }
  // A frame's payload may be as large as a message (wslay assembles fragments and checks the
  // message's total); what waits here is at most one frame of that size.
  bool too_big = false;
  bool ended_message = false;
  size_t n = whole_frames(input.view(), limits().max_frame, &too_big);
  if (n == 0) return note_framing(/*partial=*/true, /*progressed=*/false);  // a frame begun (slowloris counts from here)
  if (too_big) {
    // wslay refuses a frame over the limit (1009) when it sees the frame's first payload byte, not
    // from the header alone: given only the header it would wait mid-frame, and its context would
    // go back to the pool in that state, to garble the next member's frames. So it is given a
    // byte after the header (never read: the frame is refused first), and the rest is dropped.
    std::string frames(input.view().substr(0, n));
    frames.push_back('\0');
    feed(frames);
  } else {
    size_t before = messages_.size();
    feed(input.view().substr(0, n));
    ended_message = messages_.size() > before;
  }
  input.consume(n);
  if (unread_pongs_ > kMaxUnreadPongBytes && !closing_) {
    // Pings on pings while the pongs wait unread in the queue: a flood that never reads. Closed at
    // once (a close frame would wait unread too), its input unread: a reset.
    ++stats().ping_flood_closes;
    close_soon(reactor::CloseCode::kSlowConsumer,
               "WebSocket: ping flood: " + std::to_string(unread_pongs_) +
                   " bytes of pongs owed while the peer does not read (at most " +
                   std::to_string(kMaxUnreadPongBytes) + ")");
  }
  if (too_big || closing_) input.clear();
  if (!messages_.empty()) Session::input(messages_);
  // After Session::input, which saw whole messages only: a frame begun in the buffer, or a
  // fragmented message not ended, is what the frame timeout measures (a client trickling a frame,
  // or a message in fragments, forever).
  // Its clock starts again only when a message ends (fragments that keep coming are one message).
  note_framing(!input.empty() || mid_message_, ended_message);
}

void WsSession::resume_reading() {
  conn_.resume_reading();
  redeliver_input();
}

void WsSession::redeliver_input() {
  if (messages_.empty()) return;
  conn_.reactor().defer([weak = std::weak_ptr<Session>(shared_from_this())] {
    auto self = std::static_pointer_cast<WsSession>(weak.lock());
    if (self && self->conn_.open() && !self->messages_.empty()) self->Session::input(self->messages_);
  });
}

void WsSession::feed(std::string_view frames) {
  if (ctx_ == nullptr) {
    auto& free = pool();
    if (!free.empty()) {
      ctx_ = free.back();
      free.pop_back();
    } else if (wslay_event_context_server_init(&ctx_, &kCallbacks, nullptr) != 0) {
      ctx_ = nullptr;
      conn_.close(reactor::CloseCode::kIoError, "WebSocket: out of memory");
      return;
    }
    wslay_event_config_set_max_recv_msg_length(ctx_, limits().max_frame);
  }
  WsSession* outer = g_current;
  g_current = this;
  feeding_ = frames;
  int rv = wslay_event_recv(ctx_);
  bool header_refused = rv == WSLAY_ERR_CALLBACK_FAILURE;
  if (rv == 0) rv = wslay_event_send(ctx_);
  g_current = outer;
  if (header_refused) {
    // wslay's frame parser refused a header (a control frame over 125 bytes or fragmented, a
    // length not in its shortest form) and stopped with a close that has no code: the code for
    // this is 1002, and we send that close ourselves.
    wslay_event_context_free(ctx_);
    ctx_ = nullptr;
    ++stats().ws_protocol_closes;
    return send_close(WSLAY_CODE_PROTOCOL_ERROR, "WebSocket protocol error", reactor::CloseCode::kProtocol);
  }
  if (rv != 0) {
    closing_ = true;
    conn_.close(reactor::CloseCode::kIoError, "WebSocket: wslay failed");
    return;
  }
  finish_wslay();
}

void WsSession::finish_wslay() {
  if (wslay_event_get_close_sent(ctx_)) {
    // Our close went out (an answer to the peer's, or a protocol error): nothing more to say.
    // (wslay's received status code is 1006 when no close came: whether one came is asked apart.)
    bool got = wslay_event_get_close_received(ctx_) != 0;
    if (!got && !closing_) ++stats().ws_protocol_closes;
    closing_ = true;
    conn_.close_after_flush(got ? reactor::CloseCode::kPeerClosed : reactor::CloseCode::kProtocol,
                            got ? "WebSocket closed by the peer"
                                : "WebSocket protocol error (close " +
                                      std::to_string(wslay_event_get_status_code_sent(ctx_)) + ")");
  }
  bool idle = wslay_event_get_read_enabled(ctx_) && wslay_event_get_write_enabled(ctx_) &&
              !wslay_event_get_close_received(ctx_) && !wslay_event_get_close_sent(ctx_) &&
              wslay_event_get_queued_msg_count(ctx_) == 0 && !mid_message_;
  if (closing_ || !idle) {
    if (closing_) {
      wslay_event_context_free(ctx_);
      ctx_ = nullptr;
    }
    return;  // mid-message or mid-close: this member keeps its context
  }
  auto& free = pool();
  if (free.size() < kPoolMax) {
    free.push_back(ctx_);
  } else {
    wslay_event_context_free(ctx_);
  }
  ctx_ = nullptr;
}

void WsSession::on_wslay_frame_start(bool fin, uint8_t opcode, uint64_t length) {
  // Data frames (continuation, text, binary) say whether a message is still open after them;
  // control frames may come in between and change nothing.
  if (opcode <= WSLAY_BINARY_FRAME) mid_message_ = !fin;
  // wslay answers a ping with a pong of its payload: 2 bytes of header and the payload (at most 125).
  if (opcode == WSLAY_PING) unread_pongs_ += static_cast<uint32_t>(2 + std::min<uint64_t>(length, 125));
  // A close's payload is empty or starts with a two-byte code (RFC 6455 5.5.1); wslay would take
  // one byte as "no code" and answer in kind.
  if (opcode == WSLAY_CONNECTION_CLOSE && length == 1) fail(WSLAY_CODE_PROTOCOL_ERROR, "close payload of one byte");
}

long WsSession::on_wslay_recv(uint8_t* buf, size_t len) {
  if (feeding_.empty()) {
    wslay_event_set_error(ctx_, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  size_t n = std::min(len, feeding_.size());
  std::memcpy(buf, feeding_.data(), n);
  feeding_.remove_prefix(n);
  return static_cast<long>(n);
}

long WsSession::on_wslay_send(const uint8_t* data, size_t len) {
  // wslay's own frames (pong, close): queued whole, like everything else, and under the same
  // output limit: a client that sends pings and reads nothing is a slow consumer too.
  if (output_fits(len)) conn_.send(std::string_view(reinterpret_cast<const char*>(data), len));
  return static_cast<long>(len);
}

void WsSession::on_wslay_message(uint8_t opcode, const uint8_t* data, size_t size) {
  std::string_view msg(reinterpret_cast<const char*>(data), size);
  switch (opcode) {
    case WSLAY_TEXT_FRAME:
      if (!valid_utf8(msg)) {
        ++stats().errors_utf8;
        return fail(WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA, "text is not valid UTF-8");
      }
      if (msg.find('\0') != std::string_view::npos) {
        // No JSON text holds a NUL, and the codec's frames end at one: the message goes to the
        // codec with its NULs made SOH, which no JSON text holds either, so it gets its bad_json
        // in order with the answers to the messages before it.
        std::string copy(msg);
        std::replace(copy.begin(), copy.end(), '\0', '\x01');
        messages_.append(copy);
      } else {
        messages_.append(msg);  // counted in by Session::input
      }
      messages_.append(std::string_view("\0", 1));
      return;
    case WSLAY_BINARY_FRAME:
      ++stats().errors_request;
      return fail(WSLAY_CODE_UNSUPPORTED_DATA, "binary messages are not this protocol: send JSON text");
    default:
      return;  // ping (wslay answers it), pong, close (wslay answers it)
  }
}

void WsSession::fail(uint16_t code, const char* reason) {
  wslay_event_queue_close(ctx_, code, reinterpret_cast<const uint8_t*>(reason), std::strlen(reason));
  wslay_event_shutdown_read(ctx_);
}

void WsSession::close_soon(reactor::CloseCode code, std::string_view text) {
  closing_ = true;
  conn_.close_soon(code, text);
}

void WsSession::close_after_flush(reactor::CloseCode code, std::string_view text) {
  if (closing_ || !conn_.accepts_output()) return conn_.close_after_flush(code, text);
  // A close frame first: 1001 when the server is stopping, 1012 (Service Restart) when it drains,
  // 1000 when the peer is done, 1008 when it broke our rules.
  uint16_t ws_code = code == reactor::CloseCode::kShutdown    ? 1001
                     : code == reactor::CloseCode::kRestart    ? 1012
                     : code == reactor::CloseCode::kPeerClosed ? 1000
                                                               : 1008;
  send_close(ws_code, text, code);
}

void WsSession::send_close(uint16_t ws_code, std::string_view text, reactor::CloseCode code) {
  closing_ = true;
  std::string payload{static_cast<char>(ws_code >> 8), static_cast<char>(ws_code & 0xff)};
  payload.append(text.substr(0, 120));
  conn_.send(http::websocket_frame(0x8, payload));
  conn_.close_after_flush(code, text);
}

void WsSession::on_close(reactor::TcpConnection&, const reactor::CloseReason&) {
  closed();
  if (ctx_) wslay_event_context_free(ctx_);
  ctx_ = nullptr;
}

void WsSession::keep_alive(reactor::Clock::time_point now, reactor::Clock::duration idle,
                           reactor::Clock::duration timeout) {
  if (closing_ || !conn_.accepts_output()) {
    // Closing after its last frames (a close frame, an error): a peer that does not take them
    // within the timeout is not kept waiting for.
    if (closing_since_ == reactor::Clock::time_point{}) {
      closing_since_ = now;
    } else if (now - closing_since_ > timeout && conn_.open()) {
      conn_.close(reactor::CloseCode::kProtocol, "WebSocket: the peer did not take its last frames in time");
    }
    return;
  }
  if (pinged_at_ != reactor::Clock::time_point{}) {
    auto waited = now - pinged_at_;
    if (waited > timeout) {
      // The wait as this side measured it (from the ping's sending), in the close's logged reason:
      // what a test checks against the timeout, whenever its client happened to read the ping.
      auto ms = [](reactor::Clock::duration d) {
        return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
      };
      close_soon(reactor::CloseCode::kProtocol, "WebSocket: no answer to a ping in " + ms(waited) +
                                                    " ms (--ws-pong-timeout-ms " + ms(timeout) + ")");
    }
    return;
  }
  if (now - last_input_ > idle) {
    pinged_at_ = now;
    conn_.send(http::websocket_frame(0x9, ""));
  }
}

}  // namespace chat
