// The Initiation Dispatcher: phase behaviour against a fake demultiplexer, timers, posted tasks,
// signals and the thread rules.
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "reactor/loop_lag.h"
#include "reactor/reactor.h"
#include "test_util.h"

using namespace std::chrono_literals;
using reactor::Clock;
using reactor::Events;
using reactor::Interest;
using reactor::Reactor;

namespace {

// A scripted demultiplexer: records what the reactor asks of "the kernel" and returns batches of
// events chosen by the test.
class FakeDemultiplexer : public reactor::Demultiplexer {
 public:
  struct Log {
    std::vector<std::string> calls;
    std::deque<std::vector<reactor::ReadyEvent>> batches;
  };
  explicit FakeDemultiplexer(Log& log) : log_(log) {}
  const char* name() const noexcept override { return "fake"; }
  void add(int fd, Interest i) override { record("add", fd, i); }
  void modify(int fd, Interest i) override { record("modify", fd, i); }
  void remove(int fd) override { log_.calls.push_back("remove " + std::to_string(fd)); }
  void wait(int, std::vector<reactor::ReadyEvent>& out) override {
    out.clear();
    if (!log_.batches.empty()) {
      out = log_.batches.front();
      log_.batches.pop_front();
    }
  }

 private:
  void record(const char* what, int fd, Interest i) {
    log_.calls.push_back(std::string(what) + " " + std::to_string(fd) + " " + reactor::interest_name(i));
  }
  Log& log_;
};

}  // namespace

TEST(ReactorWithFake, InterestSwitchedOnAndOffInOneIterationNeverReachesTheKernel) {
  FakeDemultiplexer::Log log;
  Reactor loop(std::make_unique<FakeDemultiplexer>(log));
  log.calls.clear();  // the reactor's own eventfd
  loop.add(100, Interest::kRead, [](Events) {});
  ASSERT_EQ(log.calls, std::vector<std::string>{"add 100 read"});
  loop.modify(100, Interest::kReadWrite);
  loop.modify(100, Interest::kRead);
  loop.run_once(0);
  EXPECT_EQ(log.calls.size(), 1u) << "a net-zero change cost a system call";
  loop.modify(100, Interest::kReadWrite);
  loop.run_once(0);
  EXPECT_EQ(log.calls.back(), "modify 100 read|write");
  loop.modify(100, Interest::kNone);
  loop.run_once(0);
  EXPECT_EQ(log.calls.back(), "remove 100") << "no interest: out of the kernel";
  loop.modify(100, Interest::kWrite);
  loop.run_once(0);
  EXPECT_EQ(log.calls.back(), "add 100 write");
}

TEST(ReactorWithFake, StaleEventForAReusedNumberIsDropped) {
  FakeDemultiplexer::Log log;
  Reactor loop(std::make_unique<FakeDemultiplexer>(log));
  std::vector<std::string> called;
  loop.add(7, Interest::kRead, [&](Events) {
    called.push_back("seven");
    // Close 8 and reuse its number for a new registration within the same batch.
    loop.remove(8);
    loop.add(8, Interest::kRead, [&](Events) { called.push_back("new eight"); });
  });
  loop.add(8, Interest::kRead, [&](Events) { called.push_back("old eight"); });
  log.batches.push_back({{7, reactor::kReadable}, {8, reactor::kReadable}});
  loop.run_once(0);
  EXPECT_EQ(called, std::vector<std::string>{"seven"});
  log.batches.push_back({{8, reactor::kReadable}});
  loop.run_once(0);
  EXPECT_EQ(called, (std::vector<std::string>{"seven", "new eight"}));
}

TEST(ReactorWithFake, ErrorsAreDeliveredToTheWatchedSide) {
  FakeDemultiplexer::Log log;
  Reactor loop(std::make_unique<FakeDemultiplexer>(log));
  Events seen = 0;
  loop.add(5, Interest::kWrite, [&](Events e) { seen = e; });
  log.batches.push_back({{5, reactor::kError}});
  loop.run_once(0);
  EXPECT_EQ(seen, reactor::kError | reactor::kWritable);
}

TEST(ReactorWithFake, DeferredWorkRunsAfterTheDispatchNotInsideIt) {
  FakeDemultiplexer::Log log;
  Reactor loop(std::make_unique<FakeDemultiplexer>(log));
  std::vector<std::string> order;
  loop.add(5, Interest::kRead, [&](Events) {
    loop.defer([&] { order.push_back("deferred"); });
    order.push_back("handler 5");
  });
  loop.add(6, Interest::kRead, [&](Events) { order.push_back("handler 6"); });
  log.batches.push_back({{5, reactor::kReadable}, {6, reactor::kReadable}});
  loop.run_once(0);
  loop.run_once(0);
  EXPECT_EQ(order, (std::vector<std::string>{"handler 5", "handler 6", "deferred"}));
}

