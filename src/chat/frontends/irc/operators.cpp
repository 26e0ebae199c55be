// Server operators: OPER, KILL, WALLOPS, and the passwords of --irc-operators-file.
#include "chat/frontends/irc/irc.h"

#include <memory>

#include <crypt.h>
#include <openssl/crypto.h>

#include "chat/frontends/irc/lines.h"
#include "chat/session/session.h"

namespace chat {

bool irc_hash_usable(const std::string& hash) {
  if (hash.size() < 4 || hash[0] != '$') return false;
  auto data = std::make_unique<crypt_data>();
  const char* out = crypt_r("probe", hash.c_str(), data.get());
  return out != nullptr && out[0] == '$';
}

bool irc_password_matches(const std::string& password, const std::string& hash) {
  if (!irc_hash_usable(hash)) return false;
  auto data = std::make_unique<crypt_data>();
  const char* out = crypt_r(password.c_str(), hash.c_str(), data.get());
  if (out == nullptr) return false;
  std::string_view got(out);
  return got.size() == hash.size() && CRYPTO_memcmp(got.data(), hash.data(), hash.size()) == 0;
}

void IrcCodec::oper(Session& session, const irc::Message& m) {
  if (options_.operators.empty()) return numeric(session, "491", ":No O-lines for your host");
  const IrcOperator* found = nullptr;
  for (const IrcOperator& o : options_.operators) {
    if (o.name == m.params[0]) found = &o;
  }
  // The hash is checked even for a name that is not an operator's: the answer takes as long.
  const std::string& hash = found ? found->hash : options_.operators.front().hash;
  bool ok = irc_password_matches(m.params[1], hash) && found != nullptr;
  if (!ok) {
    ++session.stats().errors_request;
    numeric(session, "464", ":Password incorrect");
    if (++rare().oper_failures >= kMaxOperFailures) close_with_error(session, "Too many failed OPER attempts", reactor::CloseCode::kProtocol);
    return;
  }
  if (rare_) rare_->oper_failures = 0;
  trim_rare();
  bool was = oper();
  caps_ = static_cast<uint16_t>(caps_ | kOper);
  publish_flags(session);
  numeric(session, "381", ":You are now an IRC operator");
  if (!was) send_line(session, self_source(session) + " MODE " + session.name() + " :+o\r\n");
}

void IrcCodec::kill(Session& session, const irc::Message& m) {
  if (!oper()) return numeric(session, "481", ":Permission Denied- You're not an IRC operator");
  std::string target = m.params[0];
  DirectMessage dm{.from = session.name(), .front = "irc", .to = target, .text = m.params[1].substr(0, 300), .automatic = false,
                   .invite = false, .ts_ms = now_ms(), .kill = true, .bulletin = false};
  session.ask_direct(std::move(dm), [this, target](Session& s, const DirectResult& r) {
    if (r.status != DirectResult::kNoSuchName) return;
    s.reply(std::make_shared<const std::string>(numeric_line(s, "401", echoed(target, 32) + " :No such nick/channel")));
  });
}

void IrcCodec::wallops(Session& session, const irc::Message& m) {
  if (!oper()) return numeric(session, "481", ":Permission Denied- You're not an IRC operator");
  DirectMessage dm{.from = session.name(), .front = "irc", .to = {}, .text = m.params[0], .automatic = false, .invite = false,
                   .ts_ms = now_ms(), .kill = false, .bulletin = true};
  session.tell_everyone(dm);
}

reactor::SharedBytes IrcCodec::killed(Session& session, const std::string& by, const std::string& reason) {
  rare().quit_reason = "Killed (" + by + " (" + reason + "))";
  pending_.clear();
  return std::make_shared<const std::string>(
      within_limit("ERROR :Closing Link: " + target(session) + " (" + rare().quit_reason + ")\r\n"));
}

void IrcCodec::publish_flags(Session& session) {
  session.set_name_flags(!away().empty(), oper());
}

}  // namespace chat
