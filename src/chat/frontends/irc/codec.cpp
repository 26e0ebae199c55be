// The IRC codec's frame: lines in, numerics out, and the commands dispatched from one table.
#include "chat/frontends/irc/irc.h"

#include <algorithm>

#include "chat/frontends/irc/lines.h"
#include "chat/session/session.h"

namespace chat {

// Every byte of an IrcCodec is paid by every idle IRC member: within 120 bytes it takes one 128-byte
// chunk of malloc's (what is rare, a nick before registration or an away message, is apart).
static_assert(sizeof(IrcCodec) <= 120);

const std::string& IrcCodec::asked_nick() const {
  static const std::string none;
  return rare_ ? rare_->nick : none;
}

std::string IrcCodec::target(Session& session) const {
  if (registered_) return session.name();
  return asked_nick().empty() ? std::string("*") : asked_nick();
}

IrcCodec::IrcCodec(const IrcOptions& options, reactor::Clock::time_point now)
    : options_(options), tokens_(static_cast<float>(options.flood_burst)), since_(now), filled_(now) {}

FrameResult IrcCodec::next_frame(std::string_view input) {
  size_t max_tags = (caps_ & kMessageTags) ? irc::kMaxClientTags : 0;
  irc::LineResult r = irc::next_line(input, irc::kMaxBody, max_tags, line_state_);
  switch (r.status) {
    case irc::LineResult::kLine: return {FrameStatus::kFrame, r.consumed, r.line};
    case irc::LineResult::kNeedMore: return {FrameStatus::kNeedMore, r.consumed, {}};
    case irc::LineResult::kTooLong: return {FrameStatus::kTooLong, r.consumed, {}, irc::kMaxBody};
  }
  return {FrameStatus::kNeedMore, 0, {}};
}

void IrcCodec::on_bad_frame(Session& session, const FrameResult& r, std::string_view) {
  if (r.status == FrameStatus::kTooLong) {
    numeric(session, "417", ":Input line was too long (at most 512 bytes, tags aside)");
  }
}

std::string IrcCodec::numeric_line(Session& session, std::string_view code, std::string_view rest) const {
  std::string line;
  std::string target = this->target(session);
  line.reserve(options_.server_name.size() + target.size() + rest.size() + 10);
  line += ':';
  line += options_.server_name;
  line += ' ';
  line += code;
  line += ' ';
  line += target;
  line += ' ';
  line += rest;
  line += "\r\n";
  return within_limit(std::move(line));
}

void IrcCodec::numeric(Session& session, std::string_view code, std::string_view rest) {
  session.reply(std::make_shared<const std::string>(numeric_line(session, code, rest)));
}

void IrcCodec::send_line(Session& session, std::string line) {
  session.reply(std::make_shared<const std::string>(within_limit(std::move(line))));
}

std::string IrcCodec::self_source(Session& session) const {
  const std::string& n = session.name();
  return ":" + n + "!" + n + "@irc";
}

reactor::SharedBytes IrcCodec::going_away(Session&, bool restart) {
  // What IRC servers say when they go; clients reconnect on it.
  return std::make_shared<const std::string>(restart ? "ERROR :Closing Link: (Server draining: please reconnect)\r\n"
                                                     : "ERROR :Closing Link: (Server shutting down)\r\n");
}

void IrcCodec::close_with_error(Session& session, const std::string& reason, reactor::CloseCode code) {
  if (rare().quit_reason.empty()) rare().quit_reason = reason;
  std::string who = target(session);
  send_line(session, "ERROR :Closing Link: " + who + " (" + reason + ")\r\n");
  pending_.clear();
  session.depart();
  session.close_after_flush(code, reason);
}

std::unique_ptr<Codec> IrcCodec::on_frame(Session& session, std::string_view frame) {
  auto now = reactor::Clock::now();
  since_ = now;
  ping_sent_ = {};
  if (frame.find_first_not_of(' ') == std::string_view::npos) return nullptr;  // empty lines are ignored
  // IRC clients still send Latin-1: taken as such and relayed as UTF-8 (docs/PROTOCOL.md).
  std::string converted;
  if (!irc::valid_utf8(frame)) {
    converted = irc::utf8_or_latin1(frame);
    frame = converted;
  }
  irc::Message m;
  irc::ParseError e = irc::parse(frame, m);
  if (e == irc::ParseError::kBadCommand) {
    ++session.stats().errors_request;
    std::string cmd(frame.substr(0, std::min<size_t>(frame.find(' '), 32)));
    if (!cmd.empty() && (cmd[0] == '@' || cmd[0] == ':')) cmd = "*";
    numeric(session, "421", echoed(cmd, 32) + " :Unknown command");
    return nullptr;
  }
  if (e != irc::ParseError::kNone) {
    ++session.stats().errors_request;
    send_line(session, ":" + options_.server_name + " NOTICE " + (registered_ ? session.name() : "*") +
                           " :Line ignored: " + irc::to_string(e) + "\r\n");
    return nullptr;
  }
  command(session, m);
  return nullptr;
}

void IrcCodec::command(Session& session, const irc::Message& m) {
  const std::string& c = m.command;
  if (c == "PING") {
    if (m.params.empty()) return numeric(session, "461", "PING :Not enough parameters");
    // After every earlier answer, also those from rooms' owners on other shards (JOIN's, NAMES'):
    // a client may PING to know it has them all.
    return session.after_earlier_answers(std::make_shared<const std::string>(
        ":" + options_.server_name + " PONG " + options_.server_name + " :" + m.params[0] + "\r\n"));
  }
  if (c == "PONG") return;  // any line is a sign of life (on_frame)
  if (c == "CAP") return cap(session, m);
  if (c == "PASS") return pass(session, m);
  if (c == "AUTHENTICATE") return authenticate(session, m);
  if (c == "NICK") return nick(session, m);
  if (c == "USER") return user(session, m);
  if (c == "QUIT") return quit(session, m);
  if (!registered_) {
    ++session.stats().errors_request;
    return numeric(session, "451", ":You have not registered");
  }
  if (c == "PRIVMSG" || c == "NOTICE") return message(session, m, c == "NOTICE");
  if (c == "JOIN") return join(session, m);
  if (c == "PART") return part(session, m);
  if (c == "NAMES") return names(session, m);
  if (c == "WHO") return who(session, m);
  if (c == "WHOIS") return whois(session, m);
  if (c == "AWAY") return away(session, m);
  if (c == "ISON") return ison(session, m);
  if (c == "USERHOST") return userhost(session, m);
  if (c == "WHOWAS") return whowas(session, m);
  if (c == "OPER") return oper(session, m);
  if (c == "KILL") return kill(session, m);
  if (c == "WALLOPS") return wallops(session, m);
  if (c == "LIST") return list(session, m);
  if (c == "MODE") return mode(session, m);
  if (c == "TOPIC") return topic(session, m);
  if (c == "KICK") return kick(session, m);
  if (c == "CHATHISTORY") return chathistory(session, m);
  if (c == "INVITE") return invite(session, m);
  if (c == "LUSERS") return lusers(session);
  if (c == "MOTD") return motd(session);
  if (c == "VERSION") {
    numeric(session, "351", "chat-server " + options_.server_name + " :Reactor Chat");
    return;
  }
  if (c == "TIME") return numeric(session, "391", options_.server_name + " :" + iso_time(now_ms()));
  if (c == "INFO") {
    numeric(session, "371", ":chat-server, Reactor Chat: one reactor per core, rooms over IRC, native JSON");
    numeric(session, "371", ":lines, WebSocket and the article's dialect");
    return numeric(session, "374", ":End of INFO list");
  }
  ++session.stats().errors_request;
  numeric(session, "421", c.substr(0, 32) + " :Unknown command");
}

}  // namespace chat
