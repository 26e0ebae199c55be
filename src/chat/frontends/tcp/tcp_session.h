// The TCP front end: a Session whose transport is a TcpConnection, and that connection's handler,
// in one object (the codec is the only other allocation of a session): every byte here is paid
// by every idle member.
// On the chat port it starts with the article's codec (a hello as the first object hands it to the
// native one); on the IRC port with the IRC codec.
#pragma once

#include "chat/session/session.h"
#include "chat/session/transport.h"
#include "reactor/tcp_connection.h"

namespace chat {

// Session's constructor only keeps the reference to the Transport base: it must not call it (the
// overrides and conn_ are not in place until TcpSession's own constructor has run).
class TcpSession final : public reactor::ConnectionHandler, public Transport, public Session {
 public:
  TcpSession(SessionContext& shard, reactor::TcpConnection& conn, std::unique_ptr<Codec> codec);

  // reactor::ConnectionHandler
  void on_message(reactor::TcpConnection&, reactor::Buffer& bytes) override { input(bytes); }
  bool on_peer_closed(reactor::TcpConnection&) override {
    peer_closed();
    return true;  // the session closes once every earlier request is answered
  }
  void on_close(reactor::TcpConnection&, const reactor::CloseReason&) override { closed(); }

  // Transport
  bool open() const override { return conn_.accepts_output(); }
  reactor::SendResult send(const reactor::SharedBytes& bytes) override { return conn_.send(bytes); }
  QueuedOutput queued() const override { return {conn_.queued_bytes(), conn_.queued_chunks()}; }
  void pause_reading() override { conn_.pause_reading(); }
  void resume_reading() override { conn_.resume_reading(); }
  void redeliver_input() override { conn_.redeliver_input(); }
  void close_soon(reactor::CloseCode code, std::string_view text) override { conn_.close_soon(code, text); }
  void close_after_flush(reactor::CloseCode code, std::string_view text) override {
    conn_.close_after_flush(code, text);
  }
  bool input_pending() const override;
  int peer_fd() const override { return conn_.fd(); }

 private:
  reactor::TcpConnection& conn_;
};

}  // namespace chat
