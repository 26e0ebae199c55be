#include "chat/core/hub.h"

#include <algorithm>
#include <stdexcept>

namespace chat {

// ---- ShardTable ----------------------------------------------------------------------------------

ShardTable::ShardTable(size_t shards, size_t presence_max_members)
    : presence_max_members_(presence_max_members),
      no_store_(make_memory_store(Retention{.max_messages = 0})),
      store_(no_store_.get()),
      preloaded_(shards),
      inbox_(std::make_unique<std::atomic<size_t>[]>(shards)),
      hubs_(shards, nullptr),
      reactors_(shards, nullptr) {
  if (shards == 0 || shards > kMaxShards) {
    throw std::invalid_argument("shards must be 1 to " + std::to_string(kMaxShards));
  }
}

void ShardTable::set_store(Store* store, const Retention& retention, std::vector<StoredRoom> rooms) {
  store_ = store;
  retention_ = retention;
  for (StoredRoom& r : rooms) {
    RoomLog& log = preloaded_[owner_of(r.room)][r.room];
    log.last_seq = r.last_seq;
    log.delivered_seq = r.last_seq;
    if (r.ids.empty()) continue;
    log.ids = std::make_unique<IdWindow>();
    for (StoredId& id : r.ids) log.ids->add(id.user, id.id, {id.seq, id.ts_ms, true, id.text_fp}, retention);
  }
}

std::unordered_map<std::string, RoomLog> ShardTable::take_logs(size_t shard) { return std::move(preloaded_[shard]); }

// ---- IdWindow ---------------------------------------------------------------------------------

IdWindow::Entry* IdWindow::find(const std::string& user, const std::string& id) {
  auto it = entries_.find(key(user, id));
  return it == entries_.end() ? nullptr : &it->second;
}

void IdWindow::add(const std::string& user, const std::string& id, Entry entry, const Retention& retention) {
  std::string k = key(user, id);
  order_.emplace_back(k, entry.seq);
  entries_[std::move(k)] = entry;
  // Forget the oldest while the window holds more than it must (by count and by age), and always
  // past the hard bound.
  int64_t young = entry.ts_ms - retention.dedupe_ms;
  while (order_.size() > retention.dedupe_ids) {
    auto& [old_key, seq] = order_.front();
    auto it = entries_.find(old_key);
    if (it != entries_.end() && it->second.seq == seq) {
      // Young enough to keep (and so is all after it), unless past the bound.
      if (it->second.ts_ms >= young && order_.size() <= retention.dedupe_max_ids) break;
      entries_.erase(it);
    }
    order_.pop_front();
  }
}

void IdWindow::forget(const std::string& user, const std::string& id) { entries_.erase(key(user, id)); }

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

bool ShardTable::open_room(bool forced) {
  size_t n = rooms_open_.load(std::memory_order_relaxed);
  do {
    if (!forced && max_server_rooms_ > 0 && n >= max_server_rooms_) return false;
  } while (!rooms_open_.compare_exchange_weak(n, n + 1, std::memory_order_relaxed));
  return true;
}

bool ShardTable::admit(size_t max) {
  size_t n = admitted_.load(std::memory_order_relaxed);
  do {
    if (n >= max) return false;
  } while (!admitted_.compare_exchange_weak(n, n + 1, std::memory_order_relaxed));
  return true;
}

std::string ShardTable::fold_name(std::string_view name) {
  std::string folded(name);
  for (char& c : folded) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return folded;
}

bool ShardTable::claim_name(const std::string& name, NameHolder holder) {
  std::string key = fold_name(name);
  std::lock_guard<std::mutex> lock(names_mutex_);
  bool claimed = names_.emplace(std::move(key), std::move(holder)).second;
  names_peak_ = std::max(names_peak_, names_.size());
  return claimed;
}

void ShardTable::set_name_flags(const std::string& name, uint64_t member_id, bool away, bool oper) {
  std::string key = fold_name(name);
  std::lock_guard<std::mutex> lock(names_mutex_);
  auto it = names_.find(key);
  if (it == names_.end() || it->second.member_id != member_id) return;
  it->second.away = away;
  it->second.oper = oper;
}

size_t ShardTable::name_peak() {
  std::lock_guard<std::mutex> lock(names_mutex_);
  return names_peak_;
}

std::vector<ShardTable::PastName> ShardTable::past_names(const std::string& name, size_t max) {
  std::string key = fold_name(name);
  std::vector<PastName> found;
  std::lock_guard<std::mutex> lock(names_mutex_);
  for (const PastName& p : past_names_) {
    if (found.size() >= max) break;
    if (fold_name(p.name) == key) found.push_back(p);
  }
  return found;
}

std::optional<ShardTable::NameHolder> ShardTable::find_name(const std::string& name) {
  std::string key = fold_name(name);
  std::lock_guard<std::mutex> lock(names_mutex_);
  auto it = names_.find(key);
  if (it == names_.end()) return std::nullopt;
  return it->second;
}

bool ShardTable::name_held(const std::string& name) {
  std::string key = fold_name(name);
  std::lock_guard<std::mutex> lock(names_mutex_);
  return names_.contains(key);
}

size_t ShardTable::name_count() {
  std::lock_guard<std::mutex> lock(names_mutex_);
  return names_.size();
}

void ShardTable::release_name(const std::string& name, uint64_t member_id) {
  std::string key = fold_name(name);
  std::lock_guard<std::mutex> lock(names_mutex_);
  auto it = names_.find(key);
  if (it == names_.end() || it->second.member_id != member_id) return;
  const NameHolder& h = it->second;
  past_names_.push_front(PastName{name, h.user, h.realname, h.front, now_ms()});
  if (past_names_.size() > kWhowas) past_names_.pop_back();
  names_.erase(it);
}

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
  size_t owner = table_.owner_of(room);
  table_.run_on(owner, shard_, [table = &table_, owner, home = shard_, room, done = std::move(done)]() mutable {
    RoomSnapshot snap;
    Hub& hub = table->hub(owner);
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
    table->run_on(home, owner, [snap = std::move(snap), done = std::move(done)] { done(snap); });
  });
}

