// The article's dialect (docs/PROTOCOL.md): JSON objects {"user":U,"text":T} back to back in, and
// "[user] text" lines out; every connection is a member of the lobby from the start, anonymous
// (each message carries its own name). On the TCP port every connection starts here: if its first
// object is a hello, the connection is handed over to the native codec instead.
#pragma once

#include <memory>
#include <string>

#include "chat/session/codec.h"

namespace chat {

// Room messages as "[user] text\n"; presence is not carried.
const Format& article_format();

// "[user] text\n", control characters shown visibly (chat/session/visible_text.h).
std::string article_message_line(std::string_view user, std::string_view text);

class ArticleCodec final : public Codec {
 public:
  explicit ArticleCodec(size_t max_frame) : framer_(max_frame) {}

  const Format& format() const override { return article_format(); }
  void start(Session& session) override;
  FrameResult next_frame(std::string_view input) override;
  std::unique_ptr<Codec> on_frame(Session& session, std::string_view frame) override;
  void on_bad_frame(Session& session, const FrameResult& result, std::string_view skipped) override;
  reactor::SharedBytes joined(Session&, const std::string&, const JoinReply&, std::optional<bool>) override {
    return nullptr;
  }
  void on_close(Session& session) override;

 private:
  void problem(Session& session, const char* what, std::string_view frame);
  // --auth-secret: input before a hello (an object that is not one, bad JSON, garbage) closes the
  // connection, said in one plain line and counted. True if it did.
  bool refuse_unauthenticated(Session& session);
  // Drops the connection's log budget, saying how many lines it left out.
  void forget_budget(Session& session);

  ObjectFramer framer_;
  bool decided_ = false;  // a first object that was not a hello confirmed the dialect
  // The overlong object being discarded began like a native hello: it is answered in native JSON.
  bool overlong_hello_ = false;
};

}  // namespace chat
