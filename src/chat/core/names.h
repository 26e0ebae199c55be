// Names on the wire: who may be called what, and the room every connection starts in.
#pragma once

#include <string_view>

namespace chat {

// Native user names: 1 to 32 characters from [A-Za-z0-9_.-].
bool valid_native_name(std::string_view name);
// Names in the article's dialect arrive with each message: 1 to 64 bytes, no control characters
// (C0, DEL, C1).
bool valid_article_name(std::string_view name);
// Room names: 1 to 64 characters from [A-Za-z0-9_.#-].
bool valid_room_name(std::string_view room);

// A front end's name (Format::front) as it may come from outside the process (Redis, a store's
// file): 1 to 16 of a-z, 0-9 and `-`. It becomes the host part of an IRC prefix, so nothing else
// is taken from whoever can write there.
bool valid_front(std::string_view front);

inline constexpr const char* kLobby = "lobby";
// Appended to an article-dialect name that a native member holds (native names have no spaces).
inline constexpr const char* kArticleNameMark = " (article)";

}  // namespace chat
