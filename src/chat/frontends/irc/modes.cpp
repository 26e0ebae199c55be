#include "chat/frontends/irc/modes.h"

#include <cstdlib>

#include "chat/frontends/irc/irc.h"
#include "chat/frontends/irc/lines.h"
#include "chat/session/session.h"

namespace chat {
namespace {

struct Letter {
  RoomMode mode;
  char letter;
};
constexpr Letter kLetters[] = {
    {RoomMode::kInviteOnly, 'i'}, {RoomMode::kKey, 'k'},         {RoomMode::kLimit, 'l'},
    {RoomMode::kModerated, 'm'},  {RoomMode::kNoExternal, 'n'},  {RoomMode::kSecret, 's'},
    {RoomMode::kTopicLocked, 't'}, {RoomMode::kBan, 'b'},        {RoomMode::kOperator, 'o'},
    {RoomMode::kVoice, 'v'},
};

}  // namespace

char irc_mode_letter(RoomMode mode) {
  for (const Letter& l : kLetters) {
    if (l.mode == mode) return l.letter;
  }
  return 0;
}

RoomMode irc_room_mode(char letter) {
  for (const Letter& l : kLetters) {
    if (l.letter == letter) return l.mode;
  }
  return RoomMode::kUnknown;
}

std::string irc_channel_modes(const RoomPolicy& policy, bool show_key) {
  std::string flags = "+", params;
  if (policy.invite_only) flags += 'i';
  if (!policy.key.empty()) {
    flags += 'k';
    params += " ";
    params += show_key ? policy.key : "*";
  }
  if (policy.limit > 0) {
    flags += 'l';
    params += " " + std::to_string(policy.limit);
  }
  if (policy.moderated) flags += 'm';
  if (policy.no_external) flags += 'n';
  if (policy.secret) flags += 's';
  if (policy.topic_locked) flags += 't';
  return flags + params;
}

std::string irc_mode_changes(const std::vector<ModeChange>& changes) {
  std::string flags, params;
  char sign = 0;
  for (const ModeChange& c : changes) {
    char s = c.add ? '+' : '-';
    if (s != sign) flags += (sign = s);
    flags += irc_mode_letter(c.mode);
    std::string param;
    switch (c.mode) {
      case RoomMode::kBan: param = irc_ban_mask(c.ban); break;
      case RoomMode::kKey: param = c.add ? c.param : "*"; break;
      case RoomMode::kLimit:
      case RoomMode::kOperator:
      case RoomMode::kVoice: param = c.param; break;
      default: break;
    }
    if (!param.empty()) params += " " + param;
  }
  return flags + params;
}

std::string irc_prefix(const MemberModes& modes, bool multi_prefix) {
  std::string p;
  if (modes.op) p += '@';
  if (modes.voice && (p.empty() || multi_prefix)) p += '+';
  return p;
}

BanMask irc_ban(std::string_view mask) {
  irc::Mask m = irc::parse_mask(mask);
  return BanMask{std::move(m.nick), std::move(m.user), std::move(m.host)};
}

std::string irc_ban_mask(const BanMask& ban) { return irc::to_string(irc::Mask{ban.name, ban.user, ban.host}); }

IrcModeParse irc_parse_mode_changes(const std::vector<std::string>& params, const std::string& chan, size_t max) {
  IrcModeParse out;
  if (params.size() < 2) return out;
  bool add = true;
  size_t next_param = 2;
  for (char c : params[1]) {
    if (c == '+' || c == '-') {
      add = c == '+';
      continue;
    }
    RoomMode mode = irc_room_mode(c);
    bool takes = mode == RoomMode::kOperator || mode == RoomMode::kVoice || mode == RoomMode::kBan ||
                 (add && (mode == RoomMode::kKey || mode == RoomMode::kLimit));
    ModeChange change{mode, add, {}, {}};
    if (mode == RoomMode::kUnknown) change.param.assign(1, c);
    if (takes) {
      if (next_param >= params.size()) {
        if (mode == RoomMode::kBan) continue;  // a ban list query inside changes: nothing to change
        out.errors.emplace_back("461", "MODE :Not enough parameters (" + std::string(add ? "+" : "-") + c + ")");
        continue;
      }
      change.param = params[next_param++];
      // A key is one word; a limit a positive number (Modern IRC: ERR_INVALIDKEY, ERR_INVALIDMODEPARAM).
      if (mode == RoomMode::kKey && (change.param.empty() || change.param.find_first_of(" ,") != std::string::npos)) {
        out.errors.emplace_back("525", chan + " :Key is not well-formed");
        continue;
      }
      if (mode == RoomMode::kLimit) {
        bool digits = !change.param.empty() && change.param.size() <= 9 &&
                      change.param.find_first_not_of("0123456789") == std::string::npos;
        if (!digits || std::strtoul(change.param.c_str(), nullptr, 10) == 0) {
          out.errors.emplace_back("696", chan + " l " + echoed(change.param, 32) + " :Invalid limit (a positive number)");
          continue;
        }
      }
      if (mode == RoomMode::kBan) {
        change.ban = irc_ban(change.param);
        change.param.clear();
      }
    } else if (mode == RoomMode::kKey && !add && next_param < params.size()) {
      ++next_param;  // -k may name the key
    }
    if (out.changes.size() < max) out.changes.push_back(std::move(change));
  }
  return out;
}

// ---- MODE: a channel's modes and its members' roles, and a member's own user modes ----------------

void IrcCodec::user_mode(Session& session, const irc::Message& m) {
  if (ShardTable::fold_name(m.params[0]) != ShardTable::fold_name(session.name())) {
    return numeric(session, "502", ":Can't change mode for other users");
  }
  auto modes = [this] { return std::string("+") + (oper() ? "o" : "") + ((caps_ & kWallops) ? "w" : ""); };
  if (m.params.size() < 2) return numeric(session, "221", modes());
  // +o only through OPER; -o gives it up; +w/-w: WALLOPS or not. Others: 501.
  bool add = true;
  std::string changed;
  char sign = 0;
  for (char c : m.params[1]) {
    if (c == '+' || c == '-') {
      add = c == '+';
      continue;
    }
    if (c == 'o' && !add && oper()) {
      caps_ = static_cast<uint16_t>(caps_ & ~kOper);
    } else if (c == 'w' && add != ((caps_ & kWallops) != 0)) {
      caps_ = add ? static_cast<uint16_t>(caps_ | kWallops) : static_cast<uint16_t>(caps_ & ~kWallops);
    } else if (c == 'o' || c == 'w' || c == 'i') {
      continue;  // nothing to change (+o: OPER gives it; +i: every member is invisible enough)
    } else {
      numeric(session, "501", ":Unknown MODE flag");
      continue;
    }
    if (sign != (add ? '+' : '-')) changed += (sign = add ? '+' : '-');
    changed += c;
  }
  if (changed.empty()) return;
  publish_flags(session);
  send_line(session, self_source(session) + " MODE " + session.name() + " :" + changed + "\r\n");
}

void IrcCodec::mode(Session& session, const irc::Message& m) {
  const std::string& target = m.params[0];
  std::string room;
  if (target[0] != '#') return user_mode(session, m);
  if (!room_of(target, room)) return numeric(session, "403", echoed(target, 65) + " :No such channel");
  bool ban_list = m.params.size() == 2 && (m.params[1] == "b" || m.params[1] == "+b");
  if (m.params.size() == 1 || ban_list) {  // a query: what the owner has now
    session.ask_room(room, [room, ban_list, this](Session& s, const RoomSnapshot& snap) {
      std::string out;
      if (ban_list) {
        for (const BanMask& ban : snap.policy.bans) {
          out += numeric_line(s, "367", channel(room) + " " + irc_ban_mask(ban));
        }
        out += numeric_line(s, "368", channel(room) + " :End of channel ban list");
      } else {
        // The key is shown to members only.
        std::string modes = irc_channel_modes(snap.policy, s.in_room(room));
        out = numeric_line(s, "324", channel(room) + " " + modes);
        if (snap.count == 0) {
          out = numeric_line(s, "403", channel(room) + " :No such channel");
        } else {
          out += numeric_line(s, "329", channel(room) + " " + std::to_string(snap.created_ms / 1000));
        }
      }
      s.reply(std::make_shared<const std::string>(std::move(out)));
    });
    return;
  }
  // Changes: "+o-v+k bob kim secret".
  IrcModeParse parsed = irc_parse_mode_changes(m.params, channel(room), kMaxModes);
  for (const auto& [code, rest] : parsed.errors) numeric(session, code, rest);
  PolicyRequest req;
  req.kind = PolicyRequest::kModes;
  req.modes = std::move(parsed.changes);
  if (req.modes.empty()) return;
  session.ask_policy(room, std::move(req), [room, this](Session& s, const PolicyAnswer& a) {
    std::string out;
    for (const PolicyAnswer::Refused& r : a.refusals) out += refusal(s, r, room);
    if (!out.empty()) s.reply(std::make_shared<const std::string>(std::move(out)));
  });
}

}  // namespace chat
