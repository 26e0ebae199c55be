// The native dialect (docs/PROTOCOL.md): one JSON object per line, both ways. A connection on the
// TCP port becomes native when its first object is a hello (the article's codec hands it over).
#pragma once

#include <memory>
#include <string>

#include "chat/codec.h"
#include "chat/json.h"

namespace chat {

// Room events as JSON lines: message, join, leave.
const Format& native_format();

class NativeCodec final : public Codec {
 public:
  explicit NativeCodec(size_t max_frame) : framer_(max_frame) {}

  // A hello from a connection not yet greeted: checks and claims the name, leaves the rooms the
  // connection was in (silently), names the session and answers welcome. True if greeted;
  // otherwise the error has been sent and the connection may try again.
  static bool greet(Session& session, const Json& hello);
  // {"type":"error","code":CODE,"message":MESSAGE} as a line.
  static reactor::SharedBytes error_line(const char* code, const std::string& message);

  const Format& format() const override { return native_format(); }
  FrameResult next_frame(std::string_view input) override { return framer_.next(input); }
  std::unique_ptr<Codec> on_frame(Session& session, std::string_view frame) override;
  void on_bad_frame(Session& session, const FrameResult& result, std::string_view skipped) override;
  reactor::SharedBytes joined(const std::string& room, size_t count, const std::vector<std::string>* names) override;

 private:
  void request(Session& session, const Json& j);
  void join(Session& session, const std::string& room);
  void leave(Session& session, const std::string& room);
  void ping(Session& session, const Json& j);

  LineFramer framer_;
};

}  // namespace chat
