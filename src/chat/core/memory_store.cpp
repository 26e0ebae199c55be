// The memory store (--store memory) and no store (--store off): the Store's promises for the life
// of the process, without a thread: every call completes inside it.
#include <algorithm>
#include <deque>
#include <mutex>
#include <unordered_map>

#include "chat/core/event.h"
#include "chat/core/random_id.h"
#include "chat/core/store.h"

namespace chat {
namespace {

class MemoryStore final : public Store {
 public:
  explicit MemoryStore(const Retention& retention) : retention_(retention), epoch_(random_hex(16)) {}

  std::string epoch() const override { return epoch_; }
  std::vector<StoredRoom> load() override { return {}; }

  void append(reactor::Reactor&, const std::string& room, StoredMessage message, AppendDone done) override {
    if (retention_.max_messages > 0) {
      std::lock_guard<std::mutex> lock(mutex_);
      auto& log = rooms_[room];
      log.push_back(std::move(message));
      int64_t oldest = now_ms() - retention_.max_age_ms;
      while (!log.empty() && (log.size() > retention_.max_messages || log.front().ts_ms < oldest)) log.pop_front();
    }
    done(true);
  }

  void read(reactor::Reactor&, const std::string& room, uint64_t after, uint64_t before, size_t limit, bool newest,
            ReadDone done) override {
    ReadResult result{.ok = true, .messages = {}};
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (auto it = rooms_.find(room); it != rooms_.end()) {
        const auto& log = it->second;
        int64_t oldest = now_ms() - retention_.max_age_ms;
        auto in_range = [&](const StoredMessage& m) {
          return m.seq > after && (before == 0 || m.seq < before) && m.ts_ms >= oldest;
        };
        if (newest) {
          for (auto m = log.rbegin(); m != log.rend() && result.messages.size() < limit; ++m) {
            if (in_range(*m)) result.messages.push_back(*m);
          }
          std::reverse(result.messages.begin(), result.messages.end());
        } else {
          auto m = std::upper_bound(log.begin(), log.end(), after,
                                    [](uint64_t seq, const StoredMessage& s) { return seq < s.seq; });
          for (; m != log.end() && result.messages.size() < limit; ++m) {
            if (in_range(*m)) result.messages.push_back(*m);
          }
        }
      }
    }
    done(std::move(result));
  }

  void fence(reactor::Reactor&, std::function<void()> done) override { done(); }
  bool asynchronous() const override { return false; }
  std::string describe() const override { return retention_.max_messages > 0 ? "store=memory" : "store=off"; }

 private:
  Retention retention_;
  std::string epoch_;
  std::mutex mutex_;
  std::unordered_map<std::string, std::deque<StoredMessage>> rooms_;  // guarded by mutex_
};

}  // namespace

void Store::set_mark(reactor::Reactor&, const std::string& reader, const std::string& room, uint64_t seq) {
  std::lock_guard<std::mutex> lock(marks_mutex_);
  std::string key = reader + '\0' + room;
  if (marks_.size() >= kMaxMarks && !marks_.contains(key)) marks_.erase(marks_.begin());
  marks_[key] = seq;
}

void Store::get_mark(reactor::Reactor&, const std::string& reader, const std::string& room,
                     std::function<void(uint64_t)> done) {
  uint64_t seq = 0;
  {
    std::lock_guard<std::mutex> lock(marks_mutex_);
    if (auto it = marks_.find(reader + '\0' + room); it != marks_.end()) seq = it->second;
  }
  done(seq);
}

std::unique_ptr<Store> make_memory_store(const Retention& retention) { return std::make_unique<MemoryStore>(retention); }

}  // namespace chat
