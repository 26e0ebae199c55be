// ReactorPool: one Reactor per thread (nginx's worker per core, muduo's EventLoopThreadPool).
// Each thread constructs its own Reactor (the owner-thread rule), runs `init` on it, then runs the
// loop until stop(). Work reaches another reactor only through Reactor::post.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "reactor/reactor.h"

namespace reactor {

class ReactorPool {
 public:
  // Called on each reactor's own thread before its loop starts; `index` is 0..size()-1.
  using Init = std::function<void(Reactor& reactor, size_t index)>;
  // Called on each reactor's own thread after its loop has stopped, before the reactor is destroyed.
  using Fini = std::function<void(Reactor& reactor, size_t index)>;

  // Starts `threads` threads and returns once every reactor exists and has run `init`.
  // Throws what a reactor's construction or `init` threw (after stopping the others).
  ReactorPool(size_t threads, std::string backend, Init init, Fini fini = nullptr);
  ~ReactorPool();  // stop() and join
  ReactorPool(const ReactorPool&) = delete;
  ReactorPool& operator=(const ReactorPool&) = delete;

  size_t size() const { return reactors_.size(); }
  // Valid from construction until the loops stop. From other threads, use only the thread-safe
  // calls (post, stop, wakeup); no thread may post to a pool's reactor after stop().
  Reactor& at(size_t index) { return *reactors_[index]; }

  void stop();  // any thread: every loop returns after its current iteration
  void join();  // waits for every thread to finish

 private:
  void thread_main(size_t index, const std::string& backend, const Init& init, const Fini& fini);

  std::vector<Reactor*> reactors_;  // guarded by mutex_; null before start and after destruction
  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::condition_variable cv_;
  size_t started_ = 0;   // threads that have tried to create their reactor
  size_t finished_ = 0;  // threads whose loop has ended
  std::exception_ptr error_;
};

}  // namespace reactor
