#include "chat/frontends/tcp/article.h"

#include <unordered_map>
#include <utility>

#include "chat/core/event.h"
#include "chat/core/names.h"
#include "chat/frontends/tcp/json_object.h"
#include "chat/frontends/tcp/native.h"
#include "chat/session/session.h"
#include "chat/session/visible_text.h"
#include "reactor/log.h"

namespace chat {
namespace {

class ArticleFormat final : public Format {
 public:
  ArticleFormat() : Format("article", "article") {}
  reactor::SharedBytes encode(const RoomEvent& e) const override {
    if (e.kind != EventKind::kMessage) return nullptr;  // the article's clients know no presence
    return std::make_shared<const std::string>(article_message_line(e.user, e.text));
  }
};

// Lines about bad input of every connection of one reactor: a flood of bad connections is bounded
// too, not only one bad connection.
reactor::LogLimiter& problems_of_this_reactor() {
  static thread_local reactor::LogLimiter limiter(50, std::chrono::seconds(1));
  return limiter;
}

// Each connection's own budget (5 lines per 10 s), kept beside the codecs rather than in them:
// few connections ever misbehave, and every byte of a connection is paid by every idle member.
constexpr uint32_t kLogBurst = 5;
constexpr std::chrono::seconds kLogWindow{10};
std::unordered_map<uint64_t, reactor::LogLimiter>& log_budgets_of_this_reactor() {
  static thread_local std::unordered_map<uint64_t, reactor::LogLimiter> budgets;
  return budgets;
}

// The TCP port's rule: a first object that is a hello makes the connection native.
bool is_hello(const Json& j) {
  const std::string* type = string_field(j, "type");
  return type != nullptr && *type == "hello";
}

// True if `prefix`, the start of an object, says "type":"hello", or has a "token", among its first
// members (at the top level): what a native client's hello over the size limit (a huge token) looks
// like before its end, whatever the order of its members (the article's objects have no token).
bool begins_like_hello(std::string_view prefix) {
  size_t i = 0;
  auto skip_space = [&] {
    while (i < prefix.size() && (prefix[i] == ' ' || prefix[i] == '\t' || prefix[i] == '\n' || prefix[i] == '\r')) ++i;
  };
  // A JSON string at i (no unescaping: "type" and "hello" have nothing to escape); false if none.
  auto string_at = [&](std::string_view& out) {
    if (i >= prefix.size() || prefix[i] != '"') return false;
    size_t start = ++i;
    while (i < prefix.size() && prefix[i] != '"') i += prefix[i] == '\\' ? 2 : 1;
    if (i >= prefix.size()) return false;
    out = prefix.substr(start, i++ - start);
    return true;
  };
  skip_space();
  if (i >= prefix.size() || prefix[i++] != '{') return false;
  for (int member = 0; member < 8; ++member) {  // "type" among the first few members
    std::string_view key, value;
    skip_space();
    if (!string_at(key)) return false;
    skip_space();
    if (i >= prefix.size() || prefix[i++] != ':') return false;
    skip_space();
    if (key == "token") return true;
    if (key == "type") return string_at(value) && value == "hello";
    if (!string_at(value)) return false;  // only string members before "type" (user, token)
    skip_space();
    if (i >= prefix.size() || prefix[i++] != ',') return false;
  }
  return false;
}

std::string preview(std::string_view frame) {
  std::string s(frame.substr(0, 80));
  for (char& c : s) {
    if (static_cast<unsigned char>(c) < 0x20) c = '.';
  }
  return frame.size() > 80 ? s + "..." : s;
}

}  // namespace

const Format& article_format() {
  static const ArticleFormat format;
  return format;
}

std::string article_message_line(std::string_view user, std::string_view text) {
  // One message, one line: a newline or an escape sequence in the text (from either dialect) is
  // shown, never obeyed, so nobody can forge a second "[kim] ..." line or drive a terminal.
  std::string line;
  line.reserve(user.size() + text.size() + 4);
  line.append("[").append(visible(user)).append("] ").append(visible(text)).append("\n");
  return line;
}

void ArticleCodec::start(Session& session) {
  // The article's server broadcasts to every connection, including ones that never speak. Not
  // with --auth-secret: a connection hears nothing before its hello's token has been checked.
  if (session.authority() == nullptr) session.join(kLobby, /*want_reply=*/false);
}

FrameResult ArticleCodec::next_frame(std::string_view input) {
  bool was_discarding = framer_.discarding();
  FrameResult r = framer_.next(input);
  // An object over the limit begins: if it is a native client's hello (a huge token), the client
  // speaks the native dialect and is answered in it (on_bad_frame), not as the article's client.
  if (!was_discarding && framer_.discarding() && !decided_) {
    overlong_hello_ = begins_like_hello(input.substr(0, r.consumed));
  }
  return r;
}

bool ArticleCodec::refuse_unauthenticated(Session& session) {
  if (decided_ || session.authority() == nullptr) return false;
  // The article's dialect has no hello, so no token: one plain line (its clients print lines as
  // they come), then the close.
  static const reactor::SharedBytes line = std::make_shared<const std::string>(
      "authentication required: this server takes native clients with a token "
      "({\"type\":\"hello\",\"user\":NAME,\"token\":TOKEN}), not the article's dialect\n");
  decided_ = true;
  session.refuse_unauthenticated(line, "the article's dialect carries no token");
  return true;
}

std::unique_ptr<Codec> ArticleCodec::on_frame(Session& session, std::string_view frame) {
  Json j;
  ObjectProblem decoded = decode_object(frame, j, session.stats());
  if (decoded != ObjectProblem::kNone || !is_hello(j)) {
    if (refuse_unauthenticated(session)) return nullptr;
  }
  switch (decoded) {
    case ObjectProblem::kNone: break;
    case ObjectProblem::kBadUtf8: problem(session, "invalid UTF-8", frame); return nullptr;
    case ObjectProblem::kBadJson: problem(session, "malformed JSON", frame); return nullptr;
    case ObjectProblem::kTooDeep: problem(session, "JSON nested too deep", frame); return nullptr;
    case ObjectProblem::kNotObject: problem(session, "not a JSON object", frame); return nullptr;
  }
  if (!decided_) {
    // The TCP port's rule: a first object that is a hello makes the connection native.
    if (is_hello(j)) {
      if (!NativeCodec::greet(session, j)) return nullptr;  // still undecided: the client may try again
      forget_budget(session);
      return std::make_unique<NativeCodec>(session.limits().max_frame);
    }
    decided_ = true;  // confirmed: already a member of the lobby
  }
  const std::string* user = string_field(j, "user");
  const std::string* text = string_field(j, "text");
  if (user == nullptr || text == nullptr) {
    ++session.stats().errors_request;
    problem(session, "unknown type of message (needs string fields user and text)", frame);
    return nullptr;
  }
  if (!valid_article_name(*user)) {
    ++session.stats().errors_request;
    problem(session, "user must be 1 to 64 bytes without control characters", frame);
    return nullptr;
  }
  // Names in this dialect are whatever each message says. One that a named member holds is shown
  // marked, so nobody can speak as that member to the others.
  if (session.name_held(*user)) {
    session.publish(kLobby, *user + kArticleNameMark, *text);
  } else {
    session.publish(kLobby, *user, *text);  // always a member of the lobby here
  }
  return nullptr;
}

void ArticleCodec::on_bad_frame(Session& session, const FrameResult& r, std::string_view skipped) {
  if (std::exchange(overlong_hello_, false) && r.status != FrameStatus::kGarbage) {
    // A native hello over the limit: the native dialect's answer. With --auth-secret it carried no
    // token that could be checked, and the connection is refused as for a bad token.
    std::string why = r.status == FrameStatus::kLost
                          ? "hello never ended: closing the connection"
                          : "hello of " + std::to_string(r.frame_size) + " bytes is over the limit of " +
                                std::to_string(session.limits().max_frame);
    const char* code = session.authority() != nullptr ? "unauthorized" : "too_long";
    if (r.status == FrameStatus::kLost) {
      session.reply(NativeCodec::error_line(code, why));  // the stream is given up: the session closes it
    } else if (session.authority() != nullptr) {
      decided_ = true;
      session.refuse_unauthenticated(NativeCodec::error_line(code, why), why);
    } else {
      session.reply(NativeCodec::error_line(code, why));
    }
    return;
  }
  if (refuse_unauthenticated(session)) return;
  // kLost: the close says it.
  if (r.status == FrameStatus::kGarbage) problem(session, "bytes outside any JSON object skipped", skipped);
  if (r.status == FrameStatus::kTooLong) problem(session, "object over the size limit discarded", {});
}

void ArticleCodec::problem(Session& session, const char* what, std::string_view frame) {
  // The article's dialect has no error message: the server logs (as the article's server prints),
  // counts, and goes on with the next object. Within a budget per connection and per reactor:
  // 1 MB of "{}" is 500,000 problems, not 500,000 lines.
  reactor::LogLimiter& budget =
      log_budgets_of_this_reactor().try_emplace(session.id(), kLogBurst, kLogWindow).first->second;
  uint64_t left_out = 0;
  if (!budget.allow(&left_out) || !problems_of_this_reactor().allow()) return;
  LOG_INFO("connection %llu (article dialect): %s%s%s%s", static_cast<unsigned long long>(session.id()), what,
           frame.empty() ? "" : ": ", preview(frame).c_str(), reactor::more_like_it(left_out).c_str());
}

void ArticleCodec::on_close(Session& session) { forget_budget(session); }

void ArticleCodec::forget_budget(Session& session) {
  auto& budgets = log_budgets_of_this_reactor();
  if (auto it = budgets.find(session.id()); it != budgets.end()) {
    if (it->second.suppressed() > 0 && problems_of_this_reactor().allow()) {
      LOG_INFO("connection %llu (article dialect): %llu more problems like those were not logged",
               static_cast<unsigned long long>(session.id()), static_cast<unsigned long long>(it->second.suppressed()));
    }
    budgets.erase(it);
  }
}

}  // namespace chat
