// The hot-key race (issue 14): N RegisterUser calls sent at once, with
// distinct user ids and one handle (or, as the baseline, N handles), each
// with the run's deadline. What a client of a launch-day handle sees: how
// many won, how many were refused ALREADY_EXISTS, how many failed otherwise,
// and how long the slowest answer took.

#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "services/bench/options.hpp"
#include "services/bench/target_pool.hpp"

namespace shoutflow::bench {

struct race_result {
  int calls = 0;
  bool one_handle = true;
  int ok = 0;
  int already_exists = 0;
  /// Every other outcome, by gRPC code name.
  std::map<std::string, int> errors_by_code;
  /// From sending all calls to each answer, in milliseconds.
  double p50_ms = 0;
  double max_ms = 0;
  double seconds = 0;
};

/// Sends `opt.race` registrations at once (`opt.race_distinct`: one handle
/// each) and waits for every answer.
race_result run_race(const options& opt, target_pool& pool);

} // namespace shoutflow::bench
