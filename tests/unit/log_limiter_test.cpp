#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "reactor/log.h"

using namespace std::chrono_literals;

TEST(LogLimiter, ABurstPassesThenLinesAreCountedNotWritten) {
  reactor::LogLimiter limiter(3, 10s);
  uint64_t before = 99;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(limiter.allow(&before));
    EXPECT_EQ(before, 0u);
  }
  for (int i = 0; i < 1000; ++i) EXPECT_FALSE(limiter.allow());
  EXPECT_EQ(limiter.suppressed(), 1000u);
}

TEST(LogLimiter, TheNextWindowsFirstLineSaysHowManyWereLeftOut) {
  reactor::LogLimiter limiter(1, 50ms);
  ASSERT_TRUE(limiter.allow());
  EXPECT_FALSE(limiter.allow());
  EXPECT_FALSE(limiter.allow());
  std::this_thread::sleep_for(60ms);  // the window is what is being tested
  uint64_t before = 0;
  ASSERT_TRUE(limiter.allow(&before));
  EXPECT_EQ(before, 2u);
  EXPECT_EQ(limiter.suppressed(), 0u);
  EXPECT_EQ(reactor::more_like_it(before), " (and 2 more like it)");
  EXPECT_EQ(reactor::more_like_it(0), "");
}
