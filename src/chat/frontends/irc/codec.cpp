// The IRC codec's frame: lines in, numerics out, and the commands dispatched from one table.
#include "chat/frontends/irc/irc.h"

#include <algorithm>
#include <span>

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
    : options_(options), since_(now) {}

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

namespace {

// A handler of the table: a member function of the codec that takes the command's message.
template <void (IrcCodec::*F)(Session&, const irc::Message&)>
void call(IrcCodec& codec, Session& session, const irc::Message& m) {
  (codec.*F)(session, m);
}

}  // namespace

std::span<const IrcCodec::Command> IrcCodec::commands() {
  using C = Command;
  static const Command table[] = {
      // Registration, and what may come before it.
      {"CAP", 1, C::kAny, 0, &call<&IrcCodec::cap>},
      {"PASS", 1, C::kOnce, 0, &call<&IrcCodec::pass>},
      {"AUTHENTICATE", 1, C::kAny, C::kNeedsAuthority, &call<&IrcCodec::authenticate>},
      {"NICK", 0, C::kAny, 0, &call<&IrcCodec::nick>},  // none: 431
      {"USER", 4, C::kOnce, C::kNonEmpty, &call<&IrcCodec::user>},
      {"QUIT", 0, C::kAny, 0, &call<&IrcCodec::quit>},
      {"PING", 1, C::kAny, 0, &call<&IrcCodec::ping>},
      {"PONG", 0, C::kAny, 0, [](IrcCodec&, Session&, const irc::Message&) {}},  // a sign of life (on_frame)
      // Channels and messages.
      {"PRIVMSG", 0, C::kRegistered, 0, [](IrcCodec& c, Session& s, const irc::Message& m) { c.message(s, m, false); }},
      {"NOTICE", 0, C::kRegistered, 0, [](IrcCodec& c, Session& s, const irc::Message& m) { c.message(s, m, true); }},
      {"JOIN", 1, C::kRegistered, 0, &call<&IrcCodec::join>},
      {"PART", 1, C::kRegistered, 0, &call<&IrcCodec::part>},
      {"TOPIC", 1, C::kRegistered, 0, &call<&IrcCodec::topic>},
      {"KICK", 2, C::kRegistered, 0, &call<&IrcCodec::kick>},
      {"INVITE", 2, C::kRegistered, 0, &call<&IrcCodec::invite>},
      {"MODE", 1, C::kRegistered, 0, &call<&IrcCodec::mode>},
      // Queries.
      {"NAMES", 0, C::kRegistered, 0, &call<&IrcCodec::names>},
      {"WHO", 0, C::kRegistered, 0, &call<&IrcCodec::who>},
      {"WHOIS", 0, C::kRegistered, 0, &call<&IrcCodec::whois>},  // none: 431
      {"WHOWAS", 0, C::kRegistered, 0, &call<&IrcCodec::whowas>},  // none: 431
      {"AWAY", 0, C::kRegistered, 0, &call<&IrcCodec::away>},
      {"ISON", 1, C::kRegistered, 0, &call<&IrcCodec::ison>},
      {"USERHOST", 1, C::kRegistered, 0, &call<&IrcCodec::userhost>},
      {"LIST", 0, C::kRegistered, 0, &call<&IrcCodec::list>},
      {"LUSERS", 0, C::kRegistered, 0, [](IrcCodec& c, Session& s, const irc::Message&) { c.lusers(s); }},
      {"MOTD", 0, C::kRegistered, 0, [](IrcCodec& c, Session& s, const irc::Message&) { c.motd(s); }},
      {"VERSION", 0, C::kRegistered, 0, &call<&IrcCodec::version>},
      {"TIME", 0, C::kRegistered, 0, &call<&IrcCodec::time_now>},
      {"INFO", 0, C::kRegistered, 0, &call<&IrcCodec::info>},
      // Server operators.
      {"OPER", 2, C::kRegistered, 0, &call<&IrcCodec::oper>},
      {"KILL", 2, C::kRegistered, 0, &call<&IrcCodec::kill>},
      {"WALLOPS", 1, C::kRegistered, C::kNonEmpty, &call<&IrcCodec::wallops>},
      // History.
      {"CHATHISTORY", 0, C::kRegistered, 0, &call<&IrcCodec::chathistory>},  // too few: FAIL NEED_MORE_PARAMS
  };
  return table;
}

const IrcCodec::Command* IrcCodec::find_command(std::string_view name) {
  for (const Command& c : commands()) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

void IrcCodec::command(Session& session, const irc::Message& m) {
  const Command* c = find_command(m.command);
  if (!registered_ && (c == nullptr || c->when == Command::kRegistered)) {
    ++session.stats().errors_request;
    return numeric(session, "451", ":You have not registered");
  }
  if (c == nullptr || ((c->flags & Command::kNeedsAuthority) && session.authority() == nullptr)) {
    ++session.stats().errors_request;
    return numeric(session, "421", m.command.substr(0, 32) + " :Unknown command");
  }
  if (c->when == Command::kOnce && registered_) return numeric(session, "462", ":You may not reregister");
  bool enough = m.params.size() >= c->min_params;
  if (enough && (c->flags & Command::kNonEmpty) && c->min_params > 0) {
    enough = !m.params.front().empty() && !m.params[c->min_params - 1].empty();
  }
  if (!enough) return numeric(session, "461", std::string(c->name) + " :Not enough parameters");
  c->handler(*this, session, m);
}

void IrcCodec::ping(Session& session, const irc::Message& m) {
  // After every earlier answer, also those from rooms' owners on other shards (JOIN's, NAMES'):
  // a client may PING to know it has them all.
  session.after_earlier_answers(std::make_shared<const std::string>(
      ":" + options_.server_name + " PONG " + options_.server_name + " :" + m.params[0] + "\r\n"));
}

void IrcCodec::version(Session& session, const irc::Message&) {
  numeric(session, "351", "chat-server " + options_.server_name + " :Reactor Chat");
}

void IrcCodec::time_now(Session& session, const irc::Message&) {
  numeric(session, "391", options_.server_name + " :" + iso_time(now_ms()));
}

void IrcCodec::info(Session& session, const irc::Message&) {
  numeric(session, "371", ":chat-server, Reactor Chat: one reactor per core, rooms over IRC, native JSON");
  numeric(session, "371", ":lines, WebSocket and the article's dialect");
  numeric(session, "374", ":End of INFO list");
}

}  // namespace chat
