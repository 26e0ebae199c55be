#include "chat/frontends/tcp/native.h"

#include <algorithm>

#include "chat/core/event.h"
#include "chat/core/names.h"
#include "chat/frontends/tcp/json_object.h"
#include "chat/ops/auth.h"
#include "chat/session/session.h"
#include "http/websocket.h"

namespace chat {
namespace {

reactor::SharedBytes json_line(const Json& j) { return std::make_shared<const std::string>(dump_json(j) + "\n"); }

Json message_json(const std::string& room, const std::string& user, const std::string& text, int64_t ts_ms,
                  uint64_t seq, const std::string& id) {
  Json j = {{"type", "message"}, {"room", room}, {"user", user}, {"text", text}, {"ts", ts_ms}, {"seq", seq}};
  if (!id.empty()) j["id"] = id;
  return j;
}

Json event_json(const RoomEvent& e) {
  switch (e.kind) {
    case EventKind::kMessage: return message_json(e.room, e.user, e.text, e.ts_ms, e.seq, e.id);
    case EventKind::kJoin: return {{"type", "join"}, {"room", e.room}, {"user", e.user}};
    case EventKind::kLeave: return {{"type", "leave"}, {"room", e.room}, {"user", e.user}};
    case EventKind::kTopic: return {{"type", "topic"}, {"room", e.room}, {"user", e.user}, {"topic", e.text}};
    case EventKind::kKick:  // the member removed leaves (and hears it itself: by whom, why)
      return {{"type", "leave"}, {"room", e.room}, {"user", e.target}, {"by", e.user}, {"reason", e.text}};
    case EventKind::kRename: break;  // two objects (events_json)
    case EventKind::kMode: break;  // not shown in this dialect
  }
  return nullptr;
}

// The objects an event is in this dialect: one, but a change of name is the old name leaving and
// the new one joining (the dialect has no renames; names are fixed for a connection's life).
std::vector<Json> events_json(const RoomEvent& e) {
  if (e.kind == EventKind::kMode) return {};
  if (e.kind != EventKind::kRename) return {event_json(e)};
  return {{{"type", "leave"}, {"room", e.room}, {"user", e.user}}, {{"type", "join"}, {"room", e.room}, {"user", e.text}}};
}

class NativeWsFormat final : public Format {
 public:
  NativeWsFormat() : Format("websocket", "web") {}
  reactor::SharedBytes encode(const RoomEvent& e) const override {
    std::string frames;
    for (const Json& j : events_json(e)) frames += http::websocket_frame(0x1, dump_json(j));
    if (frames.empty()) return nullptr;
    return std::make_shared<const std::string>(std::move(frames));
  }
};

class NativeFormat final : public Format {
 public:
  NativeFormat() : Format("native", "native") {}
  reactor::SharedBytes encode(const RoomEvent& e) const override {
    if (e.kind == EventKind::kMessage) return json_line(event_json(e));
    std::string lines;
    for (const Json& j : events_json(e)) lines += dump_json(j) + "\n";
    if (lines.empty()) return nullptr;
    return std::make_shared<const std::string>(std::move(lines));
  }
};

}  // namespace

const Format& native_ws_format() {
  static const NativeWsFormat format;
  return format;
}

reactor::SharedBytes NativeCodec::wrap(const Json& j) const {
  if (carrier_ == Carrier::kLines) return json_line(j);
  return std::make_shared<const std::string>(http::websocket_frame(0x1, dump_json(j)));
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
                                      : std::make_shared<const std::string>(http::websocket_frame(0x1, dump_json(j)));
  };
  auto send_error = [&](Session& s, const char* code, const std::string& message) {
    s.reply(wrap({{"type", "error"}, {"code", code}, {"message", message}}));
  };
  const std::string* user = string_field(hello, "user");
  if (const TokenAuthority* authority = session.authority()) {
    // --auth-secret: a token signed with the secret, for this very name, or the door closes.
    const char* why = nullptr;
    const std::string* token = string_field(hello, "token");
    if (token == nullptr) {
      why = hello.contains("token") ? TokenAuthority::describe(TokenAuthority::Result::kMalformed)
                                    : "this server needs a token: {\"type\":\"hello\",\"user\":NAME,\"token\":TOKEN}";
    } else if (TokenAuthority::Verdict v = authority->verify(*token, TokenAuthority::now()); !v.ok()) {
      why = TokenAuthority::describe(v.result);
    } else if (user == nullptr || v.user != *user) {
      why = "the token is for another user";
    }
    if (why != nullptr) {
      session.refuse_unauthenticated(wrap({{"type", "error"}, {"code", "unauthorized"}, {"message", why}}), why);
      return false;
    }
  }
  if (user == nullptr || !valid_native_name(*user)) {
    ++session.stats().errors_request;
    send_error(session, "bad_name", "user must be 1 to 32 characters from A-Z a-z 0-9 _ . -");
    return false;
  }
  const Format& format = carrier == Carrier::kLines ? native_format() : native_ws_format();
  if (!session.claim_name(*user, format.front())) {
    ++session.stats().errors_request;
    send_error(session, "name_taken", "user '" + *user + "' is already connected");
    return false;
  }
  // Leave the rooms it was in anonymously (the article's lobby), silently, then take the name.
  session.leave_all();
  session.set_name(*user);
  if (session.authority() != nullptr) ++session.stats().auth_accepted;
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
  // Every request but a ping costs from the connection's budget (a message takes its token in
  // Session::publish): a client pipelining joins and leaves, or history, is refused as one sending
  // too many messages is.
  if (*type != "message" && *type != "ping" && !session.take_request_token()) {
    Json refusal = {{"type", "error"}, {"code", "rate_limited"}};
    if (const std::string* room = string_field(j, "room")) refusal["room"] = *room;
    refusal["message"] = "too many requests: at most " + std::to_string(static_cast<long>(session.limits().message_rate)) +
                         " a second (--message-rate); this one was not done";
    return session.reply(wrap(refusal));
  }
  if (*type == "message") {
    publish(session, j);
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
    *type == "join" ? join(session, *room, j) : leave(session, *room);
  } else if (*type == "history") {
    history(session, j);
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

namespace {

// A non-negative integer field: absent (true, `out` untouched) or valid (true), else false.
bool count_field(const Json& j, const char* name, uint64_t& out, bool& present) {
  auto it = j.find(name);
  present = it != j.end();
  if (!present) return true;
  if (!it->is_number_unsigned()) return false;
  out = it->get<uint64_t>();
  return true;
}

// A client's message id: 1 to 64 printable ASCII characters, no space.
bool valid_message_id(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

}  // namespace

void NativeCodec::publish(Session& session, const Json& j) {
  Stats& stats = session.stats();
  const std::string* room = string_field(j, "room");
  const std::string* text = string_field(j, "text");
  if (room == nullptr || text == nullptr) {
    ++stats.errors_request;
    return error(session, "bad_request", "message needs string fields 'room' and 'text'");
  }
  std::string_view id;
  if (auto it = j.find("id"); it != j.end()) {
    if (!it->is_string() || !valid_message_id(it->get_ref<const std::string&>())) {
      ++stats.errors_request;
      return error(session, "bad_request", "id must be a string of 1 to 64 printable ASCII characters");
    }
    id = it->get_ref<const std::string&>();
  }
  HubError e = session.publish(*room, session.name(), *text, id);
  if (e == HubError::kRateLimited) {
    Json j = {{"type", "error"}, {"code", "rate_limited"}, {"room", *room}};
    if (!id.empty()) j["id"] = id;
    j["message"] = "too many messages: at most " + std::to_string(static_cast<long>(session.limits().message_rate)) +
                   " a second (--message-rate); this one was not sent";
    return session.reply(wrap(j));
  }
  if (e != HubError::kNone) {
    ++stats.errors_request;
    // Like every refusal of one message: its room, and its id when it had one.
    Json j = {{"type", "error"}, {"code", "not_member"}, {"room", *room}};
    if (!id.empty()) j["id"] = id;
    j["message"] = "not a member of room '" + *room + "'";
    return session.reply(wrap(j));
  }
}

void NativeCodec::join(Session& session, const std::string& room, const Json& j) {
  Stats& stats = session.stats();
  uint64_t since = 0;
  bool has_since = false;
  if (!count_field(j, "since", since, has_since)) {
    ++stats.errors_request;
    return error(session, "bad_request", "since must be a non-negative integer");
  }
  const std::string* epoch = string_field(j, "epoch");
  if (has_since != (epoch != nullptr) || (epoch == nullptr && j.contains("epoch"))) {
    ++stats.errors_request;
    return error(session, "bad_request", "since (an integer) and epoch (a string) go together");
  }
  if (session.in_room(room)) return error(session, "already_member", "already in room '" + room + "'");
  size_t max_rooms = session.limits().max_rooms;
  if (session.rooms().size() >= max_rooms) {
    ++stats.errors_request;
    return error(session, "too_many_rooms", "at most " + std::to_string(max_rooms) + " rooms per connection");
  }
  // The room's owner answers through joined().
  if (has_since) {
    session.join_since(room, since, *epoch);
  } else {
    session.join(room, /*want_reply=*/true);
  }
}

void NativeCodec::history(Session& session, const Json& j) {
  Stats& stats = session.stats();
  const std::string* room = string_field(j, "room");
  uint64_t before = 0;
  uint64_t limit = kDefaultHistory;
  bool has_before = false, has_limit = false;
  if (room == nullptr || !count_field(j, "before", before, has_before) || !count_field(j, "limit", limit, has_limit) ||
      limit == 0 || limit > kMaxHistory) {
    ++stats.errors_request;
    return error(session, "bad_request",
                 "history needs a string 'room', and takes 'before' (an integer) and 'limit' (1 to " +
                     std::to_string(kMaxHistory) + ")");
  }
  if (!session.in_room(*room)) {
    ++stats.errors_request;
    return error(session, "not_member", "not in room '" + *room + "'");
  }
  // Nothing is numbered below 1 ("before":0 asks for nothing); absent, there is no bound (0).
  if (!session.history(*room, 0, has_before ? std::max<uint64_t>(before, 1) : 0, limit)) {
    session.reply(wrap({{"type", "error"},
                        {"code", "rate_limited"},
                        {"room", *room},
                        {"message", "too much history asked for in a short time (--history-rate): try again later"}}));
  }
}

reactor::SharedBytes NativeCodec::acked(const std::string& room, const std::string& id, uint64_t seq, bool stored) {
  if (stored) return wrap({{"type", "ack"}, {"room", room}, {"id", id}, {"seq", seq}});
  return wrap({{"type", "error"},
               {"code", "not_stored"},
               {"room", room},
               {"id", id},
               {"message", "the message could not be stored (it may have been delivered): not acknowledged"}});
}

reactor::SharedBytes NativeCodec::going_away(Session&, bool restart) {
  return wrap({{"type", "reconnect"}, {"reason", restart ? "server draining" : "server shutting down"}});
}

reactor::SharedBytes NativeCodec::join_refused(Session&, const std::string& room, Refusal why) {
  return wrap({{"type", "error"}, {"code", "join_refused"}, {"room", room}, {"message", describe(why)}});
}

reactor::SharedBytes NativeCodec::publish_refused(Session&, const std::string& room, Refusal why,
                                                  const std::string& id) {
  Json j = {{"type", "error"}, {"code", why == Refusal::kIdReused ? "id_reused" : "not_allowed"}, {"room", room}};
  if (!id.empty()) j["id"] = id;
  j["message"] = why == Refusal::kIdReused ? "id '" + id + "': " + describe(why) : std::string(describe(why));
  return wrap(j);
}

reactor::SharedBytes NativeCodec::history(const std::string& room, const std::string& epoch, const ReadResult& result) {
  if (!result.ok) {
    return wrap({{"type", "error"}, {"code", "unavailable"}, {"room", room}, {"message", "history could not be read"}});
  }
  Json messages = Json::array();
  for (const StoredMessage& m : result.messages) {
    messages.push_back(message_json(room, m.user, m.text, m.ts_ms, m.seq, m.id));
  }
  Json answer = {{"type", "history"}, {"room", room}, {"epoch", epoch}, {"messages", std::move(messages)}};
  if (result.more) answer["more"] = true;  // cut at --history-reply-bytes: page on with "before"
  return wrap(answer);
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

reactor::SharedBytes NativeCodec::joined(Session&, const std::string& room, const JoinReply& reply,
                                         std::optional<bool> recovered) {
  Json j = {{"type", "joined"}, {"room", room}, {"count", reply.count}};
  if (reply.names) j["members"] = *reply.names;
  if (reply.topic && !reply.topic->empty()) j["topic"] = *reply.topic;
  j["epoch"] = reply.epoch;
  j["seq"] = reply.seq;
  if (recovered) j["recovered"] = *recovered;
  return wrap(j);
}

}  // namespace chat
