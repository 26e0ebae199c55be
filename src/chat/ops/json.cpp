#include "chat/ops/json.h"

namespace chat {

bool json_nests_deeper_than(std::string_view text, size_t max_depth) {
  size_t depth = 0;
  bool in_string = false, escape = false;
  for (char c : text) {
    if (in_string) {
      if (escape) {
        escape = false;
      } else if (c == '\\') {
        escape = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return true;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return false;
}

JsonStatus parse_json(std::string_view text, Json& out) {
  if (json_nests_deeper_than(text, kMaxJsonDepth)) return JsonStatus::kTooDeep;
  out = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  return out.is_discarded() ? JsonStatus::kSyntax : JsonStatus::kOk;
}

std::string dump_json(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

}  // namespace chat
