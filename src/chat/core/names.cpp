#include "chat/core/names.h"

namespace chat {
namespace {
bool all_of_charset(std::string_view s, size_t max, std::string_view extra) {
  if (s.empty() || s.size() > max) return false;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              extra.find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}
}  // namespace

bool valid_native_name(std::string_view name) { return all_of_charset(name, 32, "_.-"); }
bool valid_room_name(std::string_view room) { return all_of_charset(room, 64, "_.#-"); }

bool valid_front(std::string_view front) {
  if (front.empty() || front.size() > 16) return false;
  for (char c : front) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return true;
}

bool valid_article_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    auto c = static_cast<unsigned char>(name[i]);
    if (c < 0x20 || c == 0x7f) return false;
    // C1 controls (U+0080-U+009F: C2 80 to C2 9F in UTF-8); U+009B is an 8-bit CSI.
    if (c == 0xC2 && i + 1 < name.size() && static_cast<unsigned char>(name[i + 1]) < 0xA0) return false;
  }
  return true;
}

}  // namespace chat
