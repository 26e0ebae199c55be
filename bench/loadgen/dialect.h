// The six chat dialects loadgen speaks: what a member or publisher sends to subscribe and publish,
// and an incremental parser for what the server sends back.
//
//   native   chat-server's JSON lines: {"type":"hello","user":U} {"type":"join","room":R},
//            {"type":"message","room":R,"text":T}; in: {"type":"message",...,"text":T,...} lines.
//            Lines before "welcome" may be the article's lobby lines (docs/PROTOCOL.md): skipped.
//            With --ids a publish carries "id":X and the server answers {"type":"ack",...,"id":X}.
//   article  the article's protocol: in room "lobby" from connect; out {"user":U,"text":T}; in
//            "[U] T" with or without "\n" (the article's Python server sends none), split by the
//            known text length.
//   redis    RESP: SUBSCRIBE R / PUBLISH R T; pushed *3 $7 message $len R $len T.
//   nats     core protocol: INFO, CONNECT {...}, SUB R 1 / PUB R len, PING/PONG, MSG R 1 len.
//   ws       the native dialect over WebSocket (chat-server's GET /ws on its HTTP port): the same
//            JSON objects, one per text frame, masked (websocket.h). The worker does the upgrade
//            and unwraps the frames; this codec makes the frames and reads the objects in them.
//   irc      RFC 2812, client side, no capabilities requested (so no echo-message: a publisher gets
//            no copy of its own message): NICK U, USER U 0 * :U; at 001 JOIN #R (the room R's
//            channel); ready at 366 (end of NAMES) for #R, publishers too (a channel refuses messages
//            from outside it, +n). Out PRIVMSG #R :T; in [@tags] :prefix PRIVMSG #R :T lines; the
//            server's PING :x is answered PONG :x; ERROR and error numerics (4xx/5xx but 422, "no
//            MOTD") are server errors. U is a valid nick (see ChatWorker): a letter first, no '.'.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "loadgen/config.h"
#include "loadgen/websocket.h"

namespace loadgen {

// What the parser found; called in arrival order.
class Sink {
 public:
  virtual ~Sink() = default;
  virtual void on_text(std::string_view text) = 0;   // a chat message delivered (its text)
  virtual void on_ready() = 0;                       // subscription/handshake confirmed
  virtual void on_info() {}  // nats: the server's INFO (send CONNECT now); irc: 001 (send JOIN now)
  virtual void on_ping(std::string_view /*token*/) {}  // nats, irc: the server's PING (answer Codec::pong)
  virtual void on_error(std::string_view what) = 0;  // the server reported an error
  // native/ws, a publish with an id: stored (ack) or not (the error not_stored).
  virtual void on_ack(std::string_view /*id*/) {}
  virtual void on_not_stored(std::string_view id) { on_error("not_stored: " + std::string(id)); }
};

struct ParseResult {
  size_t consumed = 0;   // bytes used up (the rest is a partial frame, kept for later)
  bool fatal = false;    // the stream makes no sense: close the connection
  std::string problem;   // when fatal
};

class Codec {
 public:
  explicit Codec(const Config& cfg);

  // Bytes to send as soon as the connection is up (nats: nothing until INFO, see after_info; ws:
  // these go once the upgrade is done, see ws_upgrade).
  std::string greeting(bool publisher, const std::string& user);
  // nats: what to send once INFO arrived (CONNECT, SUB for a member, PING); irc: once 001 arrived
  // (the JOIN).
  std::string after_info(bool publisher) const;
  // nats, irc: the answer to the server's PING carrying `token` (irc; nats has none).
  std::string pong(std::string_view token) const;
  // Whether the connection is subscribed/usable without waiting for a reply.
  bool ready_at_connect(bool publisher) const;
  // Appends one publish of `text` (exactly --payload bytes) by user `user`; native and ws: with
  // "id":`id` unless it is empty (the id needs no escaping: it is a header of message.h).
  void append_publish(std::string& out, const std::string& user, std::string_view text, std::string_view id = {});
  // ws: the upgrade request with a fresh key; `accept` gets what the server must answer.
  std::string ws_upgrade(std::string& accept);
  // ws: a pong echoing `payload`, a close echoing `code`.
  std::string ws_pong(std::string_view payload);
  std::string ws_close(uint16_t code);

  // Parses as many whole frames of `in` as there are (ws: the worker unwraps the frames and hands
  // each message to parse_native_message).
  ParseResult parse(std::string_view in, Sink& sink) const;
  // One native JSON object (a line without its newline, or a WebSocket text message).
  void parse_native_message(std::string_view object, Sink& sink) const;

 private:
  ParseResult parse_native(std::string_view in, Sink& sink) const;
  ParseResult parse_article(std::string_view in, Sink& sink) const;
  ParseResult parse_redis(std::string_view in, Sink& sink) const;
  ParseResult parse_nats(std::string_view in, Sink& sink) const;
  ParseResult parse_irc(std::string_view in, Sink& sink) const;
  void parse_irc_line(std::string_view line, Sink& sink) const;

  const Config& cfg_;
  std::string channel_;    // irc: '#' and the room (the room as it is if it starts with '#')
  ws::Masker masker_;      // ws: a fresh mask for every frame, as browsers do
  std::string scratch_;    // ws: a message before it is framed
};

}  // namespace loadgen
