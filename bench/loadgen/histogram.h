// Latency histogram (from the retired echo-load), mergeable across processes.
//
// HDR-style log-linear buckets: exact below 64 ns, then 32 linear sub-buckets per power of two, so
// every bucket spans at most 1/32 (3.1%) of its values; a percentile is reported as the middle of
// its bucket (at most 1.6% off). Covers 1 ns .. 2^40 ns (18 minutes). A worker process sends its
// non-empty buckets to the parent (`for_each_bucket`), which adds them up (`add_bucket`).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace loadgen {

class Histogram {
 public:
  static constexpr int kSubBits = 5;
  static constexpr uint64_t kSub = 1u << kSubBits;  // 32
  static constexpr int kMaxShift = 40 - kSubBits;
  static constexpr size_t kBuckets = (kMaxShift + 2) * kSub;

  Histogram() : counts_(kBuckets, 0) {}

  void record(uint64_t ns) {
    ++counts_[index(ns)];
    ++total_;
    sum_ += ns;
    max_ = std::max(max_, ns);
    min_ = std::min(min_, ns);
  }
  void reset() {
    std::fill(counts_.begin(), counts_.end(), 0);
    total_ = sum_ = max_ = 0;
    min_ = UINT64_MAX;
  }
  uint64_t total() const { return total_; }
  uint64_t sum() const { return sum_; }
  uint64_t max() const { return max_; }
  uint64_t min() const { return total_ ? min_ : 0; }
  double mean() const { return total_ ? static_cast<double>(sum_) / static_cast<double>(total_) : 0; }

  // The value at quantile q (0..1]: the smallest bucket holding at least ceil(q * total) values.
  double quantile(double q) const {
    if (total_ == 0) return 0;
    uint64_t rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(total_)));
    rank = std::clamp<uint64_t>(rank, 1, total_);
    uint64_t seen = 0;
    for (size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= rank) return std::min(middle(i), static_cast<double>(max_));
    }
    return static_cast<double>(max_);
  }

  // ---- Serialisation (sparse) and merging ----
  template <typename F>
  void for_each_bucket(F&& f) const {
    for (size_t i = 0; i < counts_.size(); ++i) {
      if (counts_[i]) f(i, counts_[i]);
    }
  }
  // Adds `count` values to bucket `i` (as the middle of the bucket for the sum); the exact sum,
  // minimum and maximum are restored with `add_summary`.
  void add_bucket(size_t i, uint64_t count) {
    if (i >= counts_.size() || count == 0) return;
    counts_[i] += count;
    total_ += count;
  }
  void add_summary(uint64_t sum, uint64_t min, uint64_t max) {
    sum_ += sum;
    max_ = std::max(max_, max);
    if (min > 0 || max > 0) min_ = std::min(min_, min);
  }
  void merge(const Histogram& other) {
    for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
    total_ += other.total_;
    sum_ += other.sum_;
    max_ = std::max(max_, other.max_);
    min_ = std::min(min_, other.min_);
  }

 private:
  static size_t index(uint64_t v) {
    if (v < 2 * kSub) return static_cast<size_t>(v);  // shift 0: exact
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - kSubBits;  // >= 1
    if (shift > kMaxShift) return kBuckets - 1;
    return static_cast<size_t>((shift + 1) * kSub + ((v >> shift) - kSub));
  }
  static double middle(size_t i) {
    if (i < 2 * kSub) return static_cast<double>(i);
    uint64_t shift = i / kSub - 1;
    uint64_t low = (i % kSub + kSub) << shift;
    return static_cast<double>(low) + static_cast<double>((uint64_t{1} << shift) - 1) / 2.0;
  }

  std::vector<uint64_t> counts_;
  uint64_t total_ = 0;
  uint64_t sum_ = 0;
  uint64_t max_ = 0;
  uint64_t min_ = UINT64_MAX;
};

}  // namespace loadgen
