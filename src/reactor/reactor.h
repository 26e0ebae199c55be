// Reactor: the pattern's Initiation Dispatcher. One per thread.
//
// Phase order of one iteration (run_once), written down as libuv does:
//   1. timers      every timer due now, in (deadline, sequence) order
//   2. tasks       tasks posted from any thread since the last iteration
//   3. deferred    work handlers asked to run "after the dispatch" (e.g. closing a slow consumer)
//   4. flush       every connection given output this iteration writes its whole queue in one
//                  writev (Redis's handleClientsWithPendingWrites), then deferred work again
//   5. apply       interest changes are applied to the kernel; an interest switched on and back
//                  off within the iteration never costs a system call
//   6. wait        the demultiplexer blocks until an event, the next timer, a post or a signal
//   7. dispatch    each ready descriptor's handler is called with what is ready, unless the
//                  registration it was reported for is gone (stale-event guard, see below)
//
// Stale events: every registration gets a unique id. A batch of ready events is tied to the ids
// that were registered when the wait returned; a handler removed during the batch, or a descriptor
// closed and its number reused by a new registration, is never called with the old events.
//
// Threads: everything but post(), stop() and wakeup() must be called from the reactor's own thread
// (the one that constructed it). Debug builds check this and abort with a message.
#pragma once

#include <signal.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "reactor/demultiplexer.h"
#include "reactor/events.h"
#include "reactor/handle.h"
#include "reactor/timer_queue.h"

namespace reactor {

// Something with output to write before the reactor polls again (a connection).
class Flushable {
 public:
  virtual ~Flushable() = default;
  virtual void flush_pending() = 0;
};

class Reactor {
 public:
  using EventCallback = std::function<void(Events)>;
  using Task = std::function<void()>;
  using SignalCallback = std::function<void(int signo)>;

  // Backend by name ("" = best available); throws std::invalid_argument for an unknown name.
  explicit Reactor(std::string_view backend = "");
  explicit Reactor(std::unique_ptr<Demultiplexer> demultiplexer);
  ~Reactor();
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  const char* backend_name() const { return demux_->name(); }

  // The reactor of the calling thread, or nullptr.
  static Reactor* current();

  // ---- Event handlers -------------------------------------------------------------------------
  // Register `fd` (any pollable descriptor: socket, pipe, terminal, eventfd) with an interest mask.
  // Errors the backend reports at once (select's FD_SETSIZE, epoll refusing a regular file) are
  // thrown here. The reactor does not own the descriptor: remove() it before closing it.
  void add(int fd, Interest interest, EventCallback callback);
  // Change the interest; applied to the kernel just before the next wait.
  void modify(int fd, Interest interest);
  // Unregister. Safe from inside any handler, including fd's own.
  void remove(int fd);
  bool contains(int fd) const;
  Interest interest(int fd) const;  // as wanted now (kNone if not registered)
  size_t handler_count() const { return handler_count_; }

  // ---- The loop -------------------------------------------------------------------------------
  void run();                      // until stop()
  void run_once(int timeout_ms = -1);  // one iteration; waits at most timeout_ms (-1: no limit)
  void stop();                     // any thread; run() returns after the current iteration
  bool stop_requested() const { return stop_.load(std::memory_order_acquire); }
  uint64_t iterations() const { return iterations_; }

  // ---- Timers ---------------------------------------------------------------------------------
  TimerId run_at(Clock::time_point when, Task task);
  TimerId run_after(Clock::duration delay, Task task);
  TimerId run_every(Clock::duration interval, Task task);
  bool cancel(TimerId id);

  // ---- Tasks ----------------------------------------------------------------------------------
  // Any thread: runs `task` on the reactor's thread in phase 2. The first post into an empty queue
  // wakes the reactor through its eventfd; later ones ride on the same wake-up.
  void post(Task task);
  // Runs now if called on the reactor's thread, else post()s.
  void run_in_loop(Task task);
  // Runs `task` in phase 3 of this iteration (after the current dispatch), never re-entrantly.
  void defer(Task task);

  // ---- Flush ----------------------------------------------------------------------------------
  // Queue `target` for phase 4. The caller guarantees it is queued at most once per iteration.
  void queue_flush(std::shared_ptr<Flushable> target);

  // ---- Signals --------------------------------------------------------------------------------
  // Deliver `signo` through a signalfd to `callback` on the reactor's thread. The signal is
  // blocked in the calling thread; call before starting other threads so they inherit the mask.
  void on_signal(int signo, SignalCallback callback);
  // SIGINT and SIGTERM call stop(): a graceful stop.
  void stop_on_signals(std::initializer_list<int> signals = {SIGINT, SIGTERM});

  // ---- Threads --------------------------------------------------------------------------------
  bool in_loop_thread() const { return std::this_thread::get_id() == owner_; }
  void assert_in_loop_thread(const char* what) const {
#ifndef NDEBUG
    if (!in_loop_thread()) abort_wrong_thread(what);
#else
    (void)what;
#endif
  }
  void wakeup();  // any thread

 private:
  struct Slot {
    uint64_t id = 0;  // 0: free
    Interest wanted = Interest::kNone;
    Interest in_kernel = Interest::kNone;
    bool dirty = false;
    EventCallback callback;
  };
  struct Pending {
    int fd;
    uint64_t id;
    Events events;
  };

  [[noreturn]] void abort_wrong_thread(const char* what) const;
  Slot* slot(int fd);
  const Slot* slot(int fd) const;
  void mark_dirty(int fd, Slot& s);
  void run_posted_tasks();
  void run_deferred();
  void run_flushes();
  void apply_changes();
  int poll_timeout(int timeout_ms);
  void dispatch();
  void handle_wakeup();
  void handle_signals();

  std::unique_ptr<Demultiplexer> demux_;
  std::thread::id owner_;
  std::vector<Slot> slots_;  // indexed by fd
  std::vector<int> dirty_;   // fds whose wanted interest may differ from the kernel's
  size_t handler_count_ = 0;
  uint64_t next_id_ = 0;
  std::vector<ReadyEvent> ready_;
  std::vector<Pending> batch_;
  std::vector<Pending> forced_;      // errors found while applying changes, delivered next batch
  std::vector<EventCallback> graveyard_;  // callbacks of handlers removed during this iteration

  TimerQueue timers_;
  std::vector<Task> deferred_, deferred_running_;
  std::vector<std::shared_ptr<Flushable>> flush_, flush_running_;

  std::mutex tasks_mutex_;
  std::vector<Task> tasks_;  // guarded by tasks_mutex_
  std::vector<Task> tasks_running_;
  std::atomic<bool> tasks_pending_{false};
  Handle wakeup_fd_;  // eventfd

  Handle signal_fd_;
  sigset_t signal_mask_;
  sigset_t saved_mask_;
  bool signals_blocked_ = false;
  std::vector<std::pair<int, SignalCallback>> signal_callbacks_;

  std::atomic<bool> stop_{false};
  uint64_t iterations_ = 0;
};

}  // namespace reactor
