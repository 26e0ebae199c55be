#include "reactor/blocking_pool.h"

#include <pthread.h>

namespace reactor {

BlockingPool::BlockingPool(size_t threads, std::string name) {
  if (threads == 0) threads = 1;
  name.resize(std::min<size_t>(name.size(), 15));  // the kernel's limit for a thread's name
  threads_.reserve(threads);
  for (size_t i = 0; i < threads; ++i) {
    threads_.emplace_back([this] { thread_main(); });
    ::pthread_setname_np(threads_.back().native_handle(), name.c_str());
  }
}

BlockingPool::~BlockingPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& t : threads_) t.join();
}

bool BlockingPool::submit(Work work) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) return false;
    queue_.push_back(std::move(work));
  }
  wake_.notify_one();
  return true;
}

bool BlockingPool::submit(Reactor& reactor, Work work, Reactor::Task done) {
  return submit([&reactor, work = std::move(work), done = std::move(done)]() mutable {
    work();
    reactor.post(std::move(done));
  });
}

size_t BlockingPool::queued() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return queue_.size();
}

void BlockingPool::thread_main() {
  for (;;) {
    Work work;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and everything queued has been taken
      work = std::move(queue_.front());
      queue_.pop_front();
    }
    work();
  }
}

}  // namespace reactor
