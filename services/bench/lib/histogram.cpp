#include "services/bench/lib/histogram.hpp"

#include <algorithm>
#include <cassert>
#include <cmath>

namespace shoutflow::bench {

namespace {

int highest_bit(uint64_t v) {
  return 63 - __builtin_clzll(v);
}

} // namespace

histogram::histogram(int bits) : bits_(bits) {
  assert(bits >= 2 && bits <= 16);
  counts_.resize(index_of(max_value) + 1, 0);
}

std::size_t histogram::index_of(int64_t value) const {
  auto v = static_cast<uint64_t>(std::clamp<int64_t>(value, 0, max_value));
  if (v < (uint64_t{1} << bits_))
    return static_cast<std::size_t>(v);
  int shift = highest_bit(v) - bits_ + 1;
  return (static_cast<std::size_t>(shift) << (bits_ - 1))
         + static_cast<std::size_t>(v >> shift);
}

int64_t histogram::highest_in(std::size_t index) const {
  if (index < (std::size_t{1} << bits_))
    return static_cast<int64_t>(index);
  // Inverse of index_of: index = shift * 2^(S-1) + sub, sub in [2^(S-1), 2^S).
  auto shift = static_cast<int>(index >> (bits_ - 1)) - 1;
  auto sub = static_cast<int64_t>(index) - (int64_t{shift} << (bits_ - 1));
  return ((sub + 1) << shift) - 1;
}

void histogram::record(int64_t value) {
  value = std::max<int64_t>(value, 0);
  ++counts_[index_of(value)];
  if (count_ == 0 || value < min_)
    min_ = value;
  if (count_ == 0 || value > max_)
    max_ = value;
  ++count_;
  sum_ += value;
}

void histogram::merge(const histogram& other) {
  assert(other.bits_ == bits_);
  if (other.count_ == 0)
    return;
  for (std::size_t i = 0; i < counts_.size(); ++i)
    counts_[i] += other.counts_[i];
  min_ = count_ == 0 ? other.min_ : std::min(min_, other.min_);
  max_ = count_ == 0 ? other.max_ : std::max(max_, other.max_);
  count_ += other.count_;
  sum_ += other.sum_;
}

void histogram::clear() {
  std::fill(counts_.begin(), counts_.end(), 0);
  count_ = 0;
  min_ = max_ = 0;
  sum_ = 0;
}

double histogram::mean() const {
  return count_ == 0 ? 0.0 : static_cast<double>(sum_ / count_);
}

double histogram::resolution() const {
  return std::ldexp(1.0, -(bits_ - 1));
}

int64_t histogram::percentile(double q) const {
  if (count_ == 0)
    return 0;
  q = std::clamp(q, 0.0, 1.0);
  auto rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_)));
  rank = std::clamp<uint64_t>(rank, 1, count_);
  uint64_t seen = 0;
  for (std::size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      // The last bucket also holds everything above max_value: its highest
      // value is then only known as max_.
      if (i + 1 == counts_.size())
        return max_;
      return std::clamp(highest_in(i), min_, max_);
    }
  }
  return max_;
}

percentiles percentiles_ms(const histogram& ns) {
  auto ms = [](int64_t v) { return static_cast<double>(v) / 1e6; };
  percentiles p;
  p.p50 = ms(ns.percentile(0.50));
  p.p90 = ms(ns.percentile(0.90));
  p.p99 = ms(ns.percentile(0.99));
  p.p999 = ms(ns.percentile(0.999));
  p.max = ms(ns.max());
  p.mean = ns.mean() / 1e6;
  return p;
}

} // namespace shoutflow::bench
