#include "chat/core/policy.h"

namespace chat {
namespace {

char fold(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

}  // namespace

const char* describe(Refusal refusal) {
  switch (refusal) {
    case Refusal::kNone: return "done";
    case Refusal::kNotInRoom: return "not a member of the room";
    case Refusal::kNotOperator: return "only the room's operators may do that";
    case Refusal::kNoSuchMember: return "no such member in the room";
    case Refusal::kAlreadyInRoom: return "already in the room";
    case Refusal::kInviteOnly: return "the room is invite-only";
    case Refusal::kBadKey: return "the room needs a key";
    case Refusal::kFull: return "the room is full";
    case Refusal::kBanned: return "banned from the room";
    case Refusal::kModerated: return "the room is moderated: only its operators and voiced members speak";
    case Refusal::kUnknownMode: return "unknown mode";
    case Refusal::kNeedsParameter: return "the mode needs a parameter";
    case Refusal::kTooManyBans: return "the room's ban list is full";
    case Refusal::kRoomLimit: return "the room has as many members as this server allows";
    case Refusal::kServerRooms: return "this server has as many rooms as it allows: join one that exists";
    case Refusal::kIdReused: return "this id was given to another message: a retry must repeat the same text, a new message needs a new id";
    case Refusal::kNoSuchRoom: return "no such room";
    case Refusal::kNoExternal: return "only the room's members send to it";
    case Refusal::kBadParameter: return "the mode's parameter is not valid";
  }
  return "refused";
}

bool BanMask::matches(std::string_view n, std::string_view u, std::string_view h) const {
  return glob_match(name, n) && glob_match(user, u) && glob_match(host, h);
}

bool BanMask::same(const BanMask& o) const {
  auto equal = [](std::string_view x, std::string_view y) {
    if (x.size() != y.size()) return false;
    for (size_t i = 0; i < x.size(); ++i) {
      if (fold(x[i]) != fold(y[i])) return false;
    }
    return true;
  };
  return equal(name, o.name) && equal(user, o.user) && equal(host, o.host);
}

bool RoomPolicy::banned(std::string_view name, std::string_view front) const {
  for (const BanMask& mask : bans) {
    if (mask.matches(name, name, front)) return true;
  }
  return false;
}

bool glob_match(std::string_view p, std::string_view t) {
  // Iterative, with one backtrack point: linear in practice, never exponential.
  size_t pi = 0, ti = 0, star = std::string_view::npos, mark = 0;
  while (ti < t.size()) {
    if (pi < p.size() && (p[pi] == '?' || fold(p[pi]) == fold(t[ti]))) {
      ++pi;
      ++ti;
    } else if (pi < p.size() && p[pi] == '*') {
      star = pi++;
      mark = ti;
    } else if (star != std::string_view::npos) {
      pi = star + 1;
      ti = ++mark;
    } else {
      return false;
    }
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

}  // namespace chat