void Hub::list_rooms(size_t limit, std::function<void(std::vector<RoomCount>)> done) {
  struct Gather {
    std::vector<RoomCount> rooms;
    size_t remaining;
    std::function<void(std::vector<RoomCount>)> done;
  };
  size_t n = table_.shards();
  auto g = std::make_shared<Gather>(Gather{{}, n, std::move(done)});
  for (size_t k = 0; k < n; ++k) {
    table_.run_on(k, shard_, [table = &table_, k, home = shard_, limit, g] {
      std::vector<RoomCount> part;
      for (const auto& [room, r] : table->hub(k).owned_) {
        if (part.size() == limit) break;
        part.push_back({room, r.count, r.policy && r.policy->secret});
      }
      table->run_on(home, k, [g, limit, part = std::move(part)]() mutable {
        for (RoomCount& c : part) {
          if (g->rooms.size() < limit) g->rooms.push_back(std::move(c));
        }
        if (--g->remaining == 0) g->done(std::move(g->rooms));
      });
    });
  }
}

void Hub::find_members(const std::string& pattern, size_t limit, std::function<void(std::vector<MemberInfo>)> done) {
  struct Gather {
    std::vector<MemberInfo> found;
    size_t remaining;
    std::function<void(std::vector<MemberInfo>)> done;
  };
  size_t n = table_.shards();
  auto g = std::make_shared<Gather>(Gather{{}, n, std::move(done)});
  for (size_t k = 0; k < n; ++k) {
    table_.run_on(k, shard_, [table = &table_, k, home = shard_, pattern, limit, g] {
      std::vector<MemberInfo> part;
      for (const auto& [id, m] : table->hub(k).members_) {
        if (part.size() == limit) break;
        if (!m->name().empty() && glob_match(pattern, m->name())) part.push_back(m->describe());
      }
      table->run_on(home, k, [g, limit, part = std::move(part)]() mutable {
        for (MemberInfo& info : part) {
          if (g->found.size() < limit) g->found.push_back(std::move(info));
        }
        if (--g->remaining == 0) g->done(std::move(g->found));
      });
    });
  }
}

std::optional<size_t> Hub::direct(DirectMessage m, std::function<void(const DirectResult&)> done) {
  auto holder = table_.find_name(m.to);
  if (!holder) {
    done(DirectResult{});
    return std::nullopt;
  }
  size_t to = holder->shard, home = shard_;
  size_t cost = ShardTable::message_cost(m.to, m.from, m.text);
  table_.run_on(
      to, home,
      [table = &table_, to, home, id = holder->member_id, m = std::move(m), done = std::move(done)]() mutable {
        DirectResult r;
        auto& members = table->hub(to).members_;
        if (auto it = members.find(id); it != members.end()) r = it->second->direct(m);  // else: gone meanwhile
        table->run_on(home, to, [r = std::move(r), done = std::move(done)] { done(r); });
      },
      cost);
  return to;
}

