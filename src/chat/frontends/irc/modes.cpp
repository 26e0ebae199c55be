#include "chat/frontends/irc/modes.h"

#include <cstdlib>

#include "chat/frontends/irc/irc.h"

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

}  // namespace chat
