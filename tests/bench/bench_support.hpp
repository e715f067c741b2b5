// What the benchmark programs in tests/bench/ share with shoutflow-bench:
// the command line (services/bench/lib/flags.hpp: flags, --help, usage
// errors with exit status 2), the machine facts and client CPU time
// (machine.hpp), JSON literals (json_writer.hpp) and latency percentiles
// from the log-linear histogram (histogram.hpp), so every figure in
// docs/benchmarks.md is computed one way.

#pragma once

#include <cstdint>
#include <vector>

#include "services/bench/lib/flags.hpp"
#include "services/bench/lib/histogram.hpp"
#include "services/bench/lib/json_writer.hpp"
#include "services/bench/lib/machine.hpp"

namespace shoutflow::bench {

/// Percentiles in milliseconds of latency samples in nanoseconds (for the
/// programs that keep their samples for other reasons, e.g. to classify them
/// by phase afterwards); through the same histogram as shoutflow-bench.
inline percentiles summarize(const std::vector<int64_t>& samples_ns) {
  histogram h;
  for (auto s : samples_ns)
    h.record(s);
  return percentiles_ms(h);
}

} // namespace shoutflow::bench
