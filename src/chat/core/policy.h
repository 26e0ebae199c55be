// Room policy: what a room's operators may set and do (IRC's channel modes, topics, kicks and
// invitations), kept by the room's owner while the room has members. Protocol-neutral: the IRC
// codec speaks it, and every front end meets its effects (a topic, a refused join or message, a
// member removed).
#pragma once

#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace chat {

// Why the owner said no.
enum class Refusal : uint8_t {
  kNone,
  kNotInRoom,       // the asker is not a member of the room (or the room has no members)
  kNotOperator,     // only the room's operators may do that
  kNoSuchMember,    // the member named is not in the room
  kAlreadyInRoom,   // the member invited is in the room already
  kInviteOnly,      // joining needs an invitation (+i)
  kBadKey,          // joining needs the room's key (+k)
  kFull,            // the room is at its member limit (+l)
  kBanned,          // the member's name matches a ban (+b)
  kModerated,       // only operators and voiced members speak (+m)
  kUnknownMode,
  kNeedsParameter,  // a mode that takes a parameter came without one (or with a bad one)
  kTooManyBans,
  kRoomLimit,       // the room has --max-room-members members
  kServerRooms,     // the server has --max-server-rooms rooms (a join that would open another)
  kIdReused,        // a message under an id its sender gave another message (a retry is the same text)
  kNoSuchRoom,      // the room has no members (it does not exist)
  kNoExternal,      // only members send to the room (+n)
  kBadParameter,    // a mode's parameter is not one it takes (+l 0, +k with a space)
};
const char* describe(Refusal refusal);

// What a member may do in a room beyond speaking: an operator (IRC's @) sets the policy; a voiced
// member (+) speaks in a moderated room.
struct MemberModes {
  bool op = false;
  bool voice = false;
};

struct RoomPolicy {
  static constexpr size_t kMaxBans = 100;

  bool moderated = false;     // +m
  bool invite_only = false;   // +i
  bool topic_locked = true;   // +t: only operators set the topic
  bool no_external = true;    // +n: only members send (-n: IRC members outside it may too)
  bool secret = false;        // +s: not listed to those outside it
  std::string key;            // +k ("" none)
  size_t limit = 0;           // +l (0 none): named members at most
  std::vector<std::string> bans;  // +b masks (nick!user@host with * and ?)
  std::set<std::string> invited;  // folded names invited, until they join

  // "+iklmnst key 10" style: the flags set, then the parameters.
  std::string modes() const;
  // Whether `who` (nick!user@host) matches a ban; compared without regard to ASCII case.
  bool banned(std::string_view who) const;
};

// One change of a room's modes (MODE #room +o-v bob kim): `mode` a letter, `add` its sign.
struct ModeChange {
  char mode = 0;
  bool add = true;
  std::string param;
};

// A member's request about a room's policy, answered by the room's owner (Hub::policy).
struct PolicyRequest {
  enum Kind : uint8_t { kTopic, kModes, kKick, kInvite };
  Kind kind = kTopic;
  std::string text;               // kTopic: the new topic; kKick: the reason
  std::string target;             // kKick, kInvite: the member's name
  std::vector<ModeChange> modes;  // kModes
};

struct PolicyAnswer {
  // Each refusal with what it is about (a name, a mode letter); empty: all done.
  std::vector<std::pair<Refusal, std::string>> refusals;
  std::string target;  // kKick, kInvite: the member's name in its own case
};

// A glob (`*` any run, `?` any one character) against `text`, without regard to ASCII case.
bool glob_match(std::string_view pattern, std::string_view text);
// A ban mask as given (a nick, nick!user, or nick!user@host) made whole: bob -> bob!*@*.
std::string normal_mask(std::string_view mask);

}  // namespace chat
