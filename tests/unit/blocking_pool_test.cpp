// reactor::BlockingPool: blocking work beside the loops, completions back on the reactor's thread.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "reactor/blocking_pool.h"
#include "reactor/reactor.h"

namespace {

using namespace std::chrono_literals;

// Runs `loop` until `done` or 5 s.
bool run_until(reactor::Reactor& loop, const std::function<bool()>& done) {
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    loop.run_once(10);
  }
  return true;
}

TEST(BlockingPool, WorkRunsOffTheLoopAndItsCompletionOnIt) {
  reactor::Reactor loop;
  reactor::BlockingPool pool(2, "test-pool");
  auto loop_thread = std::this_thread::get_id();
  std::thread::id work_thread, done_thread;
  bool done = false;
  auto result = std::make_shared<int>(0);
  ASSERT_TRUE(pool.submit(
      loop,
      [&, result] {
        work_thread = std::this_thread::get_id();
        *result = 42;
      },
      [&, result] {
        done_thread = std::this_thread::get_id();
        EXPECT_EQ(*result, 42);
        done = true;
      }));
  ASSERT_TRUE(run_until(loop, [&] { return done; }));
  EXPECT_NE(work_thread, loop_thread);
  EXPECT_EQ(done_thread, loop_thread);
}

TEST(BlockingPool, TheLoopKeepsRunningWhileWorkBlocks) {
  // The work waits for something only the loop can do (a timer's callback): it can finish only if
  // the loop goes on while the work blocks.
  reactor::Reactor loop;
  std::mutex m;
  std::condition_variable cv;
  bool released = false, finished = false, done = false;
  reactor::BlockingPool pool(1, "test-pool");
  pool.submit(
      loop,
      [&] {
        std::unique_lock<std::mutex> lock(m);
        finished = cv.wait_for(lock, 5s, [&] { return released; });
      },
      [&] { done = true; });
  loop.run_after(20ms, [&] {
    std::lock_guard<std::mutex> lock(m);
    released = true;
    cv.notify_all();
  });
  ASSERT_TRUE(run_until(loop, [&] { return done; }));
  EXPECT_TRUE(finished);
}

TEST(BlockingPool, OneThreadRunsWorkInSubmissionOrder) {
  reactor::Reactor loop;
  std::vector<int> ran, completed;
  {
    reactor::BlockingPool pool(1, "test-pool");
    for (int i = 0; i < 1000; ++i) {
      pool.submit(loop, [&ran, i] { ran.push_back(i); }, [&completed, i] { completed.push_back(i); });
    }
    ASSERT_TRUE(run_until(loop, [&] { return completed.size() == 1000; }));
  }
  ASSERT_EQ(ran.size(), 1000u);
  for (int i = 0; i < 1000; ++i) {
    EXPECT_EQ(ran[i], i);
    EXPECT_EQ(completed[i], i);
  }
}

TEST(BlockingPool, SeveralThreadsRunWorkAtOnce) {
  std::mutex m;
  std::condition_variable cv;
  int arrived = 0;
  std::atomic<int> met{0};
  reactor::BlockingPool pool(2, "test-pool");  // after what its work uses: joined before they go
  for (int i = 0; i < 2; ++i) {
    pool.submit([&] {
      std::unique_lock<std::mutex> lock(m);
      ++arrived;
      cv.notify_all();
      if (cv.wait_for(lock, 5s, [&] { return arrived == 2; })) ++met;
    });
  }
  std::unique_lock<std::mutex> lock(m);
  ASSERT_TRUE(cv.wait_for(lock, 10s, [&] { return arrived == 2; }));
  lock.unlock();
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (met.load() < 2 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  EXPECT_EQ(met.load(), 2) << "the two pieces of work never ran at the same time";
}

TEST(BlockingPool, DestructionFinishesWhatWasQueued) {
  std::atomic<int> count{0};
  {
    reactor::BlockingPool pool(2, "test-pool");
    for (int i = 0; i < 500; ++i) pool.submit([&] { ++count; });
  }
  EXPECT_EQ(count.load(), 500);
}

}  // namespace