// ---- Timers -----------------------------------------------------------------------------------

TEST(Timers, OneShotFiresOnceAfterItsDelay) {
  Reactor loop;
  auto start = Clock::now();
  Clock::time_point fired;
  int count = 0;
  loop.run_after(30ms, [&] {
    fired = Clock::now();
    ++count;
    loop.stop();
  });
  loop.run();
  EXPECT_EQ(count, 1);
  EXPECT_GE(fired - start, 30ms);
  loop.run_once(0);
  EXPECT_EQ(count, 1);
}

TEST(Timers, EqualDeadlinesFireInTheOrderScheduled) {
  Reactor loop;
  std::vector<int> order;
  auto when = Clock::now() + 10ms;
  for (int i = 0; i < 50; ++i) loop.run_at(when, [&order, i] { order.push_back(i); });
  loop.run_at(when - 5ms, [&] { order.push_back(-1); });
  loop.run_at(when + 5ms, [&] { loop.stop(); });
  loop.run();
  ASSERT_EQ(order.size(), 51u);
  EXPECT_EQ(order[0], -1);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(order[static_cast<size_t>(i) + 1], i);
}

TEST(Timers, RepeatingUntilCancelled) {
  Reactor loop;
  int ticks = 0;
  reactor::TimerId id = 0;
  id = loop.run_every(5ms, [&] {
    if (++ticks == 5) {
      EXPECT_TRUE(loop.cancel(id));
      loop.run_after(30ms, [&] { loop.stop(); });
    }
  });
  loop.run();
  EXPECT_EQ(ticks, 5);
  EXPECT_FALSE(loop.cancel(id));
}

TEST(Timers, CancelledBeforeItsDeadlineNeverRuns) {
  Reactor loop;
  bool ran = false;
  auto id = loop.run_after(10ms, [&] { ran = true; });
  auto other = loop.run_after(1ms, [&] { EXPECT_TRUE(loop.cancel(id)); });
  (void)other;
  loop.run_after(40ms, [&] { loop.stop(); });
  loop.run();
  EXPECT_FALSE(ran);
}

TEST(Timers, ZeroDelayTimerThatReArmsDoesNotStarveIO) {
  Reactor loop;
  auto p = testutil::make_pipe();
  testutil::put_byte(p.write.get());
  bool io = false;
  std::function<void()> again = [&] { loop.run_after(0ms, again); };
  loop.run_after(0ms, again);
  loop.add(p.read.get(), Interest::kRead, [&](Events) { io = true; });
  for (int i = 0; i < 5 && !io; ++i) loop.run_once(100);
  EXPECT_TRUE(io);
}

// ---- Posted tasks -----------------------------------------------------------------------------

TEST(Tasks, PostedFromOtherThreadsRunOnTheLoopThreadInOrderPerThread) {
  Reactor loop;
  constexpr int kThreads = 4, kPerThread = 2000;
  std::vector<std::vector<int>> seen(kThreads);
  int total = 0;
  bool wrong_thread = false;
  const auto loop_thread = std::this_thread::get_id();
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        loop.post([&, t, i] {
          if (std::this_thread::get_id() != loop_thread) wrong_thread = true;
          seen[static_cast<size_t>(t)].push_back(i);
          if (++total == kThreads * kPerThread) loop.stop();
        });
      }
    });
  }
  loop.run();  // blocks in the wait: only the eventfd wake-ups bring the tasks in
  for (auto& th : threads) th.join();
  EXPECT_FALSE(wrong_thread);
  EXPECT_EQ(total, kThreads * kPerThread);
  for (auto& v : seen) {
    ASSERT_EQ(v.size(), static_cast<size_t>(kPerThread));
    for (int i = 0; i < kPerThread; ++i) ASSERT_EQ(v[static_cast<size_t>(i)], i);
  }
}

TEST(Tasks, StopFromAnotherThreadWakesABlockedLoop) {
  Reactor loop;
  std::atomic<bool> entered{false};
  loop.post([&] { entered = true; });
  std::thread stopper([&] {
    // Bounded: if the posted task never ran, stop anyway and let the assertion below say so.
    auto deadline = Clock::now() + 20s;
    while (!entered && Clock::now() < deadline) std::this_thread::yield();
    loop.stop();
  });
  auto start = Clock::now();
  loop.run();  // no timers, no I/O: only stop()'s wake-up ends the wait
  stopper.join();
  EXPECT_TRUE(entered) << "the posted task did not run";
  EXPECT_LT(Clock::now() - start, 5s);
}

