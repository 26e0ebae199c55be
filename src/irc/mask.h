// IRC masks: nick!user@host patterns, as MODE +b and WHO take them. Parsing and rendering only;
// what they match is the user's business (the chat server matches each part as a glob).
#pragma once

#include <string>
#include <string_view>

namespace irc {

struct Mask {
  std::string nick = "*";
  std::string user = "*";
  std::string host = "*";
};

// A mask as a client gives it, made whole: "bob" is bob!*@*, "bob!u" bob!u@*, "bob@h" bob!*@h.
// The nick is what comes before the first '!' (or, without one, before the first '@'); the user
// what follows, up to the first '@' after it; the host the rest.
Mask parse_mask(std::string_view text);
// "nick!user@host".
std::string to_string(const Mask& mask);

}  // namespace irc
