// Room policy: what a room's operators may set and do (modes, members' roles, topics, kicks and
// invitations), kept by the room's owner while the room has members. Protocol-neutral: structured
// values only; a front end names them as its protocol does (the IRC codec renders channel modes,
// prefixes and masks), and every front end meets their effects (a topic, a refused join or
// message, a member removed).
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
  kInviteOnly,      // joining needs an invitation
  kBadKey,          // joining needs the room's key
  kFull,            // the room is at its member limit
  kBanned,          // the member matches a ban
  kModerated,       // only operators and voiced members speak
  kUnknownMode,
  kNeedsParameter,  // a mode that takes a parameter came without one (or with a bad one)
  kTooManyBans,
  kRoomLimit,       // the room has --max-room-members members
  kServerRooms,     // the server has --max-server-rooms rooms (a join that would open another)
  kIdReused,        // a message under an id its sender gave another message (a retry is the same text)
  kNoSuchRoom,      // the room has no members (it does not exist)
  kNoExternal,      // only members send to the room
  kBadParameter,    // a mode's parameter is not one it takes (a limit of 0, a key with a space)
};
const char* describe(Refusal refusal);

// What a member may do in a room beyond speaking: an operator sets the policy; a voiced member
// speaks in a moderated room. (IRC shows them as the prefixes @ and +.)
struct MemberModes {
  bool op = false;
  bool voice = false;
};

// A room's modes and its members' roles, as the owner keeps them. Each front end names them its
// own way (IRC: the channel mode letters i k l m n s t b, and o v for roles).
enum class RoomMode : uint8_t {
  kInviteOnly,   // joining needs an invitation
  kKey,          // joining needs the room's key
  kLimit,        // the room holds this many named members at most
  kModerated,    // only operators and voiced members speak
  kNoExternal,   // only members send to the room
  kSecret,       // not listed to those outside it
  kTopicLocked,  // only operators set the topic
  kBan,          // members matching a pattern may not join
  kOperator,     // a member's role: operator
  kVoice,        // a member's role: voiced
  kUnknown,      // a mode this server does not know (refused)
};

// A pattern of members: a glob (glob_match) over each of a member's name, user name and host (for
// a chat member: its name, its name again, and its front end, Format::front).
struct BanMask {
  std::string name = "*";
  std::string user = "*";
  std::string host = "*";
  bool matches(std::string_view name, std::string_view user, std::string_view host) const;
  // The same pattern, ASCII case aside.
  bool same(const BanMask& other) const;
};

struct RoomPolicy {
  static constexpr size_t kMaxBans = 100;

  bool moderated = false;     // RoomMode::kModerated
  bool invite_only = false;   // kInviteOnly
  bool topic_locked = true;   // kTopicLocked: only operators set the topic
  bool no_external = true;    // kNoExternal: only members send (else members of front ends that can
                              // send from outside a room may too)
  bool secret = false;        // kSecret
  std::string key;            // kKey ("" none)
  size_t limit = 0;           // kLimit (0 none): named members at most
  std::vector<BanMask> bans;  // kBan
  std::set<std::string> invited;  // folded names invited, until they join

  // Whether a member named `name` of front end `front` matches a ban.
  bool banned(std::string_view name, std::string_view front) const;
};

// One change of a room's modes or of a member's role: `add` sets it, else it is unset.
struct ModeChange {
  RoomMode mode = RoomMode::kUnknown;
  bool add = true;
  // kKey: the key (applied and removed: empty); kLimit: the limit in decimal; kOperator, kVoice:
  // the member's name (applied: in its own case); kUnknown: the mode as the client named it.
  std::string param;
  BanMask ban;  // kBan
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
  struct Refused {
    Refusal why = Refusal::kNone;
    std::string about;  // what it is about: a name, the room, a mode's parameter
    // A mode change's refusal (kUnknownMode, kNeedsParameter, kBadParameter): which mode.
    RoomMode mode = RoomMode::kUnknown;
  };
  // Each refusal, in the order of the request's changes; empty: all done.
  std::vector<Refused> refusals;
  std::string target;  // kKick, kInvite: the member's name in its own case
};

// A glob (`*` any run, `?` any one character) against `text`, without regard to ASCII case.
bool glob_match(std::string_view pattern, std::string_view text);

}  // namespace chat
