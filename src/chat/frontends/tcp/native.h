// The native dialect (docs/PROTOCOL.md): one JSON object per line, both ways, on the TCP port (a
// connection becomes native when its first object is a hello: the article's codec hands it over);
// or one JSON object per WebSocket text message on /ws (the WebSocket transport hands the codec
// each message whole, followed by a NUL, which no JSON text contains; the codec's answers and the
// format's events are whole WebSocket frames, so every WebSocket member shares one framed copy).
#pragma once

#include <memory>
#include <string>

#include "chat/ops/json.h"
#include "chat/session/codec.h"

namespace chat {

// Room events as JSON lines: message, join, leave.
const Format& native_format();
// The same JSON, each as one WebSocket text frame (server to client: unmasked).
const Format& native_ws_format();

class NativeCodec final : public Codec {
 public:
  enum class Carrier : uint8_t {
    kLines,      // TCP: greeted already (by the article's codec's hand-over)
    kWebSocket,  // /ws: the first message must be a hello
  };
  explicit NativeCodec(size_t max_frame, Carrier carrier = Carrier::kLines)
      : framer_(max_frame), carrier_(carrier), greeted_(carrier == Carrier::kLines) {}

  // A hello from a connection not yet greeted: checks and claims the name, leaves the rooms the
  // connection was in (silently), names the session and answers welcome. True if greeted;
  // otherwise the error has been sent and the connection may try again.
  static bool greet(Session& session, const Json& hello);
  static bool greet_as(Session& session, const Json& hello, Carrier carrier);
  // {"type":"error","code":CODE,"message":MESSAGE} as a line.
  static reactor::SharedBytes error_line(const char* code, const std::string& message);

  const Format& format() const override {
    return carrier_ == Carrier::kLines ? native_format() : native_ws_format();
  }
  FrameResult next_frame(std::string_view input) override;
  std::unique_ptr<Codec> on_frame(Session& session, std::string_view frame) override;
  void on_bad_frame(Session& session, const FrameResult& result, std::string_view skipped) override;
  reactor::SharedBytes joined(Session& session, const std::string& room, const JoinReply& reply,
                              std::optional<bool> recovered) override;
  reactor::SharedBytes acked(const std::string& room, const std::string& id, uint64_t seq, bool stored) override;
  reactor::SharedBytes history(const std::string& room, const std::string& epoch, const ReadResult& result) override;
  reactor::SharedBytes join_refused(Session& session, const std::string& room, Refusal why) override;
  reactor::SharedBytes publish_refused(Session& session, const std::string& room, Refusal why,
                                       const std::string& id) override;
  reactor::SharedBytes going_away(Session& session, bool restart) override;

  // Messages one history request may ask for.
  static constexpr size_t kMaxHistory = 100;
  static constexpr size_t kDefaultHistory = 50;

 private:
  void request(Session& session, const Json& j);
  void hello(Session& session, const Json& j);  // before greeted_ (WebSocket)
  // A reply in this carrier's framing.
  reactor::SharedBytes wrap(const Json& j) const;
  void error(Session& session, const char* code, const std::string& message) const;
  void join(Session& session, const std::string& room, const Json& j);
  void publish(Session& session, const Json& j);
  void history(Session& session, const Json& j);
  void leave(Session& session, const std::string& room);
  void ping(Session& session, const Json& j);

  LineFramer framer_;
  Carrier carrier_;
  bool greeted_;
};

}  // namespace chat
