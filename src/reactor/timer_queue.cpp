#include "reactor/timer_queue.h"

#include <algorithm>

namespace reactor {

TimerId TimerQueue::schedule(Clock::time_point when, Clock::duration interval, Task task) {
  TimerId id = ++next_id_;
  timers_.emplace(id, Timer{std::move(task), interval});
  push(when, id);
  return id;
}

bool TimerQueue::cancel(TimerId id) { return timers_.erase(id) > 0; }

void TimerQueue::push(Clock::time_point when, TimerId id) {
  heap_.push_back({when, next_seq_++, id});
  std::push_heap(heap_.begin(), heap_.end(), std::greater<>{});
}

void TimerQueue::drop_cancelled_top() {
  while (!heap_.empty() && !timers_.contains(heap_.front().id)) {
    std::pop_heap(heap_.begin(), heap_.end(), std::greater<>{});
    heap_.pop_back();
  }
}

std::optional<Clock::time_point> TimerQueue::next_deadline() {
  drop_cancelled_top();
  if (heap_.empty()) return std::nullopt;
  return heap_.front().when;
}

void TimerQueue::run_due(Clock::time_point now) {
  // Only entries scheduled before this call may run now: re-armed or new timers wait for the next.
  const uint64_t seq_limit = next_seq_;
  while (!heap_.empty() && heap_.front().when <= now && heap_.front().seq < seq_limit) {
    Entry entry = heap_.front();
    std::pop_heap(heap_.begin(), heap_.end(), std::greater<>{});
    heap_.pop_back();
    auto it = timers_.find(entry.id);
    if (it == timers_.end()) continue;  // cancelled
    if (it->second.interval == Clock::duration::zero()) {
      Task task = std::move(it->second.task);
      timers_.erase(it);
      task();
    } else {
      // Move the task out while it runs: the callback may schedule timers (rehashing timers_) or
      // cancel this one.
      Task task = std::move(it->second.task);
      Clock::duration interval = it->second.interval;
      task();
      auto again = timers_.find(entry.id);
      if (again != timers_.end()) {
        again->second.task = std::move(task);
        // Next deadline from the planned one, not from now: no drift; skip missed periods.
        Clock::time_point next = entry.when + interval;
        if (next <= now) next = now + interval;
        push(next, entry.id);
      }
    }
  }
}

}  // namespace reactor
