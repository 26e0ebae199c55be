#include "chat/frontends/tcp/json_object.h"

#include "chat/session/framing.h"

namespace chat {

ObjectProblem decode_object(std::string_view frame, Json& out, Stats& stats) {
  if (!valid_utf8(frame)) {
    ++stats.errors_utf8;
    return ObjectProblem::kBadUtf8;
  }
  switch (parse_json(frame, out)) {
    case JsonStatus::kOk: break;
    case JsonStatus::kTooDeep: ++stats.errors_json; return ObjectProblem::kTooDeep;
    default: ++stats.errors_json; return ObjectProblem::kBadJson;
  }
  if (!out.is_object()) {
    ++stats.errors_request;
    return ObjectProblem::kNotObject;
  }
  return ObjectProblem::kNone;
}

const std::string* string_field(const Json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return nullptr;
  return it->get_ptr<const std::string*>();
}

}  // namespace chat
