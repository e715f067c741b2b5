// shoutflow-bench's output: one JSON document (the contract scripts/bench
// and the plots read; the smoke test checks its shape) and a short human
// summary. Document, top level:
//   tool, version, started_at, finished_at
//   parameters   every option of the run
//   machine      nproc, cpu_model, kernel, hostname, memory_gib,
//                load_avg_start / load_avg_end ([1, 5, 15] minutes)
//   prepare      phases [{name, requests, duplicates, failed, seconds}],
//                read_wait_s, ok
//   run          mode (closed|open), warmup_s, duration_s, elapsed_s,
//                started_unix_ms (wall clock at series t = 0),
//                sent (every request, warm-up and probes included),
//                client_cpu_s, client_cpu_us_per_request
//   totals       ok, errors, throughput (ok per measured second),
//                errors_by_code {CODE: n}
//   operations   {op: {ok, errors, throughput, errors_by_code,
//                      latency_ms {p50, p90, p99, p999, max, mean}}}
//   series       [{t (second since the load began; the window is
//                 [warmup_s, warmup_s + duration_s)), ok, errors,
//                 ops {op: {ok, errors, p50_ms, p99_ms, max_ms}}}]
//   race         (--race only, instead of prepare/run/totals/operations/
//                series) calls, one_handle, ok, already_exists,
//                errors_by_code {CODE: n}, p50_ms, max_ms, seconds
// Latencies in milliseconds; in the open loop from the scheduled time.

#pragma once

#include <array>
#include <string>

#include "services/bench/lib/machine.hpp"
#include "services/bench/load_runner.hpp"
#include "services/bench/options.hpp"
#include "services/bench/race.hpp"

namespace shoutflow::bench {

struct report {
  options opt;
  machine_info machine;
  std::array<double, 3> load_start{};
  std::array<double, 3> load_end{};
  std::string started_at, finished_at;
  prepare_result prepare;
  bool ran = false;
  run_result run;
  bool raced = false;
  race_result race;
};

std::string to_json(const report& r);
std::string to_summary(const report& r);

} // namespace shoutflow::bench
