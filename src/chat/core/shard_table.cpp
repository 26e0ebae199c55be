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
  if (past_names_.size() > kPastNames) past_names_.pop_back();
  names_.erase(it);
}

}  // namespace chat
