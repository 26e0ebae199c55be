// The one token bucket (chat/ops/token_bucket.h) in both its storages, and the address table's
// three budgets built on it.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>

#include "chat/frontends/irc/irc.h"
#include "chat/ops/admission.h"
#include "chat/ops/token_bucket.h"
#include "reactor/timer_queue.h"

namespace token_bucket_test {

using chat::TokenBucket;
using Clock = reactor::Clock;
using std::chrono::milliseconds;

TEST(TokenBucket, NewIsFullAndRefillsFromTheTimeGiven) {
  TokenBucket<double, Clock::time_point> b;
  EXPECT_TRUE(b.full(5));  // never refilled: full whatever the burst
  Clock::time_point t0 = Clock::now();
  b.refill(t0, /*rate=*/2, /*burst=*/5);
  EXPECT_EQ(b.available(), 5);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(b.take());
  EXPECT_FALSE(b.take());
  EXPECT_EQ(b.available(), 0);
  EXPECT_DOUBLE_EQ(b.seconds_until(1, 2), 0.5);
  b.refill(t0 + milliseconds(250), 2, 5);  // half a token
  EXPECT_DOUBLE_EQ(b.available(), 0.5);
  EXPECT_FALSE(b.take());
  EXPECT_DOUBLE_EQ(b.seconds_until(1, 2), 0.25);
  b.refill(t0 + milliseconds(500), 2, 5);
  EXPECT_TRUE(b.take());
  b.refill(t0 + std::chrono::hours(1), 2, 5);  // never past the burst
  EXPECT_EQ(b.available(), 5);
  EXPECT_TRUE(b.full(5));
  EXPECT_EQ(b.seconds_until(3, 2), 0);
}

TEST(TokenBucket, SpendGoesIntoDebtTakeDoesNot) {
  TokenBucket<float, uint32_t> b;
  b.spend(100);  // never refilled: stays full
  EXPECT_TRUE(b.at_least(1e9));
  b.refill(1000, /*rate=*/100, /*burst=*/50);
  EXPECT_FALSE(b.take(51));
  EXPECT_EQ(b.available(), 50);
  b.spend(80);
  EXPECT_EQ(b.available(), -30);
  EXPECT_FALSE(b.at_least(0));
  EXPECT_DOUBLE_EQ(b.seconds_until(0, 100), 0.3);
  b.refill(1200, 100, 50);  // 200 ms: 20 back
  EXPECT_FLOAT_EQ(static_cast<float>(b.available()), -10);
  b.refill(1300, 100, 50);
  EXPECT_TRUE(b.at_least(0));
}

TEST(TokenBucket, MillisecondsWrap) {
  TokenBucket<float, uint32_t> b;
  b.refill(UINT32_MAX - 99, /*rate=*/10, /*burst=*/10);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(b.take());
  b.refill(100, 10, 10);  // 200 ms later, across the wrap
  EXPECT_FLOAT_EQ(static_cast<float>(b.available()), 2);
}

TEST(TokenBucket, PerConnectionObjectsKeepTheirSize) {
  // The bucket is as small as its tokens and stamp; IRC's puts its batch counter in the padding.
  static_assert(sizeof(TokenBucket<float, uint32_t>) == 8);
  static_assert(sizeof(TokenBucket<float, Clock::time_point>) == 16);
  EXPECT_LE(sizeof(chat::IrcCodec), 120u);
}

TEST(AddressTable, ConnectRequestAndHistoryBudgets) {
  chat::AddressLimits limits;
  limits.max_connections = 0;
  limits.connect_rate = 1;
  limits.connect_burst = 2;
  limits.request_rate = 10;
  limits.request_burst = 5;
  limits.history_rate = 100;
  limits.history_burst = 1000;
  chat::AddressTable table(limits);
  chat::AddressKey key{0, 7};
  Clock::time_point t0 = Clock::now();
  EXPECT_EQ(table.admit(key, t0), chat::Admission::kAdmitted);
  EXPECT_EQ(table.admit(key, t0), chat::Admission::kAdmitted);
  EXPECT_EQ(table.admit(key, t0), chat::Admission::kTooFast);
  EXPECT_EQ(table.admit(key, t0 + milliseconds(1000)), chat::Admission::kAdmitted);

  EXPECT_EQ(table.borrow_requests(key, t0, 3), 3u);
  EXPECT_EQ(table.borrow_requests(key, t0, 3), 2u);  // what is left of the burst
  EXPECT_EQ(table.borrow_requests(key, t0, 3), 0u);
  EXPECT_EQ(table.borrow_requests(key, t0 + milliseconds(200), 3), 2u);  // two earned since
  EXPECT_EQ(table.borrow_requests({0, 8}, t0, 3), 3u);  // no connection counted: no budget

  EXPECT_FALSE(table.history_in_debt(key, t0));
  table.charge_history(key, t0, 1500);  // into debt by one answer
  EXPECT_TRUE(table.history_in_debt(key, t0 + milliseconds(4000)));
  EXPECT_FALSE(table.history_in_debt(key, t0 + milliseconds(5000)));

  // Forgotten once every bucket is full again and nothing is open.
  for (int i = 0; i < 3; ++i) table.release(key);
  EXPECT_EQ(table.sweep(t0 + milliseconds(5000)), 1u);  // history not yet full again
  EXPECT_EQ(table.sweep(t0 + milliseconds(20000)), 0u);
}

}  // namespace token_bucket_test
