#include "reactor/reactor_pool.h"

#include <memory>

namespace reactor {

ReactorPool::ReactorPool(size_t threads, std::string backend, Init init, Fini fini)
    : reactors_(threads, nullptr) {
  threads_.reserve(threads);
  for (size_t i = 0; i < threads; ++i) {
    threads_.emplace_back([this, i, backend, init, fini] { thread_main(i, backend, init, fini); });
  }
  std::unique_lock<std::mutex> lock(mutex_);
  // Every thread reports success or failure: then stop() reaches every reactor that exists.
  cv_.wait(lock, [&] { return started_ == reactors_.size(); });
  if (error_) {
    auto error = error_;
    lock.unlock();
    stop();
    join();
    std::rethrow_exception(error);
  }
}

ReactorPool::~ReactorPool() {
  stop();
  join();
}

void ReactorPool::thread_main(size_t index, const std::string& backend, const Init& init, const Fini& fini) {
  std::unique_ptr<Reactor> reactor;
  bool ok = false;
  try {
    reactor = std::make_unique<Reactor>(backend);
    if (init) init(*reactor, index);
    ok = true;
  } catch (...) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!error_) error_ = std::current_exception();
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (ok) reactors_[index] = reactor.get();
    ++started_;
    cv_.notify_all();
  }
  if (ok) {
    reactor->run();  // returns at once if stop() came first
    if (fini) fini(*reactor, index);
  }
  {
    // Other threads may post to this reactor until their own loops end: destroy it only once
    // every loop has finished.
    std::unique_lock<std::mutex> lock(mutex_);
    ++finished_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return finished_ == reactors_.size(); });
    reactors_[index] = nullptr;
  }
  reactor.reset();  // on its own thread, as the owner rule wants
}

void ReactorPool::stop() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (Reactor* r : reactors_) {
    if (r != nullptr) r->stop();
  }
}

void ReactorPool::join() {
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
}

}  // namespace reactor
