// Hub: rooms and their members. It never sees a socket: a member is anything that can take an
// event, and an event carries its bytes already serialised once per wire dialect, immutable and
// shared, so every recipient's output queue holds a reference, never a copy.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "reactor/output_queue.h"

namespace chat {

enum class Dialect : uint8_t { kArticle, kNative };

// One outgoing event, immutable once built. Bytes exist for the dialects that need them.
struct Event {
  reactor::SharedBytes native;   // a JSON line
  reactor::SharedBytes article;  // "[user] text\n"; null for events the article dialect does not carry
  const reactor::SharedBytes& bytes(Dialect d) const { return d == Dialect::kNative ? native : article; }
};
using EventPtr = std::shared_ptr<const Event>;

class Member {
 public:
  virtual ~Member() = default;
  virtual Dialect dialect() const = 0;
  virtual const std::string& name() const = 0;  // native members; "" for the article's
  virtual void deliver(const EventPtr& event) = 0;
};

enum class HubError { kNone, kNoSuchRoom, kNotMember, kAlreadyMember, kNameTaken };
const char* hub_error_code(HubError e);

struct PublishResult {
  HubError error = HubError::kNone;
  uint64_t seq = 0;
  size_t recipients = 0;
};

class Hub {
 public:
  // Presence events (join/leave) and member lists are sent only in rooms with at most
  // `presence_max_members` members: in a room of 10,000, one join would otherwise cost 10,000
  // deliveries, and everyone joining would cost 50 million.
  explicit Hub(size_t presence_max_members = 100) : presence_max_members_(presence_max_members) {}

  // Native names are unique among connected members.
  bool claim_name(const std::string& name, Member* member);
  void release_name(const std::string& name, Member* member);

  // Join: other members get a presence event; `names` gets the native members present after the
  // join (when the room is small enough for presence), `count` all of them.
  HubError join(const std::string& room, Member* member, std::vector<std::string>* names = nullptr,
                size_t* count = nullptr);
  HubError leave(const std::string& room, Member* member);
  // Leaves every room `member` is in (when its connection closes).
  void leave_all(Member* member, const std::vector<std::string>& rooms);

  // Sends `text` from `user` to every member of `room`, the sender included.
  PublishResult publish(const std::string& room, Member* from, std::string_view user, std::string_view text);

  bool is_member(const std::string& room, Member* member) const;
  size_t room_count() const { return rooms_.size(); }
  size_t member_count(const std::string& room) const;

 private:
  struct Room {
    std::vector<Member*> members;
    std::unordered_map<Member*, size_t> index;  // member -> position in members
    size_t dialect_count[2] = {0, 0};
    uint64_t next_seq = 1;
  };
  void broadcast_presence(Room& room, const std::string& room_name, const char* type,
                          const std::string& user, Member* except);

  size_t presence_max_members_;
  std::unordered_map<std::string, Room> rooms_;
  std::unordered_map<std::string, Member*> names_;
};

// Serialisation of the native dialect's lines (shared with the sessions).
std::string native_message_line(std::string_view room, std::string_view user, std::string_view text,
                                int64_t ts_ms, uint64_t seq);
int64_t now_ms();

}  // namespace chat