std::optional<size_t> Hub::whois(const std::string& name, std::function<void(const std::optional<MemberInfo>&)> done) {
  auto holder = table_.find_name(name);
  if (!holder) {
    done(std::nullopt);
    return std::nullopt;
  }
  size_t to = holder->shard, home = shard_;
  table_.run_on(to, home, [table = &table_, to, home, id = holder->member_id, done = std::move(done)]() mutable {
    std::optional<MemberInfo> info;
    auto& members = table->hub(to).members_;
    if (auto it = members.find(id); it != members.end()) info = it->second->describe();
    table->run_on(home, to, [info = std::move(info), done = std::move(done)] { done(info); });
  });
  return to;
}

void Hub::everyone(const DirectMessage& message) {
  for (size_t k = 0; k < table_.shards(); ++k) {
    table_.run_on(
        k, shard_,
        [&hub = table_.hub(k), message] {
          std::vector<Member*> members;
          members.reserve(hub.members_.size());
          for (const auto& [id, m] : hub.members_) members.push_back(m);
          for (Member* m : members) {
            if (hub.members_.contains(m->id())) m->direct(message);
          }
        },
        ShardTable::message_cost(message.from, message.to, message.text));
  }
}

void Hub::member_modes(const std::string& name, const std::vector<std::string>& rooms,
                       std::function<void(std::vector<MemberModes>)> done) {
  struct Gather {
    std::vector<MemberModes> modes;
    size_t remaining;
    std::function<void(std::vector<MemberModes>)> done;
  };
  auto g = std::make_shared<Gather>(Gather{std::vector<MemberModes>(rooms.size()), rooms.size(), std::move(done)});
  if (rooms.empty()) return g->done({});
  for (size_t i = 0; i < rooms.size(); ++i) {
    size_t owner = table_.owner_of(rooms[i]);
    table_.run_on(owner, shard_, [table = &table_, owner, home = shard_, room = rooms[i], name, i, g] {
      MemberModes modes;
      Hub& hub = table->hub(owner);
      if (auto it = hub.owned_.find(room); it != hub.owned_.end()) {
        if (auto named = it->second.names.find(name); named != it->second.names.end()) modes = named->second.modes;
      }
      table->run_on(home, owner, [g, i, modes] {
        g->modes[i] = modes;
        if (--g->remaining == 0) g->done(std::move(g->modes));
      });
    });
  }
}

