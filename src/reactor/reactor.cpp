#include "reactor/reactor.h"

#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "reactor/error.h"
#include "reactor/log.h"

namespace reactor {
namespace {
thread_local Reactor* t_current = nullptr;
}

Reactor::Reactor(std::string_view backend) : Reactor(make_demultiplexer(backend)) {}

Reactor::Reactor(std::unique_ptr<Demultiplexer> demultiplexer)
    : demux_(std::move(demultiplexer)), owner_(std::this_thread::get_id()) {
  if (t_current != nullptr) {
    std::fprintf(stderr, "reactor: a second Reactor in one thread (one reactor per thread)\n");
    std::abort();
  }
  sigemptyset(&signal_mask_);
  sigemptyset(&saved_mask_);
  wakeup_fd_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wakeup_fd_) throw_system_error("eventfd");
  add(wakeup_fd_.get(), Interest::kRead, [this](Events) { handle_wakeup(); });
  t_current = this;
}

Reactor::~Reactor() {
  // Handlers still registered are dropped with their callbacks; descriptors are their owners'.
  remove(wakeup_fd_.get());
  if (signal_fd_) remove(signal_fd_.get());
  if (signals_blocked_) pthread_sigmask(SIG_SETMASK, &saved_mask_, nullptr);
  graveyard_.clear();
  if (t_current == this) t_current = nullptr;
}

Reactor* Reactor::current() { return t_current; }

void Reactor::abort_wrong_thread(const char* what) const {
  std::fprintf(stderr, "reactor: %s called from a thread that does not own the reactor\n", what);
  std::abort();
}

// ---- Event handlers ---------------------------------------------------------------------------

Reactor::Slot* Reactor::slot(int fd) {
  if (fd < 0 || static_cast<size_t>(fd) >= slots_.size()) return nullptr;
  Slot& s = slots_[static_cast<size_t>(fd)];
  return s.id != 0 ? &s : nullptr;
}

const Reactor::Slot* Reactor::slot(int fd) const { return const_cast<Reactor*>(this)->slot(fd); }

void Reactor::add(int fd, Interest interest, EventCallback callback) {
  assert_in_loop_thread("Reactor::add");
  demux_->check(fd);
  if (static_cast<size_t>(fd) >= slots_.size()) {
    slots_.resize(std::max(static_cast<size_t>(fd) + 1, slots_.size() * 2));
  }
  Slot& s = slots_[static_cast<size_t>(fd)];
  if (s.id != 0) throw std::logic_error("descriptor " + std::to_string(fd) + " is already registered");
  if (interest != Interest::kNone) demux_->add(fd, interest);
  s.id = ++next_id_;
  s.wanted = s.in_kernel = interest;
  s.callback = std::move(callback);
  ++handler_count_;
}

void Reactor::modify(int fd, Interest interest) {
  assert_in_loop_thread("Reactor::modify");
  Slot* s = slot(fd);
  if (s == nullptr) throw std::logic_error("descriptor " + std::to_string(fd) + " is not registered");
  if (s->wanted == interest) return;
  s->wanted = interest;
  mark_dirty(fd, *s);
}

void Reactor::mark_dirty(int fd, Slot& s) {
  if (!s.dirty) {
    s.dirty = true;
    dirty_.push_back(fd);
  }
}

void Reactor::remove(int fd) {
  assert_in_loop_thread("Reactor::remove");
  Slot* s = slot(fd);
  if (s == nullptr) return;
  // The kernel forgets the descriptor now, so that the caller may close it right after.
  if (s->in_kernel != Interest::kNone) demux_->remove(fd);
  // The callback may be the one running (its own handler removing it) or may own the object whose
  // method called us: keep it alive until the iteration ends.
  if (s->callback) graveyard_.push_back(std::move(s->callback));
  s->callback = nullptr;
  s->id = 0;
  s->wanted = s->in_kernel = Interest::kNone;
  --handler_count_;
}

bool Reactor::contains(int fd) const {
  assert_in_loop_thread("Reactor::contains");
  return slot(fd) != nullptr;
}

Interest Reactor::interest(int fd) const {
  assert_in_loop_thread("Reactor::interest");
  const Slot* s = slot(fd);
  return s ? s->wanted : Interest::kNone;
}

