#include "chat/core/hub.h"

#include <algorithm>

namespace chat {

// ---- Hub: the member's side -------------------------------------------------------------------

Hub::Hub(ShardTable& table, size_t shard) : table_(table), shard_(shard), logs_(table.take_logs(shard)) {}

HubError Hub::join(const std::string& room_name, Member* member, bool want_reply, const std::string& key) {
  LocalRoom& room = local_[room_name];
  if (!room.index.emplace(member->id(), room.members.size()).second) return HubError::kAlreadyMember;
  room.members.push_back(member);
  size_t owner = table_.owner_of(room_name);
  table_.run_on(owner, shard_, [&hub = table_.hub(owner), room_name, shard = shard_, id = member->id(),
                                name = member->name(), format = member->format(), want_reply, key] {
    hub.owner_join(room_name, shard, id, name, format, want_reply, key);
  });
  return HubError::kNone;
}

Member* Hub::drop_local(const std::string& room_name, uint64_t member_id) {
  auto it = local_.find(room_name);
  if (it == local_.end()) return nullptr;
  LocalRoom& room = it->second;
  auto pos = room.index.find(member_id);
  if (pos == room.index.end()) return nullptr;
  size_t i = pos->second;
  Member* member = room.members[i];
  room.index.erase(pos);
  if (i + 1 != room.members.size()) {
    room.members[i] = room.members.back();
    room.index[room.members[i]->id()] = i;
  }
  room.members.pop_back();
  if (room.members.empty()) local_.erase(it);
  return member;
}

HubError Hub::leave(const std::string& room_name, Member* member, bool quit, const std::string& reason) {
  if (drop_local(room_name, member->id()) == nullptr) return HubError::kNotMember;
  size_t owner = table_.owner_of(room_name);
  table_.run_on(owner, shard_, [&hub = table_.hub(owner), room_name, shard = shard_, id = member->id(),
                                name = member->name(), format = member->format(), quit, reason] {
    hub.owner_leave(room_name, shard, id, name, format, quit, reason);
  });
  return HubError::kNone;
}

void Hub::leave_all(Member* member, const std::vector<std::string>& rooms, bool quit, const std::string& reason) {
  for (const auto& r : rooms) leave(r, member, quit, reason);
}

void Hub::rename(Member* member, const std::string& old_name, const std::vector<std::string>& rooms) {
  for (const std::string& room : rooms) {
    size_t owner = table_.owner_of(room);
    table_.run_on(owner, shard_, [&hub = table_.hub(owner), room, id = member->id(), old_name,
                                  new_name = member->name(), format = member->format()] {
      hub.owner_rename(room, id, old_name, new_name, format);
    });
  }
}

bool Hub::is_member(const std::string& room, const Member* member) const {
  auto it = local_.find(room);
  return it != local_.end() && it->second.index.contains(member->id());
}

void Hub::inspect(const std::string& room, std::function<void(const RoomSnapshot&)> done) {
  ShardTable* table = &table_;
  table_.ask(table_.owner_of(room), shard_, [table, room](Hub& hub) {
    RoomSnapshot snap;
    if (auto it = hub.owned_.find(room); it != hub.owned_.end()) {
      const OwnedRoom& r = it->second;
      snap.count = r.count;
      snap.listed = r.count <= table->presence_max_members();
      if (snap.listed) {
        for (const auto& [name, m] : r.names) snap.members.push_back({name, Format::by_id(m.format).front(), m.modes});
      }
      if (r.policy) snap.policy = *r.policy;
      snap.policy.invited.clear();  // who was invited is the operators' business
      snap.created_ms = r.created_ms;
    }
    if (auto log = hub.logs_.find(room); log != hub.logs_.end()) {
      snap.topic = log->second.topic;
      snap.topic_by = log->second.topic_by;
      snap.topic_at = log->second.topic_at;
    }
    return snap;
  }, std::move(done));
}

void Hub::list_rooms(size_t limit, std::function<void(std::vector<RoomCount>)> done) {
  table_.gather_shards(
      shard_,
      [limit](size_t, Hub& hub) {
        std::vector<RoomCount> part;
        for (const auto& [room, r] : hub.owned_) {
          if (part.size() == limit) break;
          part.push_back({room, r.count, r.policy && r.policy->secret});
        }
        return part;
      },
      std::vector<RoomCount>{},
      [limit](std::vector<RoomCount>& rooms, size_t, std::vector<RoomCount>& part) {
        for (RoomCount& c : part) {
          if (rooms.size() < limit) rooms.push_back(std::move(c));
        }
      },
      std::move(done));
}

void Hub::find_members(const std::string& pattern, size_t limit, std::function<void(std::vector<MemberInfo>)> done) {
  table_.gather_shards(
      shard_,
      [pattern, limit](size_t, Hub& hub) {
        std::vector<MemberInfo> part;
        for (const auto& [id, m] : hub.members_) {
          if (part.size() == limit) break;
          if (!m->name().empty() && glob_match(pattern, m->name())) part.push_back(m->describe());
        }
        return part;
      },
      std::vector<MemberInfo>{},
      [limit](std::vector<MemberInfo>& found, size_t, std::vector<MemberInfo>& part) {
        for (MemberInfo& info : part) {
          if (found.size() < limit) found.push_back(std::move(info));
        }
      },
      std::move(done));
}

std::optional<size_t> Hub::direct(DirectMessage m, std::function<void(const DirectResult&)> done) {
  auto holder = table_.find_name(m.to);
  if (!holder) {
    done(DirectResult{});
    return std::nullopt;
  }
  size_t to = holder->shard;
  size_t cost = ShardTable::message_cost(m.to, m.from, m.text);
  table_.ask(
      to, shard_,
      [id = holder->member_id, m = std::move(m)](Hub& hub) {
        DirectResult r;
        if (auto it = hub.members_.find(id); it != hub.members_.end()) r = it->second->direct(m);  // else: gone meanwhile
        return r;
      },
      std::move(done), cost);
  return to;
}

std::optional<size_t> Hub::describe_member(const std::string& name,
                                           std::function<void(const std::optional<MemberInfo>&)> done) {
  auto holder = table_.find_name(name);
  if (!holder) {
    done(std::nullopt);
    return std::nullopt;
  }
  size_t to = holder->shard;
  table_.ask(to, shard_, [id = holder->member_id](Hub& hub) {
    std::optional<MemberInfo> info;
    if (auto it = hub.members_.find(id); it != hub.members_.end()) info = it->second->describe();
    return info;
  }, std::move(done));
  return to;
}

void Hub::everyone(const DirectMessage& message) {
  table_.each_shard(
      shard_,
      [message](Hub& hub) {
        std::vector<Member*> members;
        members.reserve(hub.members_.size());
        for (const auto& [id, m] : hub.members_) members.push_back(m);
        for (Member* m : members) {
          if (hub.members_.contains(m->id())) m->direct(message);
        }
      },
      ShardTable::message_cost(message.from, message.to, message.text));
}

void Hub::member_modes(const std::string& name, const std::vector<std::string>& rooms,
                       std::function<void(std::vector<MemberModes>)> done) {
  table_.gather(
      shard_, rooms.size(), [this, &rooms](size_t i) { return table_.owner_of(rooms[i]); },
      [rooms, name](size_t i, Hub& hub) {
        MemberModes modes;
        if (auto it = hub.owned_.find(rooms[i]); it != hub.owned_.end()) {
          if (auto named = it->second.names.find(name); named != it->second.names.end()) modes = named->second.modes;
        }
        return modes;
      },
      std::vector<MemberModes>(rooms.size()),
      [](std::vector<MemberModes>& modes, size_t i, const MemberModes& answer) { modes[i] = answer; }, std::move(done));
}

void Hub::policy(const std::string& room, const Member* member, PolicyRequest request,
                 std::function<void(const PolicyAnswer&)> done) {
  table_.ask(
      table_.owner_of(room), shard_,
      [room, name = member->name(), id = member->id(), request = std::move(request)](Hub& hub) {
        return hub.owner_policy(room, name, id, request);
      },
      std::move(done));
}

size_t Hub::local_member_count(const std::string& room) const {
  auto it = local_.find(room);
  return it == local_.end() ? 0 : it->second.members.size();
}

size_t Hub::local_membership_count() const {
  size_t n = 0;
  for (const auto& [name, room] : local_) n += room.members.size();
  return n;
}

HubError Hub::publish(const std::string& room, Member* from, std::string_view user, std::string_view text,
                      std::string_view id, bool external, bool automatic) {
  bool member = is_member(room, from);
  if (!member && !external) return HubError::kNotMember;
  size_t owner = table_.owner_of(room);
  Publish p{.user = std::string(user),
            .text = std::string(text),
            .id = std::string(id),
            .front = Format::by_id(from->format()).front(),
            .shard = shard_,
            .member_id = from->id(),
            .external = !member,
            .automatic = automatic};
  if (owner == shard_) {
    owner_publish(room, std::move(p));
  } else {
    table_.run_on(
        owner, shard_, [&hub = table_.hub(owner), room, p = std::move(p)]() mutable { hub.owner_publish(room, std::move(p)); },
        ShardTable::message_cost(room, user, text) + id.size());
  }
  return HubError::kNone;
}

void Hub::barrier(const std::vector<size_t>& shards, std::function<void()> done) {
  if (shards.empty()) return done();
  // Only the table and shard numbers travel: a shard's hub may be gone by the time an
  // acknowledgement runs elsewhere at shutdown.
  ShardTable* table = &table_;
  size_t home = shard_;
  struct None {};
  table->gather_async(
      home, shards.size(), [&shards](size_t i) { return shards[i]; },
      [table](size_t, size_t k, auto reply) {
        // What shard k handed to the store, and on to the router (Redis), has to come back too.
        table->store().fence(table->reactor(k), [table, k, reply] { table->router().pass(k, [reply] { reply(None{}); }); });
      },
      None{}, [](None&, size_t, None&) {},
      // Back home, what this shard asked of the store itself (a replay or history read) has to be
      // answered too.
      [table, home, done = std::move(done)](None) { table->store().fence(table->reactor(home), done); });
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

void Hub::reply_joined(const std::string& room, uint64_t member_id, const std::shared_ptr<const JoinAnswer>& a,
                       uint64_t seq) {
  auto it = local_.find(room);
  if (it == local_.end()) return;
  auto pos = it->second.index.find(member_id);
  if (pos == it->second.index.end()) return;  // left (or closed) before the answer came back
  JoinReply reply{.count = a->count,
                  .names = a->listed ? &a->names : nullptr,
                  .epoch = table_.store().epoch(),
                  .seq = seq,
                  .modes = a->listed ? &a->modes : nullptr,
                  .topic = &a->topic,
                  .topic_by = &a->topic_by,
                  .topic_at = a->topic_at};
  it->second.members[pos->second]->joined(room, reply);
}

void Hub::ack(const Publish& p, const std::string& room, uint64_t seq, bool stored) {
  table_.run_on(p.shard, shard_, [&hub = table_.hub(p.shard), member_id = p.member_id, room, id = p.id, seq, stored] {
    auto it = hub.members_.find(member_id);
    if (it != hub.members_.end()) it->second->acked(room, id, seq, stored);  // else: gone meanwhile
  });
}

void Hub::id_reused(const Publish& p, const std::string& room) {
  table_.run_on(p.shard, shard_, [&hub = table_.hub(p.shard), member_id = p.member_id, room, id = p.id] {
    auto it = hub.members_.find(member_id);
    if (it != hub.members_.end()) it->second->publish_refused(room, Refusal::kIdReused, id);  // else: gone meanwhile
  });
}

}  // namespace chat
