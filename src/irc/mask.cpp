#include "irc/mask.h"

namespace irc {

Mask parse_mask(std::string_view text) {
  Mask m;
  size_t bang = text.find('!');
  if (bang == std::string_view::npos) {
    size_t at = text.find('@');
    m.nick.assign(text.substr(0, at));
    if (at != std::string_view::npos) m.host.assign(text.substr(at + 1));
    return m;
  }
  m.nick.assign(text.substr(0, bang));
  std::string_view rest = text.substr(bang + 1);
  size_t at = rest.find('@');
  m.user.assign(rest.substr(0, at));
  if (at != std::string_view::npos) m.host.assign(rest.substr(at + 1));
  return m;
}

std::string to_string(const Mask& mask) {
  std::string s;
  s.reserve(mask.nick.size() + mask.user.size() + mask.host.size() + 2);
  s += mask.nick;
  s += '!';
  s += mask.user;
  s += '@';
  s += mask.host;
  return s;
}

}  // namespace irc
