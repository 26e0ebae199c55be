// JSON at the chat server's edges: every JSON text that arrives from the network (both dialects'
// frames, what other nodes publish through Redis) is parsed here, with a nesting limit.
//
// Why a limit: nlohmann::json parses iteratively, but copying and dumping a value recurse, one
// stack frame per level. A 64 KiB frame can nest 32,000 levels, a larger --max-frame more: one
// request must not be able to overflow the stack. Nothing in the protocol nests deeper than 2.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace chat {

using Json = nlohmann::ordered_json;

// Deepest nesting of arrays and objects accepted (a bare scalar is depth 0, {"a":1} depth 1).
inline constexpr size_t kMaxJsonDepth = 32;

enum class JsonStatus { kOk, kSyntax, kTooDeep };

// Parses `text` into `out`; never throws. kTooDeep is decided before parsing, in one pass that
// tracks strings, so no value deeper than the limit is ever built.
JsonStatus parse_json(std::string_view text, Json& out);

// True if arrays and objects in `text` nest deeper than `max_depth` (strings are skipped; for
// invalid JSON this is an upper bound of what a parser would build before it fails).
bool json_nests_deeper_than(std::string_view text, size_t max_depth);

// Serialises `j` compactly. Invalid UTF-8 is replaced, never thrown about: a dump must not fail.
std::string dump_json(const Json& j);

}  // namespace chat
