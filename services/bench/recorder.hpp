// Outcomes of a run's requests: per operation, the latency histogram and the
// error counts by gRPC code of the measured window; and, for the whole run
// (warm-up and drain included), a per-second series by completion time of
// successes, errors and latency per operation, which the fail-over and lag
// plots need. Callbacks arrive on several gRPC threads: one mutex, held for
// a few counter updates, is far from being the bottleneck at the rates a
// single client reaches.

#pragma once

#include <grpcpp/grpcpp.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "services/bench/lib/histogram.hpp"
#include "services/bench/workload.hpp"

namespace shoutflow::bench {

struct op_stats {
  uint64_t ok = 0;
  uint64_t errors = 0;
  std::map<std::string, uint64_t> errors_by_code;
  histogram latency_ns;
};

struct second_stats {
  struct per_op {
    uint64_t ok = 0;
    uint64_t errors = 0;
    /// Coarser than the window's (3 % instead of 0.8 %): one per second.
    histogram latency_ns{6};
  };
  std::map<op_kind, per_op> ops;
};

class recorder {
public:
  using clock_type = std::chrono::steady_clock;

  explicit recorder(clock_type::time_point run_start) : run_start_(run_start) {
  }

  /// One finished request. `counted`: inside the measured window;
  /// `completed`: when its reply arrived (places it in the series).
  void add(op_kind op, std::chrono::nanoseconds latency, bool ok,
           grpc::StatusCode code, bool counted,
           clock_type::time_point completed);

  /// Copies, taken once the run has drained.
  std::map<op_kind, op_stats> window() const;
  std::vector<second_stats> series() const;

private:
  mutable std::mutex mu_;
  clock_type::time_point run_start_;
  std::map<op_kind, op_stats> window_;
  std::vector<second_stats> series_;
};

} // namespace shoutflow::bench
