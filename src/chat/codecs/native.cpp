#include "chat/codecs/native.h"

#include "chat/codecs/json_object.h"
#include "chat/event.h"
#include "chat/names.h"
#include "chat/session.h"

namespace chat {
namespace {

reactor::SharedBytes json_line(const Json& j) { return std::make_shared<const std::string>(dump_json(j) + "\n"); }

Json event_json(const RoomEvent& e) {
  switch (e.kind) {
    case EventKind::kMessage:
      return {{"type", "message"}, {"room", e.room}, {"user", e.user}, {"text", e.text}, {"ts", e.ts_ms}, {"seq", e.seq}};
    case EventKind::kJoin: return {{"type", "join"}, {"room", e.room}, {"user", e.user}};
    case EventKind::kLeave: return {{"type", "leave"}, {"room", e.room}, {"user", e.user}};
  }
  return nullptr;
}

class NativeWsFormat final : public Format {
 public:
  NativeWsFormat() : Format("websocket") {}
  reactor::SharedBytes encode(const RoomEvent& e) const override {
    return std::make_shared<const std::string>(websocket_frame(0x1, dump_json(event_json(e))));
  }
};

class NativeFormat final : public Format {
 public:
  NativeFormat() : Format("native") {}
  reactor::SharedBytes encode(const RoomEvent& e) const override { return json_line(event_json(e)); }
};

}  // namespace

std::string websocket_frame(uint8_t opcode, std::string_view payload) {
  std::string f;
  f.reserve(payload.size() + 10);
  f += static_cast<char>(0x80 | opcode);
  size_t n = payload.size();
  if (n < 126) {
    f += static_cast<char>(n);
  } else if (n <= 0xffff) {
    f += static_cast<char>(126);
    f += static_cast<char>(n >> 8);
    f += static_cast<char>(n & 0xff);
  } else {
    f += static_cast<char>(127);
    for (int shift = 56; shift >= 0; shift -= 8) f += static_cast<char>((static_cast<uint64_t>(n) >> shift) & 0xff);
  }
  f.append(payload);
  return f;
}

const Format& native_ws_format() {
  static const NativeWsFormat format;
  return format;
}

reactor::SharedBytes NativeCodec::wrap(const Json& j) const {
  if (carrier_ == Carrier::kLines) return json_line(j);
  return std::make_shared<const std::string>(websocket_frame(0x1, dump_json(j)));
}

void NativeCodec::error(Session& session, const char* code, const std::string& message) const {
  session.reply(wrap({{"type", "error"}, {"code", code}, {"message", message}}));
}

FrameResult NativeCodec::next_frame(std::string_view input) {
  if (carrier_ == Carrier::kLines) return framer_.next(input);
  // One WebSocket message, ended by the NUL its transport put after it (its size was bounded there).
  size_t end = input.find('\0');
  if (end == std::string_view::npos) return {FrameStatus::kNeedMore, 0, {}};
  return {FrameStatus::kFrame, end + 1, input.substr(0, end)};
}

const Format& native_format() {
  static const NativeFormat format;
  return format;
}

reactor::SharedBytes NativeCodec::error_line(const char* code, const std::string& message) {
  return json_line({{"type", "error"}, {"code", code}, {"message", message}});
}

bool NativeCodec::greet(Session& session, const Json& hello) { return greet_as(session, hello, Carrier::kLines); }

bool NativeCodec::greet_as(Session& session, const Json& hello, Carrier carrier) {
  auto wrap = [carrier](const Json& j) {
    return carrier == Carrier::kLines ? json_line(j)
                                      : std::make_shared<const std::string>(websocket_frame(0x1, dump_json(j)));
  };
  auto send_error = [&](Session& s, const char* code, const std::string& message) {
    s.reply(wrap({{"type", "error"}, {"code", code}, {"message", message}}));
  };
  const std::string* user = string_field(hello, "user");
  if (user == nullptr || !valid_native_name(*user)) {
    ++session.stats().errors_request;
    send_error(session, "bad_name", "user must be 1 to 32 characters from A-Z a-z 0-9 _ . -");
    return false;
  }
  if (!session.table().claim_name(*user, session.id())) {
    ++session.stats().errors_request;
    send_error(session, "name_taken", "user '" + *user + "' is already connected");
    return false;
  }
  // Leave the rooms it was in anonymously (the article's lobby), silently, then take the name.
  session.leave_all();
  session.set_name(*user);
  session.reply(wrap({{"type", "welcome"}, {"user", *user}}));
  return true;
}

void NativeCodec::hello(Session& session, const Json& j) {
  const std::string* type = string_field(j, "type");
  if (type == nullptr || *type != "hello") {
    ++session.stats().errors_request;
    return error(session, "bad_request", "say hello first: {\"type\":\"hello\",\"user\":NAME}");
  }
  greeted_ = greet_as(session, j, carrier_);
}

std::unique_ptr<Codec> NativeCodec::on_frame(Session& session, std::string_view frame) {
  // Whitespace-only lines are keep-alives.
  if (frame.find_first_not_of(" \t\r") == std::string_view::npos) return nullptr;
  Json j;
  switch (decode_object(frame, j, session.stats())) {
    case ObjectProblem::kNone:
      if (greeted_) {
        request(session, j);
      } else {
        hello(session, j);
      }
      break;
    case ObjectProblem::kBadUtf8: error(session, "bad_utf8", "frame is not valid UTF-8"); break;
    case ObjectProblem::kBadJson: error(session, "bad_json", "frame is not valid JSON"); break;
    case ObjectProblem::kTooDeep:
      error(session, "bad_json", "JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
      break;
    case ObjectProblem::kNotObject: error(session, "bad_request", "expected a JSON object"); break;
  }
  return nullptr;
}

void NativeCodec::on_bad_frame(Session& session, const FrameResult& r, std::string_view) {
  if (r.status == FrameStatus::kTooLong) {
    error(session, "too_long", "line of " + std::to_string(r.frame_size) + " bytes is over the limit of " +
                                        std::to_string(session.limits().max_frame));
  } else if (r.status == FrameStatus::kLost) {
    error(session, "too_long", "frame never ended: closing the connection");
  }
}

void NativeCodec::request(Session& session, const Json& j) {
  Stats& stats = session.stats();
  const std::string* type = string_field(j, "type");
  if (type == nullptr) {
    ++stats.errors_request;
    return error(session, "bad_request", "missing string field 'type'");
  }
  if (*type == "message") {
    const std::string* room = string_field(j, "room");
    const std::string* text = string_field(j, "text");
    if (room == nullptr || text == nullptr) {
      ++stats.errors_request;
      return error(session, "bad_request", "message needs string fields 'room' and 'text'");
    }
    if (session.publish(*room, session.name(), *text) != HubError::kNone) {
      ++stats.errors_request;
      return error(session, "not_member", "not a member of room '" + *room + "'");
    }
  } else if (*type == "join" || *type == "leave") {
    const std::string* room = string_field(j, "room");
    if (room == nullptr) {
      ++stats.errors_request;
      return error(session, "bad_request", *type + " needs a string field 'room'");
    }
    if (!valid_room_name(*room)) {
      ++stats.errors_request;
      return error(session, "bad_room", "room must be 1 to 64 characters from A-Z a-z 0-9 _ . # -");
    }
    *type == "join" ? join(session, *room) : leave(session, *room);
  } else if (*type == "ping") {
    ping(session, j);
  } else if (*type == "rooms") {
    session.reply(wrap({{"type", "rooms"}, {"rooms", session.rooms()}}));
  } else if (*type == "hello") {
    ++stats.errors_request;
    error(session, "bad_request", "already greeted as '" + session.name() + "'");
  } else {
    ++stats.errors_request;
    error(session, "unknown_type", "unknown message type '" + *type + "'");
  }
}

void NativeCodec::join(Session& session, const std::string& room) {
  if (session.in_room(room)) return error(session, "already_member", "already in room '" + room + "'");
  size_t max_rooms = session.limits().max_rooms;
  if (session.rooms().size() >= max_rooms) {
    ++session.stats().errors_request;
    return error(session, "too_many_rooms", "at most " + std::to_string(max_rooms) + " rooms per connection");
  }
  session.join(room, /*want_reply=*/true);  // the room's owner answers through joined()
}

void NativeCodec::leave(Session& session, const std::string& room) {
  if (session.leave(room) != HubError::kNone) return error(session, "not_member", "not in room '" + room + "'");
  session.reply(wrap({{"type", "left"}, {"room", room}}));
}

void NativeCodec::ping(Session& session, const Json& j) {
  Json pong = {{"type", "pong"}};
  if (auto id = j.find("id"); id != j.end()) pong["id"] = *id;
  session.after_earlier_answers(wrap(pong));
}

reactor::SharedBytes NativeCodec::joined(const std::string& room, size_t count, const std::vector<std::string>* names) {
  Json j = {{"type", "joined"}, {"room", room}, {"count", count}};
  if (names) j["members"] = *names;
  return wrap(j);
}

}  // namespace chat