void Hub::policy(const std::string& room, const Member* member, PolicyRequest request,
                 std::function<void(const PolicyAnswer&)> done) {
  size_t owner = table_.owner_of(room);
  size_t home = shard_;
  table_.run_on(owner, home, [table = &table_, owner, home, room, name = member->name(), id = member->id(),
                              request = std::move(request), done = std::move(done)]() mutable {
    PolicyAnswer answer = table->hub(owner).owner_policy(room, name, id, request);
    table->run_on(home, owner, [answer = std::move(answer), done = std::move(done)] { done(answer); });
  });
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
                      std::string_view id, bool external, bool notice) {
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
            .notice = notice};
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
  auto remaining = std::make_shared<size_t>(shards.size());
  auto shared_done = std::make_shared<std::function<void()>>(std::move(done));
  if (shards.empty()) return (*shared_done)();
  // Only the table and shard numbers travel: a shard's hub may be gone by the time an
  // acknowledgement runs elsewhere at shutdown.
  ShardTable* table = &table_;
  size_t home = shard_;
  // Back home, what this shard asked of the store itself (a replay or history read) has to be
  // answered too.
  auto finish = [table, home, shared_done] { table->store().fence(table->reactor(home), *shared_done); };
  for (size_t k : shards) {
    table->run_on(k, home, [table, home, k, remaining, finish] {
      // What shard k handed to the store, and on to the router (Redis), has to come back too.
      table->store().fence(table->reactor(k), [table, home, k, remaining, finish] {
        table->router().pass(k, [table, home, k, remaining, finish] {
          table->run_on(home, k, [remaining, finish] {
            if (--*remaining == 0) finish();
          });
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

// ---- Hub: the owner's side --------------------------------------------------------------------

Refusal Hub::join_refusal(const OwnedRoom& r, const std::string& name, FormatId format, const std::string& key) const {
  const RoomPolicy* p = r.policy.get();
  if (p == nullptr || name.empty()) return Refusal::kNone;  // anonymous members are never refused
  std::string folded = ShardTable::fold_name(name);
  if (p->banned(name + "!" + name + "@" + Format::by_id(format).front()) && !p->invited.contains(folded)) {
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
    // An IRC member with timestamps is played the room's history when it joins (IrcOptions::
    // playback): from next time on, only what comes after what it was sent until now.
    const Format& f = Format::by_id(format);
    if (f.front() == "irc" && f.name() != "irc") {
      table_.store().set_mark(table_.reactor(shard_), ShardTable::fold_name(name), room_name, logs_[room_name].delivered_seq);
    }
  }
  --r.count;
  --r.format_count[format];
  --r.shard_count[shard];
  if (r.count == 0) {
    owned_.erase(it);  // an empty room's members are forgotten; its numbering stays (logs_)
    table_.close_room();
    table_.router().room_closed(*this, room_name);
    return;
  }
  if (!name.empty()) {
    r.names.erase(name);
    owner_presence(room_name, r, EventKind::kLeave, name, format, member_id, 0, reason, quit);
  }
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
  owner_presence(room_name, r, EventKind::kNick, old_name, format, member_id, member_id, new_name);
}

std::pair<const std::string, Hub::NamedMember>* Hub::find_named(OwnedRoom& r, const std::string& name) {
  if (auto it = r.names.find(name); it != r.names.end()) return &*it;
  std::string folded = ShardTable::fold_name(name);
  for (auto& entry : r.names) {
    if (ShardTable::fold_name(entry.first) == folded) return &entry;
  }
  return nullptr;
}

namespace {

// What the owner tells a room about its member `user` (`member_id`, of `format`): `kind` with `text`.
RoomEvent member_event(EventKind kind, const std::string& room, const std::string& user, const std::string& text,
                       FormatId format, uint64_t member_id) {
  RoomEvent event;
  event.kind = kind;
  event.room = room;
  event.user = user;
  event.text = text;
  event.front = Format::by_id(format).front();
  event.member = member_id;
  return event;
}

}  // namespace

void Hub::owner_announce(const std::string& room, const OwnedRoom& r, EventKind kind, const std::string& user,
                         FormatId format, uint64_t member_id, const std::string& text, const std::string& target) {
  RoomEvent event = member_event(kind, room, user, text, format, member_id);
  event.target = target;
  if (auto delivery = render(r, std::move(event))) owner_broadcast(room, r, delivery, 0);
}

PolicyAnswer Hub::owner_policy(const std::string& room, const std::string& name, uint64_t member_id,
                               const PolicyRequest& req) {
  PolicyAnswer answer;
  auto refuse = [&answer](Refusal why, std::string about = {}) {
    answer.refusals.emplace_back(why, std::move(about));
    return answer;
  };
  auto it = owned_.find(room);
  if (it == owned_.end()) return refuse(Refusal::kNoSuchRoom, room);
  OwnedRoom& r = it->second;
  auto me = r.names.find(name);
  if (me == r.names.end() || me->second.id != member_id) return refuse(Refusal::kNotInRoom, room);
  bool op = me->second.modes.op;
  FormatId format = me->second.format;
  switch (req.kind) {
    case PolicyRequest::kTopic: {
      bool locked = !r.policy || r.policy->topic_locked;
      if (locked && !op) return refuse(Refusal::kNotOperator, room);
      RoomLog& log = logs_[room];
      log.topic = req.text;
      log.topic_by = name;
      log.topic_at = now_ms();
      owner_announce(room, r, EventKind::kTopic, name, format, member_id, req.text);
      return answer;
    }
    case PolicyRequest::kModes:
      owner_modes(room, r, name, format, req.modes, answer);
      return answer;
    case PolicyRequest::kKick: {
      if (!op) return refuse(Refusal::kNotOperator, room);
      auto* target = find_named(r, req.target);
      if (target == nullptr) return refuse(Refusal::kNoSuchMember, req.target);
      std::string target_name = target->first;
      NamedMember t = target->second;
      answer.target = target_name;
      // The member removed hears it too, then goes.
      owner_announce(room, r, EventKind::kKick, name, format, member_id, req.text, target_name);
      r.names.erase(target_name);
      --r.count;
      --r.format_count[t.format];
      --r.shard_count[t.shard];
      table_.run_on(t.shard, shard_, [&hub = table_.hub(t.shard), room, id = t.id] {
        if (Member* m = hub.drop_local(room, id)) m->removed(room);
      });
      if (r.count == 0) {
        owned_.erase(it);
        table_.close_room();
        table_.router().room_closed(*this, room);
      }
      return answer;
    }
    case PolicyRequest::kInvite: {
      bool invite_only = r.policy && r.policy->invite_only;
      if (invite_only && !op) return refuse(Refusal::kNotOperator, room);
      if (auto* target = find_named(r, req.target)) return refuse(Refusal::kAlreadyInRoom, target->first);
      if (!r.policy) r.policy = std::make_unique<RoomPolicy>();
      if (r.policy->invited.size() < RoomPolicy::kMaxBans) r.policy->invited.insert(ShardTable::fold_name(req.target));
      return answer;
    }
  }
  return answer;
}

void Hub::owner_modes(const std::string& room, OwnedRoom& r, const std::string& setter, FormatId format,
                      const std::vector<ModeChange>& changes, PolicyAnswer& answer) {
  if (!r.names.at(setter).modes.op) {
    answer.refusals.emplace_back(Refusal::kNotOperator, room);
    return;
  }
  if (!r.policy) r.policy = std::make_unique<RoomPolicy>();
  RoomPolicy& p = *r.policy;
  // What was applied, as IRC writes it: "+o-v bob kim".
  std::string flags, params;
  char sign = 0;
  auto applied = [&](bool add, char mode, const std::string& param) {
    char s = add ? '+' : '-';
    if (s != sign) flags += (sign = s);
    flags += mode;
    if (!param.empty()) params += " " + param;
  };
  for (const ModeChange& c : changes) {
    switch (c.mode) {
      case 'o':
      case 'v': {
        auto* target = find_named(r, c.param);
        if (target == nullptr) {
          answer.refusals.emplace_back(Refusal::kNoSuchMember, c.param);
          break;
        }
        bool& flag = c.mode == 'o' ? target->second.modes.op : target->second.modes.voice;
        if (flag == c.add) break;
        flag = c.add;
        applied(c.add, c.mode, target->first);
        break;
      }
      case 'i':
      case 'm':
      case 't': {
        bool& flag = c.mode == 'i' ? p.invite_only : c.mode == 'm' ? p.moderated : p.topic_locked;
        if (flag == c.add) break;
        flag = c.add;
        applied(c.add, c.mode, {});
        break;
      }
      case 'n':
      case 's': {
        bool& flag = c.mode == 'n' ? p.no_external : p.secret;
        if (flag == c.add) break;
        flag = c.add;
        applied(c.add, c.mode, {});
        break;
      }
      case 'k':
        if (c.add && (c.param.empty() || c.param.find_first_of(" ,") != std::string::npos)) {
          answer.refusals.emplace_back(c.param.empty() ? Refusal::kNeedsParameter : Refusal::kBadParameter, "k");
        } else if (c.add) {
          p.key = c.param;
          applied(true, 'k', p.key);
        } else if (!p.key.empty()) {
          p.key.clear();
          applied(false, 'k', "*");
        }
        break;
      case 'l':
        if (c.add) {
          size_t limit = 0;
          for (char ch : c.param) limit = (ch >= '0' && ch <= '9' && limit < 1000000) ? limit * 10 + (ch - '0') : 0;
          if (limit == 0) {
            answer.refusals.emplace_back(c.param.empty() ? Refusal::kNeedsParameter : Refusal::kBadParameter,
                                         "l " + c.param);
            break;
          }
          p.limit = limit;
          applied(true, 'l', std::to_string(limit));
        } else if (p.limit != 0) {
          p.limit = 0;
          applied(false, 'l', {});
        }
        break;
      case 'b': {
        std::string mask = normal_mask(c.param);
        auto found = std::find_if(p.bans.begin(), p.bans.end(), [&](const std::string& b) {
          return ShardTable::fold_name(b) == ShardTable::fold_name(mask);
        });
        if (c.add && found == p.bans.end()) {
          if (p.bans.size() >= RoomPolicy::kMaxBans) {
            answer.refusals.emplace_back(Refusal::kTooManyBans, room);
            break;
          }
          p.bans.push_back(mask);
          applied(true, 'b', mask);
        } else if (!c.add && found != p.bans.end()) {
          applied(false, 'b', *found);
          p.bans.erase(found);
        }
        break;
      }
      default: answer.refusals.emplace_back(Refusal::kUnknownMode, std::string(1, c.mode));
    }
  }
  if (flags.empty()) return;
  owner_announce(room, r, EventKind::kMode, setter, format, 0, flags + params);
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
    if (publish.notice) return;  // a NOTICE is never answered, not even with a refusal
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
  auto delivery = render(r, RoomEvent{.kind = EventKind::kMessage,
                                      .room = room_name,
                                      .user = m.user,
                                      .text = m.text,
                                      .ts_ms = m.ts_ms,
                                      .seq = m.seq,
                                      .id = m.id,
                                      .front = m.front,
                                      .member = 0,
                                      .quit = false,
                                      .target = {},
                                      .notice = m.notice});
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
