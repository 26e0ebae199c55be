#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "reactor/reactor_pool.h"

using reactor::Reactor;
using reactor::ReactorPool;

TEST(ReactorPool, EachThreadRunsItsOwnReactorAndPostsCrossBetweenThem) {
  constexpr size_t kThreads = 3;
  std::vector<std::thread::id> ids(kThreads);
  std::vector<int> counts(kThreads, 0);  // each touched only on its own reactor's thread
  ReactorPool pool(kThreads, "", [&](Reactor& r, size_t i) {
    EXPECT_EQ(Reactor::current(), &r);
    ids[i] = std::this_thread::get_id();
  });
  ASSERT_EQ(pool.size(), kThreads);
  for (size_t i = 0; i < kThreads; ++i) EXPECT_NE(ids[i], std::this_thread::get_id());
  // A ring: each reactor's task posts to the next; 300 hops in all.
  std::atomic<int> hops{0};
  std::mutex mutex;
  std::condition_variable finished;
  bool done = false;
  std::function<void(size_t)> hop = [&](size_t i) {
    EXPECT_EQ(std::this_thread::get_id(), ids[i]);
    ++counts[i];
    if (++hops == 300) {
      std::lock_guard lock(mutex);
      done = true;
      finished.notify_one();
      return;
    }
    size_t next = (i + 1) % kThreads;
    pool.at(next).post([&hop, next] { hop(next); });
  };
  pool.at(0).post([&hop] { hop(0); });
  bool completed;
  {
    // A lost post would leave the ring stuck: fail after a generous deadline, not at ctest's.
    std::unique_lock lock(mutex);
    completed = finished.wait_for(lock, std::chrono::seconds(20), [&] { return done; });
  }
  pool.stop();
  pool.join();
  ASSERT_TRUE(completed) << "the ring stopped after " << hops << " of 300 hops";
  for (size_t i = 0; i < kThreads; ++i) EXPECT_EQ(counts[i], 100);
}

TEST(ReactorPool, AFailingInitStopsTheOthersAndThrows) {
  EXPECT_THROW(ReactorPool(3, "", [](Reactor&, size_t i) {
                 if (i == 1) throw std::runtime_error("no");
               }),
               std::runtime_error);
  EXPECT_THROW(ReactorPool(2, "kqueue", nullptr), std::invalid_argument);
}