TEST(Tasks, RunInLoopRunsAtOnceOnTheLoopThread) {
  Reactor loop;
  bool ran = false;
  loop.run_in_loop([&] { ran = true; });
  EXPECT_TRUE(ran);
}

// ---- Signals ----------------------------------------------------------------------------------

TEST(Signals, SigtermStopsTheLoopGracefully) {
  Reactor loop;
  loop.stop_on_signals();
  bool timed_out = false;
  loop.run_after(20s, [&] {  // a loop SIGTERM failed to stop fails here, not at ctest's timeout
    timed_out = true;
    loop.stop();
  });
  // A thread started after the signals were blocked inherits the mask; the process-directed
  // signal can only be taken through the signalfd.
  std::thread sender([] { ::kill(::getpid(), SIGTERM); });
  loop.run();
  sender.join();
  EXPECT_FALSE(timed_out) << "SIGTERM did not stop the loop";
  // Taken (through the signalfd), not left pending for the next reactor.
  sigset_t pending;
  ASSERT_EQ(::sigpending(&pending), 0);
  EXPECT_FALSE(sigismember(&pending, SIGTERM));
}

TEST(Signals, CallbackGetsTheSignalNumber) {
  Reactor loop;
  int got = 0;
  loop.on_signal(SIGUSR1, [&](int s) {
    got = s;
    loop.stop();
  });
  ::raise(SIGUSR1);
  loop.run();
  EXPECT_EQ(got, SIGUSR1);
}

// ---- Threads ----------------------------------------------------------------------------------

TEST(Threads, CurrentIsTheReactorOfThisThread) {
  EXPECT_EQ(Reactor::current(), nullptr);
  {
    Reactor loop;
    EXPECT_EQ(Reactor::current(), &loop);
    Reactor* other = &loop;
    std::thread([&] { other = Reactor::current(); }).join();
    EXPECT_EQ(other, nullptr);
  }
  EXPECT_EQ(Reactor::current(), nullptr);
}

#ifndef NDEBUG
TEST(ThreadsDeathTest, CallsFromTheWrongThreadAreCaughtInDebugBuilds) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        Reactor loop;
        std::thread([&] { loop.run_after(1ms, [] {}); }).join();
      },
      "does not own the reactor");
}
#endif

TEST(ThreadsDeathTest, ASecondReactorInOneThreadIsRefused) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        Reactor a;
        Reactor b;
      },
      "one reactor per thread");
}

// ---- LoopLagProbe: how late the loop gets to what is due ----------------------------------------

TEST(LatencyHistogram, ADurationGoesInTheFirstBucketWhoseBoundHoldsIt) {
  reactor::LatencyHistogram h;
  h.record(std::chrono::microseconds(500));  // on a bound: that bucket (le is "less or equal")
  h.record(std::chrono::microseconds(501));
  h.record(std::chrono::seconds(3));         // past every bound: +Inf
  h.record(-std::chrono::milliseconds(1));   // early (cannot be, but counted as 0)
  EXPECT_EQ(h.buckets[0], 2u);
  EXPECT_EQ(h.buckets[1], 1u);
  EXPECT_EQ(h.buckets.back(), 1u);
  EXPECT_EQ(h.count, 4u);
  EXPECT_NEAR(h.sum_seconds, 3.001001, 1e-9);
}

TEST(LoopLagProbe, ALoopKeptBusyPastTheProbesDeadlineRecordsThatLateness) {
  reactor::Reactor loop;
  reactor::LoopLagProbe probe(loop, std::chrono::milliseconds(10));
  // The thread is busy (here: asleep) for 80 ms before the loop runs: the probe, due after 10 ms,
  // runs at least 70 ms late.
  std::this_thread::sleep_for(std::chrono::milliseconds(80));
  for (int i = 0; i < 100 && probe.histogram().count == 0; ++i) loop.run_once(100);
  const reactor::LatencyHistogram h = probe.histogram();  // a copy: the probe goes on below
  ASSERT_EQ(h.count, 1u);
  uint64_t up_to_50ms = 0;
  for (size_t b = 0; b < h.kBounds.size() && h.kBounds[b] <= 0.05; ++b) up_to_50ms += h.buckets[b];
  EXPECT_EQ(up_to_50ms, 0u);
  EXPECT_GE(h.sum_seconds, 0.07);
  // Then a loop with nothing to do: its next three probes are on time (within the wait's rounding
  // to milliseconds, and what a busy machine adds), none as late as the first.
  while (probe.histogram().count < 4) loop.run_once(100);
  EXPECT_LT(probe.histogram().sum_seconds - h.sum_seconds, 0.2);
}
