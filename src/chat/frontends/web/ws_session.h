// The WebSocket front end (RFC 6455, after the handshake in http_session.cpp): a Session whose
// transport is WebSocket frames over a TcpConnection, carrying the native codec, one JSON object
// per text message.
//
// Input: wslay (Debian's libwslay) checks the frames: masking, opcodes, RSV bits, control frames
// (at most 125 bytes, never fragmented), fragmentation with control frames in between, the
// message size (--max-frame: 1009), the close handshake (the peer's code echoed), ping answered by
// pong (a peer that pings on while its pongs wait unread is closed: a ping flood, kMaxUnreadPongBytes).
// We add what wslay leaves to its user: text must be UTF-8, also across fragments (1007);
// binary messages are not this protocol (1003). A wslay context holds about 9 KiB, so members do
// not keep one: each shard lends one from a small pool while whole frames are parsed, and the
// member keeps it only while a fragmented message or the close handshake is under way. Only whole
// frames are handed to wslay, so a context always returns to the pool at a frame boundary; a frame
// too big to wait for is refused from its header (wslay is given the header and one byte, as it
// decides at a frame's first payload byte), and that context is freed with the closing member.
//
// Output: room events come already framed (the "websocket" format: one frame, shared by every
// WebSocket member), and so do the codec's replies; wslay sends only its control frames.
#pragma once

#include <memory>

#include "chat/session/session.h"
#include "chat/session/transport.h"
#include "reactor/buffer.h"
#include "reactor/tcp_connection.h"

struct wslay_event_context;

namespace chat {

class WsSession final : public reactor::ConnectionHandler, public Transport, public Session {
 public:
  WsSession(SessionContext& shard, reactor::TcpConnection& conn);
  ~WsSession() override;

  // reactor::ConnectionHandler
  void on_message(reactor::TcpConnection& conn, reactor::Buffer& input) override;
  bool on_peer_closed(reactor::TcpConnection&) override {
    peer_closed();
    return true;
  }
  void on_close(reactor::TcpConnection&, const reactor::CloseReason&) override;

  // Transport
  bool open() const override { return conn_.accepts_output() && !closing_; }
  reactor::SendResult send(const reactor::SharedBytes& bytes) override { return conn_.send(bytes); }
  QueuedOutput queued() const override { return {conn_.queued_bytes(), conn_.queued_chunks()}; }
  void pause_reading() override { conn_.pause_reading(); }
  void resume_reading() override;
  void redeliver_input() override;
  void close_soon(reactor::CloseCode code, std::string_view text) override;
  void close_after_flush(reactor::CloseCode code, std::string_view text) override;
  int peer_fd() const override { return conn_.fd(); }

  // Keep-alive, driven by the server's sweep: pings a member idle for `idle`, closes one that has
  // not answered a ping within `timeout`.
  void keep_alive(reactor::Clock::time_point now, reactor::Clock::duration idle, reactor::Clock::duration timeout);

  // wslay's callbacks (C), on this session.
  long on_wslay_recv(uint8_t* buf, size_t len);
  void on_wslay_message(uint8_t opcode, const uint8_t* data, size_t size);
  long on_wslay_send(const uint8_t* data, size_t len);
  void on_wslay_frame_start(bool fin, uint8_t opcode, uint64_t length);

 private:
  struct Pooled;  // a context borrowed from this thread's pool
  void feed(std::string_view frames);
  void finish_wslay();
  void fail(uint16_t code, const char* reason);
  // Queues a close frame with `ws_code` (not through wslay) and closes once it is written.
  void send_close(uint16_t ws_code, std::string_view text, reactor::CloseCode code);

  reactor::TcpConnection& conn_;
  wslay_event_context* ctx_ = nullptr;  // held between frames only mid-message or mid-close
  reactor::Buffer messages_;            // whole messages for the codec, each ended by a NUL
  std::string_view feeding_;            // the frames wslay is reading now
  reactor::Clock::time_point last_input_{};
  reactor::Clock::time_point pinged_at_{};
  reactor::Clock::time_point closing_since_{};  // seen closing by the keep-alive sweep
  bool closing_ = false;                // a close frame is queued or sent: nothing more to send
  bool mid_message_ = false;            // a fragmented message has begun and not ended
  // Pong bytes owed and not taken by the peer (at most what is queued for it, here and in the
  // kernel): what pings buy a peer that does not read its answers, up to kMaxUnreadPongBytes.
  // An upper bound: a member whose output never drains below it and that pings every 20 s would
  // reach it after a day and a half of pings (about 6,500 of them), a flood in well under a second.
  uint32_t unread_pongs_ = 0;
  static constexpr uint32_t kMaxUnreadPongBytes = 64 * 1024;
};

}  // namespace chat
