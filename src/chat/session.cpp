#include "chat/session.h"

#include <algorithm>
#include <unordered_map>
#include <utility>
#include "chat/json.h"
#include "reactor/log.h"

namespace chat {

using json = Json;

namespace {

// A string field of `j`, or nullptr if missing or not a string.
const std::string* string_field(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return nullptr;
  return it->get_ptr<const std::string*>();
}

// Lines about bad input of every connection of one reactor: a flood of bad connections is bounded
// too, not only one bad connection.
reactor::LogLimiter& article_problems_of_this_reactor() {
  static thread_local reactor::LogLimiter limiter(50, std::chrono::seconds(1));
  return limiter;
}

// Each connection's own budget (5 lines per 10 s), kept beside the sessions rather than in them:
// few connections ever misbehave, and every byte of a session is paid by every idle member.
constexpr uint32_t kLogBurst = 5;
constexpr std::chrono::seconds kLogWindow{10};
std::unordered_map<uint64_t, reactor::LogLimiter>& log_budgets_of_this_reactor() {
  static thread_local std::unordered_map<uint64_t, reactor::LogLimiter> budgets;
  return budgets;
}

std::string preview(std::string_view frame) {
  std::string s(frame.substr(0, 80));
  for (char& c : s) {
    if (static_cast<unsigned char>(c) < 0x20) c = '.';
  }
  return frame.size() > 80 ? s + "..." : s;
}

reactor::SharedBytes json_line(const json& j) { return std::make_shared<const std::string>(dump_json(j) + "\n"); }

}  // namespace

Session::Session(Hub& hub, Stats& stats, const Limits& limits, reactor::TcpConnection& conn)
    : hub_(hub),
      stats_(stats),
      limits_(limits),
      conn_(conn),
      object_framer_(limits.max_frame),
      line_framer_(limits.max_frame) {}

void Session::start() {
  ++stats_.article_sessions;
  rooms_.emplace_back(kLobby);
  hub_.join(kLobby, this, /*want_reply=*/false);
}

void Session::on_input(reactor::Buffer& input) {
  if (waiting_room_) return;  // paused: resume_input() offers these bytes again
  // The buffer may start with bytes left from an earlier call (a partial frame, or frames not yet
  // handled while waiting for room): only what is new counts in.
  stats_.bytes_in += input.size() - left_in_;
  frame_input(input);
  if (lost_) input.clear();
  left_in_ = static_cast<uint32_t>(input.size());
}

void Session::frame_input(reactor::Buffer& input) {
  // Right after a wait for room, one request goes through whatever the others did first: every
  // waiting connection resumes at once, and without this a flooder resumed before a calm member
  // would fill the inboxes again before the calm member's first request, every time.
  bool fair_turn = std::exchange(resumed_, false);
  while (!input.empty() && !lost_ && conn_.open()) {
    if (!std::exchange(fair_turn, false) && hub_.table().congested()) return wait_for_room();
    FrameResult r = state_ == State::kNative ? line_framer_.next(input.view()) : object_framer_.next(input.view());
    switch (r.status) {
      case FrameStatus::kFrame:
        handle_frame(r.frame);  // may switch the dialect: the next frame uses the new framer
        break;
      case FrameStatus::kNeedMore:
        if (r.consumed == 0) return;  // a partial frame stays in the buffer
        break;
      case FrameStatus::kGarbage:
        ++stats_.errors_garbage;
        article_problem("bytes outside any JSON object skipped", input.view().substr(0, r.consumed));
        break;
      case FrameStatus::kTooLong:
        ++stats_.errors_too_long;
        if (state_ == State::kNative) {
          error("too_long", "line of " + std::to_string(r.frame_size) + " bytes is over the limit of " +
                                std::to_string(limits_.max_frame));
        } else {
          article_problem("object over the size limit discarded", {});
        }
        break;
      case FrameStatus::kLost:
        ++stats_.unsynced_closes;
        lost_ = true;
        if (state_ == State::kNative) error("too_long", "frame never ended: closing the connection");
        conn_.close_after_flush("stream cannot be resynchronised: a frame went on past " +
                                std::to_string(limits_.max_frame * kDiscardFactor) + " bytes");
        break;
    }
    input.consume(r.consumed);
  }
}

void Session::wait_for_room() {
  // Like a full TCP window: stop reading, keep what is buffered, and go on where we stopped once
  // the reactors have room (ShardTable).
  waiting_room_ = true;
  conn_.pause_reading();
  hub_.wait_for_room([alive = weak_from_this()] {
    if (auto self = alive.lock()) self->resume_input();
  });
}

void Session::resume_input() {
  waiting_room_ = false;
  resumed_ = true;
  conn_.resume_reading();  // offers the buffered bytes to on_input again
}

void Session::handle_frame(std::string_view frame) {
  // Whitespace-only lines are keep-alives in the native dialect.
  if (frame.find_first_not_of(" \t\r") == std::string_view::npos) return;
  if (!valid_utf8(frame)) {
    ++stats_.errors_utf8;
    if (state_ == State::kNative) {
      error("bad_utf8", "frame is not valid UTF-8");
    } else {
      article_problem("invalid UTF-8", frame);
    }
    return;
  }
  json j;
  JsonStatus parsed = parse_json(frame, j);
  if (parsed != JsonStatus::kOk) {
    ++stats_.errors_json;
    bool deep = parsed == JsonStatus::kTooDeep;
    if (state_ == State::kNative) {
      error("bad_json", deep ? "JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels"
                             : std::string("frame is not valid JSON"));
    } else {
      article_problem(deep ? "JSON nested too deep" : "malformed JSON", frame);
    }
    return;
  }
  if (!j.is_object()) {
    ++stats_.errors_request;
    if (state_ == State::kNative) {
      error("bad_request", "expected a JSON object");
    } else {
      article_problem("not a JSON object", frame);
    }
    return;
  }
  switch (state_) {
    case State::kUndecided: handle_first(j, frame); break;
    case State::kArticle: handle_article(j, frame); break;
    case State::kNative: handle_native(j); break;
  }
}

void Session::handle_first(const json& j, std::string_view frame) {
  const std::string* type = string_field(j, "type");
  if (type == nullptr || *type != "hello") {
    state_ = State::kArticle;  // confirmed: already a member of the lobby
    handle_article(j, frame);
    return;
  }
  const std::string* user = string_field(j, "user");
  if (user == nullptr || !valid_native_name(*user)) {
    ++stats_.errors_request;
    error("bad_name", "user must be 1 to 32 characters from A-Z a-z 0-9 _ . -");
    return;  // still undecided: the client may try again
  }
  if (!hub_.table().claim_name(*user, id())) {
    ++stats_.errors_request;
    error("name_taken", "user '" + *user + "' is already connected");
    return;
  }
  // Leave the lobby as the article's member (silently: it had no name), then turn native.
  hub_.leave_all(this, rooms_);
  rooms_.clear();
  --stats_.article_sessions;
  name_ = *user;
  state_ = State::kNative;
  ++stats_.native_sessions;
  reply({{"type", "welcome"}, {"user", name_}});
}

void Session::handle_article(const json& j, std::string_view frame) {
  const std::string* user = string_field(j, "user");
  const std::string* text = string_field(j, "text");
  if (user == nullptr || text == nullptr) {
    ++stats_.errors_request;
    article_problem("unknown type of message (needs string fields user and text)", frame);
    return;
  }
  if (!valid_article_name(*user)) {
    ++stats_.errors_request;
    article_problem("user must be 1 to 64 bytes without control characters", frame);
    return;
  }
  ++stats_.messages_in;
  // Names in this dialect are whatever each message says. One that a native member holds is shown
  // marked, so nobody can speak as that member to the others.
  if (hub_.table().name_held(*user)) {
    hub_.publish(kLobby, this, *user + kArticleNameMark, *text);
  } else {
    hub_.publish(kLobby, this, *user, *text);  // always a member of the lobby here
  }
  touched(kLobby);
}

void Session::handle_native(const json& j) {
  const std::string* type = string_field(j, "type");
  if (type == nullptr) {
    ++stats_.errors_request;
    return error("bad_request", "missing string field 'type'");
  }
  if (*type == "message") {
    const std::string* room = string_field(j, "room");
    const std::string* text = string_field(j, "text");
    if (room == nullptr || text == nullptr) {
      ++stats_.errors_request;
      return error("bad_request", "message needs string fields 'room' and 'text'");
    }
    if (hub_.publish(*room, this, name_, *text) != HubError::kNone) {
      ++stats_.errors_request;
      return error("not_member", "not a member of room '" + *room + "'");
    }
    ++stats_.messages_in;
    touched(*room);
  } else if (*type == "join" || *type == "leave") {
    const std::string* room = string_field(j, "room");
    if (room == nullptr) {
      ++stats_.errors_request;
      return error("bad_request", *type + " needs a string field 'room'");
    }
    if (!valid_room_name(*room)) {
      ++stats_.errors_request;
      return error("bad_room", "room must be 1 to 64 characters from A-Z a-z 0-9 _ . # -");
    }
    *type == "join" ? native_join(*room) : native_leave(*room);
  } else if (*type == "ping") {
    ping(j);
  } else if (*type == "rooms") {
    reply({{"type", "rooms"}, {"rooms", rooms_}});
  } else if (*type == "hello") {
    ++stats_.errors_request;
    error("bad_request", "already greeted as '" + name_ + "'");
  } else {
    ++stats_.errors_request;
    error("unknown_type", "unknown message type '" + *type + "'");
  }
}

void Session::native_join(const std::string& room) {
  if (hub_.is_member(room, this)) return error("already_member", "already in room '" + room + "'");
  if (rooms_.size() >= limits_.max_rooms) {
    ++stats_.errors_request;
    return error("too_many_rooms", "at most " + std::to_string(limits_.max_rooms) + " rooms per connection");
  }
  rooms_.push_back(room);
  hub_.join(room, this, /*want_reply=*/true);  // the room's owner answers through joined()
  touched(room);
}

void Session::joined(const std::string& room, size_t count, const std::vector<std::string>* names) {
  json j = {{"type", "joined"}, {"room", room}, {"count", count}};
  if (names) j["members"] = *names;
  // Not through reply(): this answer is what a waiting pong waits for.
  send_bytes(json_line(j));
}

void Session::touched(const std::string& room) {
  size_t owner = hub_.table().owner_of(room);
  bool answered_elsewhere = owner != hub_.shard() || hub_.table().backplane() != nullptr;
  if (answered_elsewhere) remote_ |= uint64_t{1} << owner;
}

void Session::ping(const json& j) {
  json pong = {{"type", "pong"}};
  if (auto id = j.find("id"); id != j.end()) pong["id"] = *id;
  after_earlier_answers(json_line(pong));
}

void Session::on_peer_closed() {
  // A client may send its requests and half-close at once: it still gets every answer, also
  // those coming from other shards, and then the connection closes.
  after_earlier_answers(nullptr);
}

void Session::after_earlier_answers(reactor::SharedBytes bytes) {
  if (remote_ == 0) return queue_reply(std::move(bytes));
  if (held_ && held_->replies.size() > kMaxHeld) return queue_reply(std::move(bytes));  // closes
  std::vector<size_t> shards;
  for (size_t k = 0; k < ShardTable::kMaxShards; ++k) {
    if (remote_ & (uint64_t{1} << k)) shards.push_back(k);
  }
  remote_ = 0;
  if (!held_) held_ = std::make_unique<HeldReplies>();
  uint64_t held_id = held_->next_id++;
  held_->replies.push_back({held_id, std::move(bytes), false});
  hub_.barrier(shards, [this, alive = weak_from_this(), held_id] {
    if (alive.expired() || !held_) return;
    for (Held& h : held_->replies) {
      if (h.id == held_id) h.ready = true;
    }
    release_held();
  });
}

void Session::release_held() {
  auto& q = held_->replies;
  size_t n = 0;
  while (n < q.size() && q[n].ready) emit(q[n++].bytes);
  q.erase(q.begin(), q.begin() + static_cast<std::ptrdiff_t>(n));
  if (q.empty()) held_.reset();
}

void Session::emit(const reactor::SharedBytes& bytes) {
  if (bytes) {
    send_bytes(bytes);
  } else {
    conn_.close_after_flush("peer closed the connection");
  }
}

void Session::native_leave(const std::string& room) {
  if (hub_.leave(room, this) != HubError::kNone) return error("not_member", "not in room '" + room + "'");
  std::erase(rooms_, room);
  touched(room);
  reply({{"type", "left"}, {"room", room}});
}

void Session::on_close() {
  auto& budgets = log_budgets_of_this_reactor();
  if (auto it = budgets.find(id()); it != budgets.end()) {
    if (it->second.suppressed() > 0 && article_problems_of_this_reactor().allow()) {
      LOG_INFO("connection %llu (article dialect): %llu more problems like those were not logged",
               static_cast<unsigned long long>(conn_.id()), static_cast<unsigned long long>(it->second.suppressed()));
    }
    budgets.erase(it);
  }
  hub_.leave_all(this, rooms_);
  rooms_.clear();
  if (state_ == State::kNative) hub_.table().release_name(name_, id());
}

void Session::reply(const json& j) { queue_reply(json_line(j)); }

void Session::queue_reply(reactor::SharedBytes bytes) {
  if (!held_) return emit(bytes);
  if (held_->replies.size() > kMaxHeld) {
    ++stats_.errors_request;
    conn_.close_soon("too many requests waiting behind a ping (" + std::to_string(kMaxHeld) + ")");
    return;
  }
  held_->replies.push_back({held_->next_id++, std::move(bytes), true});
}

void Session::error(const char* code, const std::string& message) {
  reply({{"type", "error"}, {"code", code}, {"message", message}});
}

void Session::article_problem(const char* what, std::string_view frame) {
  // The article's dialect has no error message: the server logs (as the article's server prints),
  // counts, and goes on with the next object. Within a budget per connection and per reactor:
  // 1 MB of "{}" is 500,000 problems, not 500,000 lines.
  reactor::LogLimiter& budget =
      log_budgets_of_this_reactor().try_emplace(id(), kLogBurst, kLogWindow).first->second;
  uint64_t left_out = 0;
  if (!budget.allow(&left_out) || !article_problems_of_this_reactor().allow()) return;
  LOG_INFO("connection %llu (article dialect): %s%s%s%s", static_cast<unsigned long long>(conn_.id()), what,
           frame.empty() ? "" : ": ", preview(frame).c_str(), reactor::more_like_it(left_out).c_str());
}

void Session::deliver(const EventPtr& event) {
  const auto& bytes = event->bytes(dialect());
  if (!bytes) return;
  ++stats_.deliveries;
  send_bytes(bytes);
}

void Session::send_bytes(const reactor::SharedBytes& bytes) {
  reactor::SendResult r = conn_.send(bytes);
  if (r == reactor::SendResult::kOverLimit) {
    ++stats_.slow_consumer_closes;  // the connection closes itself after the dispatch
    return;
  }
  if (r != reactor::SendResult::kQueued) return;
  stats_.bytes_out += bytes->size();
  // Soft limit (Redis's client-output-buffer-limit): above it for longer than the grace, closed.
  if (conn_.queued_footprint() <= limits_.output_soft) {
    over_soft_since_ = {};
    return;
  }
  auto now = reactor::Clock::now();
  if (over_soft_since_ == reactor::Clock::time_point{}) {
    over_soft_since_ = now;
  } else if (now - over_soft_since_ > limits_.soft_grace) {
    ++stats_.slow_consumer_closes;
    conn_.close_soon("slow consumer: over the soft output limit of " + std::to_string(limits_.output_soft) +
                     " bytes for more than " + std::to_string(limits_.soft_grace.count()) + " ms");
  }
}

}  // namespace chat
