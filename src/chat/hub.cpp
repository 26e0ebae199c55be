#include "chat/hub.h"

#include <algorithm>
#include <stdexcept>

namespace chat {

// ---- ShardTable ----------------------------------------------------------------------------------

ShardTable::ShardTable(size_t shards, size_t presence_max_members)
    : presence_max_members_(presence_max_members),
      inbox_(std::make_unique<std::atomic<size_t>[]>(shards)),
      hubs_(shards, nullptr),
      reactors_(shards, nullptr) {
  if (shards == 0 || shards > kMaxShards) {
    throw std::invalid_argument("shards must be 1 to " + std::to_string(kMaxShards));
  }
}

size_t ShardTable::owner_of(const std::string& room) const {
  return hubs_.size() == 1 ? 0 : std::hash<std::string>{}(room) % hubs_.size();
}

void ShardTable::attach(size_t index, reactor::Reactor& reactor, Hub& hub) {
  hubs_[index] = &hub;
  reactors_[index] = &reactor;
}

void ShardTable::run_on(size_t to, size_t from, reactor::Reactor::Task task, size_t cost) {
  if (to == from) return task();
  inbox_[to].fetch_add(cost, std::memory_order_relaxed);
  reactors_[to]->post([this, to, cost, task = std::move(task)] {
    task();
    // seq_cst with wait_for_room's: either the drain sees the waiting bit, or the waiter sees the
    // drained inbox (never neither, which would leave a shard paused for good).
    size_t left = inbox_[to].fetch_sub(cost) - cost;
    if (left < kInboxLow && waiting_.load() != 0) wake_waiting(to);
  });
}

bool ShardTable::congested() const {
  for (size_t k = 0; k < hubs_.size(); ++k) {
    if (inbox_[k].load() > kInboxHigh) return true;
  }
  return false;
}

bool ShardTable::wait_for_room(size_t shard) {
  uint64_t bit = uint64_t{1} << shard;
  waiting_.fetch_or(bit);
  if (congested()) return true;
  waiting_.fetch_and(~bit);  // a drain may have posted a resume meanwhile: a harmless extra
  return false;
}

void ShardTable::wake_waiting(size_t from) {
  if (congested()) return;  // another inbox is still high: its drain wakes them
  uint64_t waiting = waiting_.exchange(0);
  for (size_t k = 0; waiting != 0; ++k, waiting >>= 1) {
    if (waiting & 1) run_on(k, from, [&hub = *hubs_[k]] { hub.resume_paused(); });
  }
}

bool ShardTable::admit(size_t max) {
  size_t n = admitted_.load(std::memory_order_relaxed);
  do {
    if (n >= max) return false;
  } while (!admitted_.compare_exchange_weak(n, n + 1, std::memory_order_relaxed));
  return true;
}

bool ShardTable::claim_name(const std::string& name, uint64_t member_id) {
  std::lock_guard<std::mutex> lock(names_mutex_);
  return names_.emplace(name, member_id).second;
}

bool ShardTable::name_held(const std::string& name) {
  std::lock_guard<std::mutex> lock(names_mutex_);
  return names_.contains(name);
}

void ShardTable::release_name(const std::string& name, uint64_t member_id) {
  std::lock_guard<std::mutex> lock(names_mutex_);
  auto it = names_.find(name);
  if (it != names_.end() && it->second == member_id) names_.erase(it);
}

// ---- Hub: the member's side -------------------------------------------------------------------

Hub::Hub(ShardTable& table, size_t shard) : table_(table), shard_(shard) {}

HubError Hub::join(const std::string& room_name, Member* member, bool want_reply) {
  LocalRoom& room = local_[room_name];
  if (!room.index.emplace(member->id(), room.members.size()).second) return HubError::kAlreadyMember;
  room.members.push_back(member);
  size_t owner = table_.owner_of(room_name);
  table_.run_on(owner, shard_, [&hub = table_.hub(owner), room_name, shard = shard_, id = member->id(),
                                name = member->name(), format = member->format(), want_reply] {
    hub.owner_join(room_name, shard, id, name, format, want_reply);
  });
  return HubError::kNone;
}

HubError Hub::leave(const std::string& room_name, Member* member) {
  auto it = local_.find(room_name);
  if (it == local_.end()) return HubError::kNotMember;
  LocalRoom& room = it->second;
  auto pos = room.index.find(member->id());
  if (pos == room.index.end()) return HubError::kNotMember;
  size_t i = pos->second;
  room.index.erase(pos);
  if (i + 1 != room.members.size()) {
    room.members[i] = room.members.back();
    room.index[room.members[i]->id()] = i;
  }
  room.members.pop_back();
  if (room.members.empty()) local_.erase(it);
  size_t owner = table_.owner_of(room_name);
  table_.run_on(owner, shard_, [&hub = table_.hub(owner), room_name, shard = shard_, name = member->name(),
                                format = member->format()] {
    hub.owner_leave(room_name, shard, name, format);
  });
  return HubError::kNone;
}

void Hub::leave_all(Member* member, const std::vector<std::string>& rooms) {
  for (const auto& r : rooms) leave(r, member);
}

bool Hub::is_member(const std::string& room, const Member* member) const {
  auto it = local_.find(room);
  return it != local_.end() && it->second.index.contains(member->id());
}

size_t Hub::local_member_count(const std::string& room) const {
  auto it = local_.find(room);
  return it == local_.end() ? 0 : it->second.members.size();
}

HubError Hub::publish(const std::string& room, Member* from, std::string_view user, std::string_view text) {
  if (!is_member(room, from)) return HubError::kNotMember;
  size_t owner = table_.owner_of(room);
  if (owner == shard_) {
    owner_publish(room, std::string(user), std::string(text));
  } else {
    table_.run_on(
        owner, shard_,
        [&hub = table_.hub(owner), room, user = std::string(user), text = std::string(text)] {
          hub.owner_publish(room, user, text);
        },
        ShardTable::message_cost(room, user, text));
  }
  return HubError::kNone;
}

void Hub::barrier(const std::vector<size_t>& shards, std::function<void()> done) {
  auto remaining = std::make_shared<size_t>(shards.size());
  auto shared_done = std::make_shared<std::function<void()>>(std::move(done));
  if (shards.empty()) return (*shared_done)();
  // Only the table and shard numbers travel: a shard's hub may be gone by the time an
  // acknowledgement runs elsewhere at shutdown.
  ShardTable* table = &table_;
  size_t home = shard_;
  for (size_t k : shards) {
    table->run_on(k, home, [table, home, k, remaining, shared_done] {
      // What shard k handed on to the router (Redis) has to come back too.
      table->router().pass(k, [table, home, k, remaining, shared_done] {
        table->run_on(home, k, [remaining, shared_done] {
          if (--*remaining == 0) (*shared_done)();
        });
      });
    });
  }
}

void Hub::wait_for_room(std::function<void()> resume) {
  paused_.push_back(std::move(resume));
  // The first one marks the shard waiting; later ones ride on the same mark (or on a resume
  // already posted to this shard).
  if (paused_.size() == 1 && !table_.wait_for_room(shard_)) resume_paused();
}

void Hub::resume_paused() {
  auto paused = std::move(paused_);
  paused_.clear();
  for (auto& resume : paused) resume();
}

void Hub::deliver_local(const std::string& room, const Delivery& delivery, uint64_t except_id) {
  auto it = local_.find(room);
  if (it == local_.end()) return;
  for (Member* m : it->second.members) {
    if (m->id() != except_id) m->deliver(delivery);
  }
}

void Hub::reply_joined(const std::string& room, uint64_t member_id, size_t count,
                       const std::shared_ptr<const std::vector<std::string>>& names) {
  auto it = local_.find(room);
  if (it == local_.end()) return;
  auto pos = it->second.index.find(member_id);
  if (pos == it->second.index.end()) return;  // left (or closed) before the answer came back
  it->second.members[pos->second]->joined(room, count, names.get());
}

// ---- Hub: the owner's side --------------------------------------------------------------------

void Hub::owner_join(const std::string& room_name, size_t shard, uint64_t member_id, const std::string& name,
                     FormatId format, bool want_reply) {
  OwnedRoom& r = owned_[room_name];
  if (r.shard_count.empty()) r.shard_count.assign(table_.shards(), 0);
  ++r.count;
  ++r.format_count[format];
  ++r.shard_count[shard];
  Router& router = table_.router();
  if (r.count == 1) router.room_opened(*this, room_name);
  if (!name.empty()) {
    r.names.insert(name);
    owner_presence(room_name, r, EventKind::kJoin, name, member_id);
  }
  if (!want_reply) return;
  std::shared_ptr<const std::vector<std::string>> names;
  if (r.count <= table_.presence_max_members()) {
    names = std::make_shared<const std::vector<std::string>>(r.names.begin(), r.names.end());
  }
  router.when_visible(*this, room_name, [table = &table_, shard, room_name, member_id, count = r.count, names](size_t from) {
    table->run_on(shard, from, [&hub = table->hub(shard), room_name, member_id, count, names] {
      hub.reply_joined(room_name, member_id, count, names);
    });
  });
}

void Hub::owner_leave(const std::string& room_name, size_t shard, const std::string& name, FormatId format) {
  auto it = owned_.find(room_name);
  if (it == owned_.end()) return;
  OwnedRoom& r = it->second;
  --r.count;
  --r.format_count[format];
  --r.shard_count[shard];
  if (r.count == 0) {
    owned_.erase(it);  // an empty room is forgotten, its numbering with it
    table_.router().room_closed(*this, room_name);
    return;
  }
  if (!name.empty()) {
    r.names.erase(name);
    owner_presence(room_name, r, EventKind::kLeave, name, 0);
  }
}

void Hub::owner_presence(const std::string& room_name, OwnedRoom& r, EventKind kind, const std::string& user,
                         uint64_t except_id) {
  if (r.count > table_.presence_max_members()) return;
  RoomEvent event;
  event.kind = kind;
  event.room = room_name;
  event.user = user;
  if (auto delivery = render(r, std::move(event))) {
    owner_broadcast(room_name, r, delivery, except_id);
  }
}

void Hub::owner_publish(const std::string& room_name, const std::string& user, const std::string& text) {
  auto it = owned_.find(room_name);
  if (it == owned_.end()) return;  // everyone left meanwhile
  table_.router().route(*this, room_name, user, text, it->second.next_seq);
}

void Hub::deliver_message(const std::string& room_name, const std::string& user, const std::string& text,
                          int64_t ts_ms, uint64_t seq) {
  auto it = owned_.find(room_name);
  if (it == owned_.end()) return;  // everyone left meanwhile
  OwnedRoom& r = it->second;
  if (seq == 0) {
    seq = r.next_seq++;
  } else {
    r.next_seq = std::max(r.next_seq, seq + 1);
  }
  auto delivery = render(
      r, RoomEvent{.kind = EventKind::kMessage, .room = room_name, .user = user, .text = text, .ts_ms = ts_ms, .seq = seq});
  if (delivery) owner_broadcast(room_name, r, delivery, 0);
}

DeliveryPtr Hub::render(const OwnedRoom& r, RoomEvent event) const {
  // Once per format present in the room; every member of that format gets a reference.
  auto delivery = std::make_shared<Delivery>();
  delivery->event = std::move(event);
  bool any = false;
  size_t formats = Format::count();
  for (size_t f = 0; f < formats; ++f) {
    if (r.format_count[f] == 0) continue;
    delivery->bytes[f] = Format::by_id(static_cast<FormatId>(f)).encode(delivery->event);
    any = any || delivery->bytes[f] != nullptr;
  }
  return any ? delivery : nullptr;
}

void Hub::owner_broadcast(const std::string& room_name, const OwnedRoom& r, const DeliveryPtr& delivery,
                          uint64_t except_id) {
  size_t cost = ShardTable::kTaskCost + room_name.size() + delivery->bytes_size();
  for (size_t k = 0; k < r.shard_count.size(); ++k) {
    if (r.shard_count[k] == 0) continue;
    if (k == shard_) {
      deliver_local(room_name, *delivery, except_id);
    } else {
      table_.run_on(
          k, shard_,
          [&hub = table_.hub(k), room_name, delivery, except_id] { hub.deliver_local(room_name, *delivery, except_id); },
          cost);
    }
  }
}

}  // namespace chat
