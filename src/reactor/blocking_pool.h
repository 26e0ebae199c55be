// BlockingPool: a few threads for work that blocks (a disk write, an fsync, a database call), so
// that no reactor thread ever waits on it. nginx keeps such a pool beside its event loops for the
// same reason. Work is queued in order; each piece runs on some pool thread, and its completion, if
// any, is posted back to the reactor that asked (Reactor::post wakes that loop through its eventfd),
// so results are handled on the reactor's own thread, like every other event there.
//
// With one thread the pool runs work in submission order (a single writer, as a store wants for
// group commit); with more, pieces run concurrently and their completions arrive in any order.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "reactor/reactor.h"

namespace reactor {

class BlockingPool {
 public:
  using Work = std::function<void()>;

  // Starts `threads` threads (at least 1), named `name` (for ps/top/gdb; at most 15 characters).
  BlockingPool(size_t threads, std::string name);
  // Stops taking work, lets the pieces already queued finish, joins the threads. Completions of
  // those pieces are still posted to their reactors (which must outlive the pool, or have stopped:
  // a stopped reactor drops what is posted when it is destroyed).
  ~BlockingPool();
  BlockingPool(const BlockingPool&) = delete;
  BlockingPool& operator=(const BlockingPool&) = delete;

  // Any thread: queues `work` for a pool thread. False if the pool is stopping (not queued).
  bool submit(Work work);
  // Any thread: runs `work` on a pool thread, then `done` on `reactor`'s thread (posted). The result
  // travels in what the two share, e.g. a shared_ptr captured by both.
  bool submit(Reactor& reactor, Work work, Reactor::Task done);

  // Pieces queued and not yet started (for counters and back-pressure decisions).
  size_t queued() const;
  size_t threads() const { return threads_.size(); }

 private:
  void thread_main();

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Work> queue_;  // guarded by mutex_
  bool stopping_ = false;   // guarded by mutex_
  std::vector<std::thread> threads_;
};

}  // namespace reactor
