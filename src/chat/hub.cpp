#include "chat/hub.h"

#include <chrono>
#include <nlohmann/json.hpp>

namespace chat {

using json = nlohmann::ordered_json;

const char* hub_error_code(HubError e) {
  switch (e) {
    case HubError::kNone: return "ok";
    case HubError::kNoSuchRoom: return "no_such_room";
    case HubError::kNotMember: return "not_member";
    case HubError::kAlreadyMember: return "already_member";
    case HubError::kNameTaken: return "name_taken";
  }
  return "error";
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string native_message_line(std::string_view room, std::string_view user, std::string_view text,
                                int64_t ts_ms, uint64_t seq) {
  json j = {{"type", "message"}, {"room", room}, {"user", user}, {"text", text}, {"ts", ts_ms}, {"seq", seq}};
  std::string line = j.dump(-1, ' ', false, json::error_handler_t::replace);
  line += '\n';
  return line;
}

bool Hub::claim_name(const std::string& name, Member* member) {
  return names_.emplace(name, member).second;
}

void Hub::release_name(const std::string& name, Member* member) {
  auto it = names_.find(name);
  if (it != names_.end() && it->second == member) names_.erase(it);
}

HubError Hub::join(const std::string& room_name, Member* member, std::vector<std::string>* names,
                   size_t* count) {
  Room& room = rooms_[room_name];
  if (room.index.contains(member)) return HubError::kAlreadyMember;
  room.index.emplace(member, room.members.size());
  room.members.push_back(member);
  ++room.dialect_count[static_cast<int>(member->dialect())];
  if (!member->name().empty()) broadcast_presence(room, room_name, "join", member->name(), member);
  if (count) *count = room.members.size();
  if (names && room.members.size() <= presence_max_members_) {
    for (Member* m : room.members) {
      if (!m->name().empty()) names->push_back(m->name());
    }
  }
  return HubError::kNone;
}

HubError Hub::leave(const std::string& room_name, Member* member) {
  auto it = rooms_.find(room_name);
  if (it == rooms_.end()) return HubError::kNotMember;
  Room& room = it->second;
  auto pos = room.index.find(member);
  if (pos == room.index.end()) return HubError::kNotMember;
  size_t i = pos->second;
  room.index.erase(pos);
  if (i + 1 != room.members.size()) {
    room.members[i] = room.members.back();
    room.index[room.members[i]] = i;
  }
  room.members.pop_back();
  --room.dialect_count[static_cast<int>(member->dialect())];
  if (room.members.empty()) {
    rooms_.erase(it);  // an empty room is forgotten, sequence numbers with it
  } else if (!member->name().empty()) {
    broadcast_presence(room, room_name, "leave", member->name(), member);
  }
  return HubError::kNone;
}

void Hub::leave_all(Member* member, const std::vector<std::string>& rooms) {
  for (const auto& r : rooms) leave(r, member);
}

bool Hub::is_member(const std::string& room, Member* member) const {
  auto it = rooms_.find(room);
  return it != rooms_.end() && it->second.index.contains(member);
}

size_t Hub::member_count(const std::string& room) const {
  auto it = rooms_.find(room);
  return it == rooms_.end() ? 0 : it->second.members.size();
}

void Hub::broadcast_presence(Room& room, const std::string& room_name, const char* type,
                             const std::string& user, Member* except) {
  if (room.dialect_count[static_cast<int>(Dialect::kNative)] == 0) return;
  if (room.members.size() > presence_max_members_) return;
  json j = {{"type", type}, {"room", room_name}, {"user", user}};
  auto event = std::make_shared<Event>();
  event->native = std::make_shared<const std::string>(j.dump() + "\n");
  EventPtr shared = event;
  for (Member* m : room.members) {
    if (m != except && m->dialect() == Dialect::kNative) m->deliver(shared);
  }
}

PublishResult Hub::publish(const std::string& room_name, Member* from, std::string_view user,
                           std::string_view text) {
  auto it = rooms_.find(room_name);
  if (it == rooms_.end() || !it->second.index.contains(from)) return {HubError::kNotMember, 0, 0};
  Room& room = it->second;
  uint64_t seq = room.next_seq++;
  // Serialise once per dialect present in the room; every member gets a reference.
  auto event = std::make_shared<Event>();
  if (room.dialect_count[static_cast<int>(Dialect::kNative)] > 0) {
    event->native = std::make_shared<const std::string>(native_message_line(room_name, user, text, now_ms(), seq));
  }
  if (room.dialect_count[static_cast<int>(Dialect::kArticle)] > 0) {
    std::string line;
    line.reserve(user.size() + text.size() + 4);
    line.append("[").append(user).append("] ").append(text).append("\n");
    event->article = std::make_shared<const std::string>(std::move(line));
  }
  EventPtr shared = event;
  for (Member* m : room.members) m->deliver(shared);
  return {HubError::kNone, seq, room.members.size()};
}

}  // namespace chat
