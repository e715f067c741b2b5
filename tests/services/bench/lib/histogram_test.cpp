// The bench histogram's percentiles against exact nearest-rank percentiles
// of the same samples: never below the true value and within the promised
// relative resolution above it, over distributions shaped like latencies
// (log-normal, bimodal with a far tail) and over every magnitude it covers.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "services/bench/lib/histogram.hpp"

using shoutflow::bench::histogram;

namespace {

/// The smallest sample with at least q of all samples at or below it.
int64_t exact(std::vector<int64_t> v, double q) {
  std::sort(v.begin(), v.end());
  auto rank
    = static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size())));
  rank = std::clamp<std::size_t>(rank, 1, v.size());
  return v[rank - 1];
}

void expect_accurate(const std::vector<int64_t>& samples, int bits) {
  histogram h{bits};
  for (auto s : samples)
    h.record(s);
  ASSERT_EQ(h.count(), samples.size());
  for (double q : {0.0, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0}) {
    auto truth = exact(samples, q);
    auto got = h.percentile(q);
    EXPECT_GE(got, truth) << "q=" << q;
    EXPECT_LE(static_cast<double>(got - truth),
              h.resolution() * static_cast<double>(truth))
      << "q=" << q << " truth " << truth << " got " << got;
  }
  EXPECT_EQ(h.max(), *std::max_element(samples.begin(), samples.end()));
  EXPECT_EQ(h.min(), *std::min_element(samples.begin(), samples.end()));
  EXPECT_EQ(h.percentile(1.0), h.max());
}

} // namespace

TEST(histogram, empty_reports_zeros) {
  histogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.percentile(0.5), 0);
  EXPECT_EQ(h.max(), 0);
  EXPECT_EQ(h.mean(), 0.0);
  auto p = shoutflow::bench::percentiles_ms(h);
  EXPECT_EQ(p.p99, 0.0);
}

TEST(histogram, small_values_are_exact) {
  histogram h{8};
  std::vector<int64_t> v;
  for (int64_t i = 0; i < 256; ++i) {
    h.record(i);
    v.push_back(i);
  }
  for (double q : {0.01, 0.25, 0.5, 0.75, 0.99})
    EXPECT_EQ(h.percentile(q), exact(v, q)) << q;
}

TEST(histogram, lognormal_latencies_within_resolution) {
  std::mt19937_64 rng{42};
  // Median ~2 ms, a long tail to seconds, in nanoseconds.
  std::lognormal_distribution<double> d{std::log(2e6), 1.2};
  std::vector<int64_t> v;
  for (int i = 0; i < 200000; ++i)
    v.push_back(static_cast<int64_t>(d(rng)));
  expect_accurate(v, 8);
  expect_accurate(v, 6);
  expect_accurate(v, 12);
}

TEST(histogram, bimodal_with_far_tail) {
  std::mt19937_64 rng{7};
  std::uniform_int_distribution<int64_t> fast{200000, 900000}; // 0.2-0.9 ms
  std::uniform_int_distribution<int64_t> stall{2000000000, 3000000000}; // 2-3 s
  std::vector<int64_t> v;
  for (int i = 0; i < 100000; ++i)
    v.push_back(i % 500 == 0 ? stall(rng) : fast(rng));
  expect_accurate(v, 8);
}

TEST(histogram, every_magnitude) {
  // Powers of two and their neighbours: the bucket edges of every octave.
  std::vector<int64_t> v;
  for (int b = 0; b < 40; ++b)
    for (int64_t d : {-1, 0, 1}) {
      int64_t x = (int64_t{1} << b) + d;
      if (x >= 0 && x <= histogram::max_value)
        v.push_back(x);
    }
  expect_accurate(v, 8);
  // Each value alone: the percentile of a single sample is that sample,
  // up to the resolution (and clamped to it, since it is also the max).
  for (auto x : v) {
    histogram h;
    h.record(x);
    EXPECT_EQ(h.percentile(0.5), x);
  }
}

TEST(histogram, merge_equals_recording_everything_once) {
  std::mt19937_64 rng{3};
  std::exponential_distribution<double> d{1.0 / 5e6};
  histogram a, b, all;
  for (int i = 0; i < 50000; ++i) {
    auto x = static_cast<int64_t>(d(rng));
    (i % 2 ? a : b).record(x);
    all.record(x);
  }
  a.merge(b);
  EXPECT_EQ(a.count(), all.count());
  EXPECT_EQ(a.max(), all.max());
  EXPECT_EQ(a.min(), all.min());
  EXPECT_DOUBLE_EQ(a.mean(), all.mean());
  for (double q : {0.5, 0.9, 0.99, 0.999})
    EXPECT_EQ(a.percentile(q), all.percentile(q));
}

TEST(histogram, out_of_range_values_are_clamped_not_lost) {
  histogram h;
  h.record(-5);
  h.record(histogram::max_value * 4);
  EXPECT_EQ(h.count(), 2u);
  EXPECT_EQ(h.min(), 0);
  EXPECT_EQ(h.max(), histogram::max_value * 4);
  EXPECT_EQ(h.percentile(0.5), 0);
  EXPECT_EQ(h.percentile(1.0), histogram::max_value * 4);
}
