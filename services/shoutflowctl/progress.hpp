#pragma once

// Progress of a long operation (a rebuild) on stdout.
//
// On a terminal: one line redrawn in place (carriage return and
// erase-to-end-of-line) with a bar, the counts, the rate and an ETA, at
// most every 200 ms. Otherwise (a pipe, a file, a CI log): one plain line
// every `line_interval`, so logs stay readable and grep-able:
//   users g2: building 45.0% (1200/2667 events), 530 events/s, ETA 2.8s
//
// The rate is measured over the last ten seconds of samples, not since the
// start: a replay slows down while the live load competes with it, and an
// ETA from the overall average would lag behind that.

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <ostream>
#include <string>
#include <utility>

namespace shoutflow::ctl {

/// Units per second over a sliding window of (time, units done) samples.
class rate_window {
public:
  using clock = std::chrono::steady_clock;

  explicit rate_window(std::chrono::milliseconds span
                       = std::chrono::seconds(10));

  void add(clock::time_point at, int64_t done);
  /// Nothing until two samples at least 100 ms apart.
  std::optional<double> per_second() const;
  /// Seconds until `remaining` more units are done at the current rate.
  std::optional<double> eta_seconds(int64_t remaining) const;

private:
  std::chrono::milliseconds span_;
  std::deque<std::pair<clock::time_point, int64_t>> samples_;
};

class progress_meter {
public:
  progress_meter(std::ostream& out, bool terminal,
                 std::chrono::milliseconds line_interval, std::string label);

  /// A new sample: `done` of `total` units, in `state`.
  void update(int64_t done, int64_t total, const std::string& state);
  /// Ends the progress display (erases the bar on a terminal) with
  /// `message` on a line of its own, if not empty.
  void finish(const std::string& message);

private:
  std::string describe(int64_t done, int64_t total,
                       const std::string& state) const;

  std::ostream& out_;
  bool terminal_;
  std::chrono::milliseconds line_interval_;
  std::string label_;
  rate_window rate_;
  std::optional<rate_window::clock::time_point> last_output_;
  bool drawn_ = false;
};

} // namespace shoutflow::ctl
