#include "reactor/loop_lag.h"

#include <algorithm>

namespace reactor {

void LatencyHistogram::record(Clock::duration d) {
  double s = std::chrono::duration<double>(std::max(d, Clock::duration::zero())).count();
  size_t i = static_cast<size_t>(std::lower_bound(kBounds.begin(), kBounds.end(), s) - kBounds.begin());
  ++buckets[i];
  ++count;
  sum_seconds += s;
}

LatencyHistogram& LatencyHistogram::operator+=(const LatencyHistogram& o) {
  for (size_t i = 0; i < buckets.size(); ++i) buckets[i] += o.buckets[i];
  count += o.count;
  sum_seconds += o.sum_seconds;
  return *this;
}

LoopLagProbe::LoopLagProbe(Reactor& reactor, std::chrono::milliseconds interval)
    : reactor_(reactor), interval_(interval) {
  arm();
}

LoopLagProbe::~LoopLagProbe() {
  if (timer_) reactor_.cancel(timer_);
}

void LoopLagProbe::arm() {
  due_ = Clock::now() + interval_;
  timer_ = reactor_.run_at(due_, [this] {
    histogram_.record(Clock::now() - due_);
    arm();
  });
}

}  // namespace reactor
