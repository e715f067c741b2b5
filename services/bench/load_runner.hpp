// Runs shoutflow-bench's two phases against a target_pool.
//
// prepare(): registers the users, makes the follows, posts the seed shouts
// (K requests in flight; UNAVAILABLE and DEADLINE_EXCEEDED retried with the
// same command id, so a retry is answered as a duplicate), then, when the
// mix reads, waits until every query target has applied the last of those
// writes (GetUser with min_position).
//
// run(): warm-up + measured window, either
//   * closed loop: exactly `inflight` requests in flight; a completion
//     issues the next request; counted when it completes inside the window;
//   * open loop: request i is scheduled at start + i / rate, whatever the
//     server does; latency runs from that scheduled time, so a stall shows up
//     in the percentiles instead of slowing the sender (no coordinated
//     omission); counted when it was scheduled inside the window.
// Requests use the gRPC callback API: completions run on gRPC's threads, and
// one sender thread (open loop) or none (closed loop) keeps the load going.

#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "services/bench/options.hpp"
#include "services/bench/recorder.hpp"
#include "services/bench/target_pool.hpp"
#include "services/bench/workload.hpp"

namespace shoutflow::bench {

struct phase_result {
  std::string name; // "register_user", "follow", "seed_shout"
  uint64_t requests = 0;
  uint64_t duplicates = 0; // answered as already applied
  uint64_t failed = 0;
  double seconds = 0;
};

struct prepare_result {
  std::vector<phase_result> phases;
  /// Seconds until the read models had the prepare's writes (0: no wait).
  double read_wait_s = 0;
  bool ok = true;
  std::string error;
};

struct run_result {
  std::map<op_kind, op_stats> window;
  std::vector<second_stats> series;
  uint64_t sent = 0;       // every request of the run, warm-up included
  double client_cpu_s = 0; // this process, over the run
  double elapsed_s = 0;    // start of warm-up to the last completion
  /// Wall clock at the start of the load (series t = 0), in ms since the
  /// epoch: lines events of other processes (a SIGKILL) up with the series.
  int64_t started_unix_ms = 0;
};

class load_runner {
public:
  load_runner(const options& opt, target_pool& pool);
  ~load_runner();

  prepare_result prepare();
  run_result run();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace shoutflow::bench