// ---- The loop ---------------------------------------------------------------------------------

void Reactor::run() {
  assert_in_loop_thread("Reactor::run");
  while (!stop_.load(std::memory_order_acquire)) run_once(-1);
  stop_.store(false, std::memory_order_release);
}

void Reactor::stop() {
  stop_.store(true, std::memory_order_release);
  if (!in_loop_thread()) wakeup();
}

void Reactor::run_once(int timeout_ms) {
  assert_in_loop_thread("Reactor::run_once");
  ++iterations_;
  timers_.run_due(Clock::now());  // 1
  run_posted_tasks();             // 2
  run_deferred();                 // 3
  run_flushes();                  // 4
  run_deferred();
  apply_changes();                // 5
  demux_->wait(poll_timeout(timeout_ms), ready_);  // 6
  dispatch();                     // 7
  graveyard_.clear();
}

int Reactor::poll_timeout(int timeout_ms) {
  if (stop_.load(std::memory_order_acquire) || tasks_pending_.load(std::memory_order_acquire) ||
      !deferred_.empty() || !flush_.empty() || !forced_.empty()) {
    return 0;
  }
  auto next = timers_.next_deadline();
  if (!next) return timeout_ms;
  auto now = Clock::now();
  if (*next <= now) return 0;
  // Round up: waking a little late is fine, waking early only costs another wait.
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(*next - now).count();
  if (timeout_ms >= 0 && ms > timeout_ms) return timeout_ms;
  return ms > INT32_MAX ? INT32_MAX : static_cast<int>(ms);
}

void Reactor::apply_changes() {
  for (int fd : dirty_) {
    Slot& s = slots_[static_cast<size_t>(fd)];
    s.dirty = false;
    if (s.id == 0 || s.wanted == s.in_kernel) continue;
    try {
      if (s.in_kernel == Interest::kNone) {
        demux_->add(fd, s.wanted);
      } else if (s.wanted == Interest::kNone) {
        // Redis's rule: no interest, not in the kernel; a level-triggered error could spin.
        demux_->remove(fd);
      } else {
        demux_->modify(fd, s.wanted);
      }
      s.in_kernel = s.wanted;
    } catch (const std::exception& e) {
      LOG_ERROR("%s: descriptor %d: %s", demux_->name(), fd, e.what());
      forced_.push_back({fd, s.id, kError});
    }
  }
  dirty_.clear();
}

void Reactor::dispatch() {
  batch_.clear();
  for (const ReadyEvent& r : ready_) {
    if (const Slot* s = slot(r.fd)) batch_.push_back({r.fd, s->id, r.events});
  }
  batch_.insert(batch_.end(), forced_.begin(), forced_.end());
  forced_.clear();

  for (const Pending& p : batch_) {
    Slot* s = slot(p.fd);
    if (s == nullptr || s->id != p.id) continue;  // stale: removed, or the number was reused
    Events deliver = p.events & (kError | kHangup);
    bool trouble = deliver != 0;  // an error or hang-up is news for whichever side is watched
    if (has(s->wanted, Interest::kRead) && (trouble || (p.events & kReadable))) deliver |= kReadable;
    if (has(s->wanted, Interest::kWrite) && (trouble || (p.events & kWritable))) deliver |= kWritable;
    if ((deliver & (kReadable | kWritable)) == 0) continue;  // interest dropped earlier in the batch
    // The callback runs from a local: handlers may add descriptors (slots_ may reallocate) or
    // remove their own registration while running.
    EventCallback callback = std::move(s->callback);
    callback(deliver);
    s = slot(p.fd);
    if (s != nullptr && s->id == p.id) s->callback = std::move(callback);
  }
}

// ---- Timers -----------------------------------------------------------------------------------

TimerId Reactor::run_at(Clock::time_point when, Task task) {
  assert_in_loop_thread("Reactor::run_at");
  return timers_.schedule(when, Clock::duration::zero(), std::move(task));
}

TimerId Reactor::run_after(Clock::duration delay, Task task) {
  return run_at(Clock::now() + delay, std::move(task));
}

TimerId Reactor::run_every(Clock::duration interval, Task task) {
  assert_in_loop_thread("Reactor::run_every");
  if (interval <= Clock::duration::zero()) throw std::invalid_argument("run_every: interval must be > 0");
  return timers_.schedule(Clock::now() + interval, interval, std::move(task));
}

