// Slow consumers: one policy for every transport, as Redis's checkClientOutputBufferLimits. A hard
// limit that a member may never pass (the send is refused and the member closed), and a soft limit
// it may stay above only for a grace period. Both measure what the transport reports queued.
// The room never waits for a slow member: it is closed, with the reason logged and counted.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

#include "reactor/output_queue.h"
#include "reactor/timer_queue.h"

namespace chat {

class OutputLimit {
 public:
  // Per member: when it went over the soft limit (the epoch while it is not).
  struct State {
    reactor::Clock::time_point over_soft_since{};
  };
  enum class Verdict { kOk, kOverHard, kOverSoft };

  OutputLimit(size_t hard, size_t soft, std::chrono::milliseconds soft_grace)
      : hard_(hard), soft_(soft), soft_grace_(soft_grace) {}

  // Before queuing `adding` bytes (one more chunk) onto `queued`: kOverHard if the queue would
  // pass the hard limit.
  Verdict before_send(size_t queued, size_t adding) const {
    return hard_ != 0 && queued + adding + reactor::OutputQueue::kChunkOverhead > hard_ ? Verdict::kOverHard
                                                                                       : Verdict::kOk;
  }
  // After queuing, `queued` now: kOverSoft once the queue has stayed above the soft limit for
  // longer than the grace. Reads the clock only while above the soft limit.
  Verdict after_send(size_t queued, State& state) const {
    if (queued <= soft_) {
      state.over_soft_since = {};
      return Verdict::kOk;
    }
    auto now = reactor::Clock::now();
    if (state.over_soft_since == reactor::Clock::time_point{}) {
      state.over_soft_since = now;
      return Verdict::kOk;
    }
    return now - state.over_soft_since > soft_grace_ ? Verdict::kOverSoft : Verdict::kOk;
  }
  // The close reason's text for a verdict, with what was queued (`bytes` in `chunks`).
  std::string describe(Verdict verdict, size_t bytes, size_t chunks) const {
    if (verdict == Verdict::kOverHard) {
      return "slow consumer: output limit exceeded (" + std::to_string(bytes) + " bytes in " + std::to_string(chunks) +
             " chunks queued)";
    }
    return "slow consumer: over the soft output limit of " + std::to_string(soft_) + " bytes for more than " +
           std::to_string(soft_grace_.count()) + " ms";
  }

 private:
  size_t hard_;
  size_t soft_;
  std::chrono::milliseconds soft_grace_;
};

}  // namespace chat
