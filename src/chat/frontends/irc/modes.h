// How IRC names a room's policy: channel mode letters for RoomMode, the MODE line's "+o-v bob kim"
// for changes, "+iklmnst key 10" for a channel's modes, '@' and '+' for members' roles, and
// nick!user@host masks for bans. The room core knows none of these: only RoomMode, ModeChange,
// MemberModes and BanMask.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "chat/core/policy.h"
#include "irc/mask.h"

namespace chat {

// The channel mode letter of `mode` (i k l m n s t b o v); 0 for RoomMode::kUnknown.
char irc_mode_letter(RoomMode mode);
// The room mode a channel mode letter names (RoomMode::kUnknown for any other letter).
RoomMode irc_room_mode(char letter);

// "+iklmnst key 10" style: the flags set, then the parameters; the key as "*" unless `show_key`.
std::string irc_channel_modes(const RoomPolicy& policy, bool show_key);
// Changes as a MODE line carries them: "+o-v bob kim" (the removed key as "*").
std::string irc_mode_changes(const std::vector<ModeChange>& changes);
// A member's prefixes in a channel: '@' for an operator, '+' for voice; the highest only unless
// `multi_prefix`.
std::string irc_prefix(const MemberModes& modes, bool multi_prefix);

// A ban as IRC writes it (nick!user@host), and back: the nick is the member's name, the host its
// front end.
BanMask irc_ban(std::string_view mask);
std::string irc_ban_mask(const BanMask& ban);

// The changes of "MODE #chan +o-v+k bob kim secret" (`params`: the MODE's parameters, the channel
// first): each letter in turn takes a parameter if it needs one; at most `max` changes. What is
// refused as it is read is in `errors` (a numeric and the rest of its line, in order); an unknown
// letter is a change of RoomMode::kUnknown (the owner refuses it in its turn).
struct IrcModeParse {
  std::vector<ModeChange> changes;
  std::vector<std::pair<std::string, std::string>> errors;
};
IrcModeParse irc_parse_mode_changes(const std::vector<std::string>& params, const std::string& chan, size_t max);

}  // namespace chat
