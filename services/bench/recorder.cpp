#include "services/bench/recorder.hpp"

#include "services/common/status_code_name.hpp"

namespace shoutflow::bench {

void recorder::add(op_kind op, std::chrono::nanoseconds latency, bool ok,
                   grpc::StatusCode code, bool counted,
                   clock_type::time_point completed) {
  auto second = completed < run_start_
                  ? 0
                  : std::chrono::duration_cast<std::chrono::seconds>(
                      completed - run_start_)
                      .count();
  std::lock_guard<std::mutex> guard{mu_};
  if (counted) {
    auto& s = window_[op];
    if (ok) {
      ++s.ok;
      s.latency_ns.record(latency.count());
    } else {
      ++s.errors;
      ++s.errors_by_code[services::status_code_name(code)];
    }
  }
  if (series_.size() <= static_cast<std::size_t>(second))
    series_.resize(static_cast<std::size_t>(second) + 1);
  auto& p = series_[static_cast<std::size_t>(second)].ops[op];
  if (ok) {
    ++p.ok;
    p.latency_ns.record(latency.count());
  } else {
    ++p.errors;
  }
}

std::map<op_kind, op_stats> recorder::window() const {
  std::lock_guard<std::mutex> guard{mu_};
  return window_;
}

std::vector<second_stats> recorder::series() const {
  std::lock_guard<std::mutex> guard{mu_};
  return series_;
}

} // namespace shoutflow::bench
