// The token bucket every budget uses: a connection's requests (--message-rate) and history bytes
// (--history-rate), an address's connects, requests and history bytes, IRC's flood control.
//
// A bucket is only its tokens and when they were last refilled: the rate (tokens a second) and the
// burst (the most it holds) are configuration, shared by every bucket of a kind, and the caller
// passes them in, with the time, to refill(). The caller picks the storage: Tokens is float (a
// connection's buckets, paid per connection) or double; Time is a reactor::Clock::time_point or a
// wrapping uint32_t of milliseconds of the steady clock (the session's clock_ms()). The time comes
// first so that, declared [[no_unique_address]], a member after it may sit in its tail padding.
//
// A new bucket is full: it holds NaN until its first refill, which fills it to the burst. A bucket
// may go into debt (spend() past zero; a history answer's cost is known once it is read); take()
// never does.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

namespace chat {

template <typename Tokens, typename Time>
class TokenBucket {
  static_assert(std::is_floating_point_v<Tokens>);

 public:
  TokenBucket() : tokens_(std::numeric_limits<Tokens>::quiet_NaN()) {}

  // Adds what `rate` a second earned since the last refill, up to `burst`; a new bucket fills.
  void refill(Time now, double rate, double burst) {
    if (std::isnan(tokens_)) {
      tokens_ = static_cast<Tokens>(burst);
    } else {
      tokens_ = static_cast<Tokens>(std::min(burst, static_cast<double>(tokens_) + earned(now, rate)));
    }
    at_ = now;
  }
  // Takes `n` tokens if there are as many (after a refill): whether it did.
  bool take(double n = 1) {
    if (!(tokens_ >= n)) return false;
    tokens_ -= static_cast<Tokens>(n);
    return true;
  }
  // Takes `n` whatever is left: the bucket may go into debt (a bucket never refilled stays full).
  void spend(double n) { tokens_ -= static_cast<Tokens>(n); }
  // Tokens there now (as of the last refill): NaN for a bucket never refilled (full).
  double available() const { return static_cast<double>(tokens_); }
  bool at_least(double n) const { return std::isnan(tokens_) || tokens_ >= n; }
  bool full(double burst) const { return at_least(burst); }
  // Seconds until the bucket holds `n` at `rate` (as of the last refill): 0 if it does already.
  double seconds_until(double n, double rate) const {
    return at_least(n) ? 0.0 : (n - static_cast<double>(tokens_)) / rate;
  }

 private:
  double earned(Time now, double rate) const {
    if constexpr (std::is_same_v<Time, uint32_t>) {
      return static_cast<double>(static_cast<uint32_t>(now - at_)) * rate / 1000.0;  // wraps
    } else {
      return std::chrono::duration<double>(now - at_).count() * rate;
    }
  }

  Time at_{};
  Tokens tokens_;
};

}  // namespace chat
