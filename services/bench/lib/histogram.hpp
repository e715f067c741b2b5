// A latency histogram with log-linear buckets, in the manner of
// HdrHistogram: values below 2^bits are counted exactly; above, every power
// of two is split into 2^(bits-1) equal sub-buckets, so a bucket is never
// wider than 1/2^(bits-1) of its lower bound. With the default of 8 bits a
// reported percentile is within 0.79 % of the true sample (above it, never
// below: percentile() answers a bucket's highest value, clamped to the
// largest value recorded), at a fixed cost of a few thousand counters,
// however many samples are recorded. Recording is O(1) and allocation-free.
//
// Bucket index of value v (m = position of v's highest set bit, S = bits):
//   v < 2^S:  index = v
//   else:     shift = m - S + 1;  index = shift * 2^(S-1) + (v >> shift)
// which numbers the buckets contiguously from 0. Values above max_value
// (2^40 - 1: 18 minutes in nanoseconds) are counted in the last bucket and
// still set max() exactly.
//
// Not thread-safe: callers that record from several threads lock around it
// or keep one per thread and merge().

#pragma once

#include <cstdint>
#include <vector>

namespace shoutflow::bench {

class histogram {
public:
  static constexpr int default_bits = 8;
  static constexpr int64_t max_value = (int64_t{1} << 40) - 1;

  /// `bits` in [2, 16]: the resolution (relative error <= 2^-(bits-1)).
  explicit histogram(int bits = default_bits);

  /// Counts one value; negative values count as 0.
  void record(int64_t value);
  /// Adds every count of `other`, which must have the same bits.
  void merge(const histogram& other);
  void clear();

  uint64_t count() const {
    return count_;
  }
  int64_t min() const {
    return count_ == 0 ? 0 : min_;
  }
  int64_t max() const {
    return count_ == 0 ? 0 : max_;
  }
  double mean() const;

  /// Nearest rank: the smallest recorded value v such that at least q of all
  /// values are <= v, to the bucket's resolution (reported as the bucket's
  /// highest value, at most max()). q in [0, 1]; 0 when empty.
  int64_t percentile(double q) const;

  /// The largest relative error percentile() can make, 2^-(bits-1).
  double resolution() const;

private:
  std::size_t index_of(int64_t value) const;
  int64_t highest_in(std::size_t index) const;

  int bits_;
  std::vector<uint64_t> counts_;
  uint64_t count_ = 0;
  int64_t min_ = 0;
  int64_t max_ = 0;
  long double sum_ = 0;
};

/// Percentiles in milliseconds of a histogram of nanoseconds; all zero when
/// it is empty.
struct percentiles {
  double p50 = 0, p90 = 0, p99 = 0, p999 = 0, max = 0, mean = 0;
};

percentiles percentiles_ms(const histogram& ns);

} // namespace shoutflow::bench
