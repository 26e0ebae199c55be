#include "chat/core/hub.h"

#include <algorithm>

namespace chat {

// ---- Hub: the owner's side (joins, leaves, presence, messages) ------------------------------------

Refusal Hub::join_refusal(const OwnedRoom& r, const std::string& name, FormatId format, const std::string& key) const {
  const RoomPolicy* p = r.policy.get();
  if (p == nullptr || name.empty()) return Refusal::kNone;  // anonymous members are never refused
  std::string folded = ShardTable::fold_name(name);
  if (p->banned(name, Format::by_id(format).front()) && !p->invited.contains(folded)) {
    return Refusal::kBanned;
  }
  if (p->invite_only && !p->invited.contains(folded)) return Refusal::kInviteOnly;
  if (!p->key.empty() && key != p->key) return Refusal::kBadKey;
  // An invitation lets a member past the limit too.
  if (p->limit > 0 && r.names.size() >= p->limit && !p->invited.contains(folded)) return Refusal::kFull;
  return Refusal::kNone;
}

void Hub::owner_join(const std::string& room_name, size_t shard, uint64_t member_id, const std::string& name,
                     FormatId format, bool want_reply, const std::string& key) {
  // The server's limits apply to named members (the article's dialect's are anonymous, in the lobby
  // only, and bounded by the connection limits).
  auto existing = owned_.find(room_name);
  Refusal why = Refusal::kNone;
  if (existing != owned_.end()) {
    why = join_refusal(existing->second, name, format, key);
    if (why == Refusal::kNone && !name.empty() && table_.max_room_members() > 0 &&
        existing->second.count >= table_.max_room_members()) {
      why = Refusal::kRoomLimit;
    }
  } else if (!table_.open_room(/*forced=*/name.empty())) {
    why = Refusal::kServerRooms;
  }
  if (why != Refusal::kNone) {
    // Not counted: the member's shard takes it out again and tells it.
    table_.run_on(shard, shard_, [&hub = table_.hub(shard), room_name, member_id, why] {
      if (Member* m = hub.drop_local(room_name, member_id)) m->join_refused(room_name, why);
    });
    return;
  }
  OwnedRoom& r = owned_[room_name];
  if (r.shard_count.empty()) r.shard_count.assign(table_.shards(), 0);
  if (r.created_ms == 0) r.created_ms = now_ms();
  ++r.count;
  ++r.format_count[format];
  ++r.shard_count[shard];
  Router& router = table_.router();
  if (r.count == 1) router.room_opened(*this, room_name);
  if (!name.empty()) {
    // The first named member of a room is its operator.
    r.names.emplace(name, NamedMember{format, shard, member_id, MemberModes{.op = r.names.empty(), .voice = false}});
    if (r.policy) r.policy->invited.erase(ShardTable::fold_name(name));
    owner_presence(room_name, r, EventKind::kJoin, name, format, member_id, member_id);
  }
  if (!want_reply) return;
  auto answer = std::make_shared<JoinAnswer>();
  answer->count = r.count;
  answer->listed = r.count <= table_.presence_max_members();
  if (answer->listed) {
    answer->names.reserve(r.names.size());
    for (const auto& [n, m] : r.names) {
      answer->names.push_back(n);
      answer->modes.push_back(m.modes);
    }
  }
  const RoomLog& log = logs_[room_name];
  answer->topic = log.topic;
  answer->topic_by = log.topic_by;
  answer->topic_at = log.topic_at;
  router.when_visible(*this, room_name, [table = &table_, shard, room_name, member_id,
                                         answer = std::shared_ptr<const JoinAnswer>(std::move(answer))](size_t from) {
    // On the owner, the member counted: what it missed is at or below the room's last delivered
    // number now, and every number above reaches it live.
    uint64_t seq = table->hub(from).log(room_name).delivered_seq;
    table->run_on(shard, from, [&hub = table->hub(shard), room_name, member_id, answer, seq] {
      hub.reply_joined(room_name, member_id, answer, seq);
    });
  });
}

void Hub::owner_leave(const std::string& room_name, size_t shard, uint64_t member_id, const std::string& name,
                      FormatId format, bool quit, const std::string& reason) {
  auto it = owned_.find(room_name);
  if (it == owned_.end()) return;
  OwnedRoom& r = it->second;
  if (!name.empty()) {
    // Not counted (its join was refused), or removed already (kicked): nothing to undo.
    auto named = r.names.find(name);
    if (named == r.names.end() || named->second.id != member_id) return;
    // A member whose format plays a room's history back when it joins: from next time on, only
    // what comes after what it was sent until now.
    if (Format::by_id(format).plays_back()) {
      table_.store().set_mark(table_.reactor(shard_), ShardTable::fold_name(name), room_name, logs_[room_name].delivered_seq);
    }
  }
  if (owner_uncount(it, shard, format)) return;
  if (!name.empty()) {
    r.names.erase(name);
    owner_presence(room_name, r, EventKind::kLeave, name, format, member_id, 0, reason, quit);
  }
}

bool Hub::owner_uncount(std::unordered_map<std::string, OwnedRoom>::iterator it, size_t shard, FormatId format) {
  OwnedRoom& r = it->second;
  --r.count;
  --r.format_count[format];
  --r.shard_count[shard];
  if (r.count != 0) return false;
  auto closed = owned_.extract(it);  // an empty room's members are forgotten; its numbering stays (logs_)
  table_.close_room();
  table_.router().room_closed(*this, closed.key());
  return true;
}

void Hub::owner_rename(const std::string& room_name, uint64_t member_id, const std::string& old_name,
                       const std::string& new_name, FormatId format) {
  auto it = owned_.find(room_name);
  if (it == owned_.end()) return;
  OwnedRoom& r = it->second;
  auto named = r.names.find(old_name);
  if (named == r.names.end() || named->second.id != member_id) return;
  NamedMember entry = named->second;
  r.names.erase(named);
  r.names.emplace(new_name, entry);
  // Not to the member itself: its front end answered the change at once.
  owner_presence(room_name, r, EventKind::kRename, old_name, format, member_id, member_id, new_name);
}

std::pair<const std::string, Hub::NamedMember>* Hub::find_named(OwnedRoom& r, const std::string& name) {
  if (auto it = r.names.find(name); it != r.names.end()) return &*it;
  std::string folded = ShardTable::fold_name(name);
  for (auto& entry : r.names) {
    if (ShardTable::fold_name(entry.first) == folded) return &entry;
  }
  return nullptr;
}


void Hub::owner_presence(const std::string& room_name, OwnedRoom& r, EventKind kind, const std::string& user,
                         FormatId format, uint64_t member_id, uint64_t except_id, const std::string& text, bool quit) {
  if (r.count > table_.presence_max_members()) return;
  if ((kind == EventKind::kJoin || kind == EventKind::kLeave) &&
      !presence_passes(room_name, r, kind == EventKind::kJoin, user, format, member_id)) {
    return;
  }
  RoomEvent event = member_event(kind, room_name, user, text, format, member_id);
  event.quit = quit;
  if (auto delivery = render(r, std::move(event))) {
    owner_broadcast(room_name, r, delivery, except_id);
  }
}

bool Hub::presence_passes(const std::string& room, OwnedRoom& r, bool in, const std::string& user, FormatId format,
                          uint64_t member_id) {
  auto now = reactor::Clock::now();
  if (!r.churn) r.churn = std::make_unique<std::unordered_map<std::string, PresenceChurn>>();
  auto& churn = *r.churn;
  if (churn.size() > 2 * r.names.size() + 16) {  // forget those whose window is over (and not held)
    std::erase_if(churn, [now](const auto& e) { return !e.second.held && now - e.second.window_start >= kPresenceWindow; });
  }
  PresenceChurn& c = churn[user];
  c.format = format;
  c.member_id = member_id;
  if (c.held) {
    ++presence_held_;
    return false;
  }
  if (now - c.window_start >= kPresenceWindow) {
    c.window_start = now;
    c.events = 0;
  }
  if (c.events < kPresenceBurst) {
    ++c.events;
    c.announced_in = in;
    return true;
  }
  c.held = true;
  ++presence_held_;
  table_.reactor(shard_).run_after(c.window_start + kPresenceWindow - now,
                                   [this, room, user] { flush_presence(room, user); });
  return false;
}

void Hub::flush_presence(const std::string& room, const std::string& user) {
  auto it = owned_.find(room);
  if (it == owned_.end() || !it->second.churn) return;  // everyone left meanwhile: no one to tell
  OwnedRoom& r = it->second;
  auto c = r.churn->find(user);
  if (c == r.churn->end()) return;
  PresenceChurn& p = c->second;
  p.held = false;
  p.window_start = reactor::Clock::now();
  p.events = 0;
  auto named = r.names.find(user);
  bool in = named != r.names.end();
  if (in == p.announced_in) return;  // came and went (or went and came): nothing to tell
  p.announced_in = in;
  if (r.count > table_.presence_max_members()) return;
  ++p.events;
  FormatId format = in ? named->second.format : p.format;
  uint64_t member_id = in ? named->second.id : p.member_id;
  RoomEvent event = member_event(in ? EventKind::kJoin : EventKind::kLeave, room, user, {}, format, member_id);
  if (auto delivery = render(r, std::move(event))) owner_broadcast(room, r, delivery, in ? member_id : 0);
}

void Hub::owner_publish(const std::string& room_name, Publish publish) {
  auto refuse = [&](Refusal why) {
    if (publish.automatic) return;  // an automatic message is never answered, not even with a refusal
    table_.run_on(publish.shard, shard_,
                  [&hub = table_.hub(publish.shard), room_name, id = publish.member_id, msg_id = publish.id, why] {
                    auto m = hub.members_.find(id);
                    if (m != hub.members_.end()) m->second->publish_refused(room_name, why, msg_id);
                  });
  };
  auto it = owned_.find(room_name);
  if (publish.external) {
    // From outside the room: only to a room that exists and allows it (-n).
    if (it == owned_.end()) return refuse(Refusal::kNoSuchRoom);
    if (!it->second.policy || it->second.policy->no_external) return refuse(Refusal::kNoExternal);
  }
  if (it != owned_.end() && it->second.policy && it->second.policy->moderated) {
    auto named = it->second.names.find(publish.user);
    bool may = named != it->second.names.end() && (named->second.modes.op || named->second.modes.voice);
    if (!may) return refuse(Refusal::kModerated);
  }
  // Also when everyone left meanwhile: the message was accepted, it is kept (and acknowledged).
  table_.router().route(*this, room_name, std::move(publish));
}

void Hub::deliver_message(const std::string& room_name, StoredMessage m) {
  RoomLog& log = logs_[room_name];
  if (m.seq == 0) {
    m.seq = ++log.last_seq;  // the router could not number it (Redis away): the owner does
  } else {
    log.last_seq = std::max(log.last_seq, m.seq);  // numbered elsewhere (Redis): the owner follows
  }
  log.delivered_seq = std::max(log.delivered_seq, m.seq);
  auto it = owned_.find(room_name);
  if (it == owned_.end()) return;  // everyone left meanwhile
  OwnedRoom& r = it->second;
  auto delivery = render(r, message_event(room_name, m));
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

RoomEvent Hub::member_event(EventKind kind, const std::string& room, const std::string& user,
                            const std::string& text, FormatId format, uint64_t member_id) {
  RoomEvent event;
  event.kind = kind;
  event.room = room;
  event.user = user;
  event.text = text;
  event.front = Format::by_id(format).front();
  event.member = member_id;
  return event;
}

}  // namespace chat
