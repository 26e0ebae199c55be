// Connection registration (as IRC calls it): CAP, PASS, AUTHENTICATE (SASL PLAIN), NICK, USER, the
// welcome, QUIT.
#include "chat/frontends/irc/irc.h"

#include <cctype>

#include "chat/core/names.h"
#include "chat/frontends/irc/lines.h"
#include "chat/ops/auth.h"
#include "chat/session/session.h"

namespace chat {

// ---- Registration -------------------------------------------------------------------------------

void IrcCodec::cap(Session& session, const irc::Message& m) {
  static constexpr std::string_view kOffered =
      "message-tags server-time echo-message batch draft/chathistory multi-prefix userhost-in-names";
  std::string sub = m.params[0];
  for (char& ch : sub) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  std::string head = ":" + options_.server_name + " CAP " + target(session) + " ";
  if (sub == "LS") {
    if (!registered_) negotiating_ = true;
    std::string offered(kOffered);
    if (session.authority() != nullptr) {
      // CAP LS 302 and later carry values: the mechanisms SASL takes.
      bool values = m.params.size() > 1 && std::strtol(m.params[1].c_str(), nullptr, 10) >= 302;
      offered += values ? " sasl=PLAIN" : " sasl";
    }
    return send_line(session, head + "LS :" + offered + "\r\n");
  }
  if (sub == "LIST") {
    std::string on;
    if (caps_ & kMessageTags) on += "message-tags ";
    if (caps_ & kServerTime) on += "server-time ";
    if (caps_ & kEchoMessage) on += "echo-message ";
    if (caps_ & kBatch) on += "batch ";
    if (caps_ & kChathistory) on += "draft/chathistory ";
    if (caps_ & kSasl) on += "sasl ";
    if (caps_ & kMultiPrefix) on += "multi-prefix ";
    if (caps_ & kUserhostInNames) on += "userhost-in-names ";
    if (!on.empty()) on.pop_back();
    return send_line(session, head + "LIST :" + on + "\r\n");
  }
  if (sub == "REQ") {
    if (!registered_) negotiating_ = true;
    std::string asked = m.params.size() > 1 ? m.params[1] : "";
    uint16_t caps = caps_;
    bool ok = true;
    size_t pos = 0;
    while (pos < asked.size()) {
      size_t end = asked.find(' ', pos);
      std::string_view name = std::string_view(asked).substr(pos, end == std::string::npos ? std::string::npos : end - pos);
      pos = end == std::string::npos ? asked.size() : end + 1;
      if (name.empty()) continue;
      bool off = name[0] == '-';
      if (off) name.remove_prefix(1);
      uint16_t bit = name == "message-tags" ? kMessageTags
                    : name == "server-time" ? kServerTime
                    : name == "echo-message" ? kEchoMessage
                    : name == "batch" ? kBatch
                    : name == "draft/chathistory" ? kChathistory
                    : name == "sasl" && session.authority() != nullptr ? kSasl
                    : name == "multi-prefix" ? kMultiPrefix
                    : name == "userhost-in-names" ? kUserhostInNames
                                             : 0;
      if (bit == 0) {
        ok = false;
        break;
      }
      caps = off ? static_cast<uint16_t>(caps & ~bit) : static_cast<uint16_t>(caps | bit);
    }
    IrcTags tags = (caps & kMessageTags) ? IrcTags::kAll : (caps & kServerTime) ? IrcTags::kTime : IrcTags::kNone;
    // A member's format is fixed while it is in a room (the owners count members per format).
    if (ok && tags != tags_ && !session.rooms().empty()) ok = false;
    if (!ok) return send_line(session, head + "NAK :" + asked + "\r\n");
    caps_ = caps;
    if (tags != tags_) {
      tags_ = tags;
      session.refresh_format();
    }
    return send_line(session, head + "ACK :" + asked + "\r\n");
  }
  if (sub == "END") {
    negotiating_ = false;
    return try_register(session);
  }
  numeric(session, "410", echoed(sub, 32) + " :Invalid CAP command");
}

void IrcCodec::pass(Session& session, const irc::Message& m) {
  if (session.authority() != nullptr) {
    // --auth-secret: the password is a token (its name must be the nick: try_register checks).
    std::string why;
    if (!accept_token(session, m.params[0], {}, why)) unauthorized(session, why);
    return;
  }
  pass_ok_ = !options_.password.empty() && m.params[0] == options_.password;
}

bool IrcCodec::accept_token(Session& session, std::string_view token, std::string_view user, std::string& why) {
  TokenAuthority::Verdict v = session.authority()->verify(token, TokenAuthority::now());
  if (!v.ok()) {
    why = TokenAuthority::describe(v.result);
    return false;
  }
  if (!user.empty() && v.user != user) {
    why = "the token is for another user";
    return false;
  }
  rare().account = std::move(v.user);
  pass_ok_ = true;
  return true;
}

void IrcCodec::unauthorized(Session& session, const std::string& why) {
  std::string lines = numeric_line(session, "464", ":Password incorrect (" + why + ")");
  lines += "ERROR :Closing Link: " + target(session) + " (Unauthorized: " + why + ")\r\n";
  pending_.clear();
  session.refuse_unauthenticated(std::make_shared<const std::string>(std::move(lines)), why);
}

// IRCv3 SASL 3.1, mechanism PLAIN: AUTHENTICATE PLAIN, "AUTHENTICATE +", then the base64 of
// authzid NUL authcid NUL password in chunks of 400 ("+" ends a message of a multiple of 400). The
// password is a token for authcid; authzid is empty or authcid.
void IrcCodec::authenticate(Session& session, const irc::Message& m) {
  // Once per connection, before registration. A PASS with a token does not count: clients (irc-framework
  // among them) send their password both ways, and wait for SASL's answer before CAP END.
  if (registered_ || (rare_ && rare_->sasl_done)) {
    return numeric(session, "907", ":You have already authenticated using SASL");
  }
  if (!(caps_ & kSasl)) return numeric(session, "904", ":SASL authentication failed (CAP REQ :sasl first)");
  const std::string& arg = m.params[0];
  Rare& r = rare();
  if (arg == "*") {
    r.sasl.clear();
    r.sasl_started = false;
    return numeric(session, "906", ":SASL authentication aborted");
  }
  if (!r.sasl_started) {
    std::string mechanism = arg;
    for (char& ch : mechanism) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    if (mechanism != "PLAIN") {
      numeric(session, "908", "PLAIN :are available SASL mechanisms");
      return sasl_failed(session, "904", "unsupported mechanism");
    }
    r.sasl_started = true;
    return send_line(session, "AUTHENTICATE +\r\n");
  }
  if (arg != "+") {
    if (arg.size() > kSaslChunk || r.sasl.size() + arg.size() > kMaxSasl) {
      r.sasl.clear();
      r.sasl_started = false;
      return sasl_failed(session, "905", "SASL message too long");
    }
    r.sasl += arg;
    if (arg.size() == kSaslChunk) return;  // more to come
  }
  sasl_plain(session);
}

void IrcCodec::sasl_plain(Session& session) {
  std::string message;
  bool decoded = base64_decode(rare().sasl, message);
  rare().sasl.clear();
  rare().sasl_started = false;
  size_t a = decoded ? message.find('\0') : std::string::npos;
  size_t b = a == std::string::npos ? a : message.find('\0', a + 1);
  if (b == std::string::npos || message.find('\0', b + 1) != std::string::npos) {
    return sasl_failed(session, "904", "malformed PLAIN message");
  }
  std::string_view all(message);
  std::string_view authzid = all.substr(0, a), authcid = all.substr(a + 1, b - a - 1), password = all.substr(b + 1);
  if (authcid.empty() || (!authzid.empty() && authzid != authcid)) {
    return sasl_failed(session, "904", "authzid must be empty or the authcid");
  }
  std::string why;
  if (!accept_token(session, password, authcid, why)) return sasl_failed(session, "904", why);
  const std::string& account = rare().account;
  const std::string& nick = asked_nick().empty() ? account : asked_nick();
  numeric(session, "900", nick + "!" + nick + "@irc " + account + " :You are now logged in as " + account);
  numeric(session, "903", ":SASL authentication successful");
  rare().sasl_done = true;
}

void IrcCodec::sasl_failed(Session& session, const char* code, const std::string& why) {
  numeric(session, code, std::string(std::string_view(code) == "905" ? ":SASL message too long" : ":SASL authentication failed") +
                             " (" + why + ")");
  if (++rare().sasl_failures >= kMaxSaslFailures) unauthorized(session, "too many failed SASL attempts");
}

void IrcCodec::nick(Session& session, const irc::Message& m) {
  if (m.params.empty() || m.params[0].empty()) return numeric(session, "431", ":No nickname given");
  const std::string& wanted = m.params[0];
  if (!valid_irc_nick(wanted)) {
    ++session.stats().errors_request;
    return numeric(session, "432", echoed(wanted, 32) + " :Erroneous nickname");
  }
  if (!registered_) {
    if (session.name_held(wanted)) return numeric(session, "433", wanted + " :Nickname is already in use");
    rare().nick = wanted;
    return try_register(session);
  }
  const std::string& current = session.name();
  if (wanted == current) return;
  // --auth-secret: the name is the token's, for the connection's life (as a native member's is).
  if (session.authority() != nullptr) {
    return numeric(session, "902", ":You must use a nick assigned to you (the name your token is for)");
  }
  // The same name in another case is still this member's (names are compared without case).
  bool same = ShardTable::fold_name(wanted) == ShardTable::fold_name(current);
  if (!same) {
    auto held = session.find_name(current);
    if (!session.claim_name(wanted, "irc", held ? held->user : std::string(), held ? held->realname : std::string())) {
      return numeric(session, "433", wanted + " :Nickname is already in use");
    }
  }
  send_line(session, self_source(session) + " NICK :" + wanted + "\r\n");
  session.rename(wanted);
  publish_flags(session);
}

void IrcCodec::user(Session& session, const irc::Message& m) {
  // Kept (converted to UTF-8 with the rest of the line, on_frame) and shown by WHO and WHOIS; the
  // '~' says no ident server confirmed the user name, as IRC servers write it.
  std::string user = "~" + utf8_prefix(m.params[0], kUserLength - 1);
  for (char& ch : user) {
    if (static_cast<unsigned char>(ch) <= 0x20 || ch == 0x7f || ch == '@' || ch == '!' || ch == '*' || ch == '?') ch = '_';
  }
  rare().user = std::move(user);
  rare().realname = utf8_prefix(m.params[3], kRealnameLength);
  user_given_ = true;
  try_register(session);
}

void IrcCodec::try_register(Session& session) {
  if (registered_ || negotiating_ || asked_nick().empty() || !user_given_) return;
  std::string nick = rare().nick;
  if (session.authority() != nullptr) {
    if (!pass_ok_) return unauthorized(session, "authentication required: PASS <token> or SASL PLAIN");
    if (rare().account != nick) return unauthorized(session, "the token is for another nick");
  } else if (!options_.password.empty() && !pass_ok_) {
    numeric(session, "464", ":Password incorrect");
    return close_with_error(session, "Bad password", reactor::CloseCode::kProtocol);
  }
  if (!session.claim_name(nick, "irc", rare().user, rare().realname)) {
    numeric(session, "433", nick + " :Nickname is already in use");
    rare().nick.clear();
    return;
  }
  session.set_name(nick);
  if (session.authority() != nullptr) ++session.stats().auth_accepted;
  rare().nick.clear();
  rare().account.clear();
  rare().user.clear();
  rare().realname.clear();
  rare().sasl.clear();
  rare().sasl_started = false;
  rare().sasl_done = false;
  rare().sasl_failures = 0;
  trim_rare();
  registered_ = true;
  welcome(session);
}

void IrcCodec::welcome(Session& session) {
  const std::string& n = session.name();
  const std::string& server = options_.server_name;
  numeric(session, "001", ":Welcome to the " + options_.network + " IRC network " + n + "!" + n + "@irc");
  numeric(session, "002", ":Your host is " + server + ", running chat-server");
  numeric(session, "003", ":This server speaks IRC beside native JSON lines, WebSocket and the article's dialect");
  numeric(session, "004", server + " chat-server iow bklimnostv");
  // ISUPPORT, at most 12 tokens a line (a line has 15 parameters at most: the nick, the tokens and
  // the trailing text).
  const std::vector<std::string> tokens = {
      "AWAYLEN=200",
      "CASEMAPPING=ascii",
      "CHANLEN=65",
      "CHANLIMIT=#:" + std::to_string(session.limits().max_rooms),
      "CHANMODES=b,k,l,imnst",
      "CHANTYPES=#",
      "CHATHISTORY=" + std::to_string(kMaxHistory),
      "KICKLEN=300",
      "MAXTARGETS=" + std::to_string(kMaxTargets),
      "MODES=" + std::to_string(kMaxModes),
      "MSGREFTYPES=msgid",
      "NETWORK=" + options_.network,
      "NICKLEN=32",
      "PREFIX=(ov)@+",
      "TARGMAX=PRIVMSG:" + std::to_string(kMaxTargets) + ",NOTICE:" + std::to_string(kMaxTargets),
      "TOPICLEN=" + std::to_string(kTopicLength),
      "USERLEN=" + std::to_string(kUserLength),
  };
  constexpr size_t kTokensPerLine = 12;
  for (size_t i = 0; i < tokens.size(); i += kTokensPerLine) {
    std::string line;
    for (size_t k = i; k < std::min(tokens.size(), i + kTokensPerLine); ++k) line += tokens[k] + " ";
    numeric(session, "005", line + ":are supported by this server");
  }
  lusers(session);
  motd(session);
}

void IrcCodec::quit(Session& session, const irc::Message& m) {
  std::string said = m.params.empty() ? std::string() : m.params[0];
  rare().quit_reason = said.empty() ? "Quit" : "Quit: " + said.substr(0, 300);
  close_with_error(session, rare().quit_reason, reactor::CloseCode::kPeerClosed);
}

}  // namespace chat