bool Reactor::cancel(TimerId id) {
  assert_in_loop_thread("Reactor::cancel");
  return timers_.cancel(id);
}

// ---- Tasks ------------------------------------------------------------------------------------

void Reactor::post(Task task) {
  bool first;
  {
    std::lock_guard<std::mutex> lock(tasks_mutex_);
    tasks_.push_back(std::move(task));
    first = !tasks_pending_.exchange(true, std::memory_order_acq_rel);
  }
  // From the reactor's own thread no wake-up is needed: the wait's timeout sees tasks_pending_.
  if (first && !in_loop_thread()) wakeup();
}

void Reactor::run_in_loop(Task task) {
  if (in_loop_thread()) {
    task();
  } else {
    post(std::move(task));
  }
}

void Reactor::run_posted_tasks() {
  if (!tasks_pending_.load(std::memory_order_acquire)) return;
  {
    std::lock_guard<std::mutex> lock(tasks_mutex_);
    tasks_running_.swap(tasks_);
    tasks_pending_.store(false, std::memory_order_release);
  }
  for (Task& t : tasks_running_) t();
  tasks_running_.clear();
}

void Reactor::defer(Task task) {
  assert_in_loop_thread("Reactor::defer");
  deferred_.push_back(std::move(task));
}

void Reactor::run_deferred() {
  while (!deferred_.empty()) {
    deferred_running_.swap(deferred_);
    for (Task& t : deferred_running_) t();
    deferred_running_.clear();
  }
}

void Reactor::queue_flush(std::shared_ptr<Flushable> target) {
  assert_in_loop_thread("Reactor::queue_flush");
  flush_.push_back(std::move(target));
}

void Reactor::run_flushes() {
  // One pass: output queued by a flush callback (a drain handler writing more) waits for the next
  // iteration, which then polls with a zero timeout.
  flush_running_.swap(flush_);
  for (auto& target : flush_running_) target->flush_pending();
  flush_running_.clear();
}

void Reactor::wakeup() {
  uint64_t one = 1;
  // EAGAIN means the counter is already non-zero: the reactor will wake anyway.
  if (::write(wakeup_fd_.get(), &one, sizeof one) < 0 && errno != EAGAIN) {
    LOG_ERROR("%s", describe_errno("write(eventfd)", errno).c_str());
  }
}

void Reactor::handle_wakeup() {
  uint64_t count;
  while (::read(wakeup_fd_.get(), &count, sizeof count) > 0) {
  }
}

// ---- Signals ----------------------------------------------------------------------------------

void Reactor::on_signal(int signo, SignalCallback callback) {
  assert_in_loop_thread("Reactor::on_signal");
  sigset_t one;
  sigemptyset(&one);
  sigaddset(&one, signo);
  if (int err = pthread_sigmask(SIG_BLOCK, &one, signals_blocked_ ? nullptr : &saved_mask_)) {
    throw_system_error("pthread_sigmask", err);
  }
  signals_blocked_ = true;
  sigaddset(&signal_mask_, signo);
  int fd = ::signalfd(signal_fd_ ? signal_fd_.get() : -1, &signal_mask_, SFD_NONBLOCK | SFD_CLOEXEC);
  if (fd < 0) throw_system_error("signalfd");
  if (!signal_fd_) {
    signal_fd_.reset(fd);
    add(fd, Interest::kRead, [this](Events) { handle_signals(); });
  }
  for (auto& [s, cb] : signal_callbacks_) {
    if (s == signo) {
      cb = std::move(callback);
      return;
    }
  }
  signal_callbacks_.emplace_back(signo, std::move(callback));
}

void Reactor::stop_on_signals(std::initializer_list<int> signals) {
  for (int signo : signals) {
    on_signal(signo, [this](int s) {
      LOG_INFO("signal %d (%s): stopping", s, strsignal(s));
      stop();
    });
  }
}

void Reactor::handle_signals() {
  signalfd_siginfo info;
  while (::read(signal_fd_.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
    for (auto& [s, cb] : signal_callbacks_) {
      if (s == static_cast<int>(info.ssi_signo)) cb(s);
    }
  }
}

}  // namespace reactor
