// What the JSON dialects check in every frame before they read it: valid UTF-8, JSON within the
// nesting limit (chat/ops/json.h), an object. Each failure is counted in the shard's Stats; how it is
// reported (an error reply, a log line) is the dialect's.
#pragma once

#include <string_view>

#include "chat/ops/json.h"
#include "chat/ops/stats.h"

namespace chat {

enum class ObjectProblem { kNone, kBadUtf8, kBadJson, kTooDeep, kNotObject };

ObjectProblem decode_object(std::string_view frame, Json& out, Stats& stats);

// A string field of `j`, or nullptr if missing or not a string.
const std::string* string_field(const Json& j, const char* key);

}  // namespace chat
