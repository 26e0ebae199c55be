// How late a reactor gets to what is due: a probe timer every `interval`, whose lateness (the time
// from its deadline to its callback: the loop's busy time in between, plus the wait's rounding to
// whole milliseconds) goes into a histogram. Node.js and libuv users call this the event loop lag;
// a loop that keeps up shows about a millisecond, one that does not shows its backlog.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>

#include "reactor/reactor.h"

namespace reactor {

// Durations in fixed buckets from half a millisecond to seconds (Prometheus's histogram shape).
struct LatencyHistogram {
  // Upper bounds in seconds (the last bucket, past them, is +Inf).
  static constexpr std::array<double, 12> kBounds = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                     0.05,   0.1,   0.25,   0.5,   1.0,  2.5};
  std::array<uint64_t, kBounds.size() + 1> buckets{};  // per bucket, not cumulative
  uint64_t count = 0;
  double sum_seconds = 0;

  void record(Clock::duration d);
  LatencyHistogram& operator+=(const LatencyHistogram& o);
};

// Owned by the reactor's thread; starts probing at construction, stops at destruction.
class LoopLagProbe {
 public:
  LoopLagProbe(Reactor& reactor, std::chrono::milliseconds interval);
  ~LoopLagProbe();
  LoopLagProbe(const LoopLagProbe&) = delete;
  LoopLagProbe& operator=(const LoopLagProbe&) = delete;

  const LatencyHistogram& histogram() const { return histogram_; }

 private:
  void arm();

  Reactor& reactor_;
  std::chrono::milliseconds interval_;
  Clock::time_point due_{};
  TimerId timer_ = 0;
  LatencyHistogram histogram_;
};

}  // namespace reactor
