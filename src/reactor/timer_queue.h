// Timers in a min-heap ordered by (deadline, sequence): equal deadlines fire in the order they were
// scheduled (libuv's rule). Cancellation is O(1): the record is dropped and its heap entry skipped
// when it surfaces.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <unordered_map>
#include <vector>

namespace reactor {

using Clock = std::chrono::steady_clock;
using TimerId = uint64_t;

class TimerQueue {
 public:
  using Task = std::function<void()>;

  // `interval` zero: one-shot; otherwise the timer repeats every `interval` after `when`.
  TimerId schedule(Clock::time_point when, Clock::duration interval, Task task);
  // True if the timer was pending (a one-shot that already fired is not).
  bool cancel(TimerId id);
  // Runs every timer due at `now`, in deadline order. Timers scheduled by a callback with a
  // deadline <= now run in a later call, so a zero-delay timer that re-arms itself cannot starve
  // the loop.
  void run_due(Clock::time_point now);
  // Deadline of the earliest pending timer.
  std::optional<Clock::time_point> next_deadline();
  size_t size() const { return timers_.size(); }

 private:
  struct Entry {
    Clock::time_point when;
    uint64_t seq;
    TimerId id;
    bool operator>(const Entry& o) const { return when != o.when ? when > o.when : seq > o.seq; }
  };
  struct Timer {
    Task task;
    Clock::duration interval;
  };
  void push(Clock::time_point when, TimerId id);
  void drop_cancelled_top();

  std::vector<Entry> heap_;  // std::push_heap/pop_heap with std::greater: a min-heap
  std::unordered_map<TimerId, Timer> timers_;
  uint64_t next_seq_ = 0;
  TimerId next_id_ = 0;
};

}  // namespace reactor
