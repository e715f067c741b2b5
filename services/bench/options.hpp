// shoutflow-bench's parameters and their command line (usage text in
// options.cpp). Everything a run depends on is here, and the report echoes
// all of it, so a JSON document says how it was made.

#pragma once

#include <string>
#include <vector>

#include "services/bench/workload.hpp"

namespace shoutflow::bench {

struct options {
  std::vector<std::string> command_targets{"127.0.0.1:50051"};
  std::vector<std::string> query_targets{"127.0.0.1:50052"};
  mix_kind mix = mix_kind::write;
  /// 0: closed loop with `inflight` requests; else requests per second.
  double rate = 0;
  int inflight = 64;
  double duration_s = 20;
  double warmup_s = 3;
  int users = 10000;
  /// Follows per user in the prepare phase (the timeline mix's fan-out).
  int follows = 0;
  /// Shouts per user posted in the prepare phase (ids GetShout reads).
  int seed_shouts = 0;
  int page_size = 20;
  /// Acknowledged PostShouts per second followed by a GetShout with
  /// min_position (op "visible": ack -> visible in the read model).
  double probe_rate = 0;
  std::string prefix = "bench-user-";
  std::string run_id; // command ids of the load; random when empty
  std::string label;  // free text, echoed in the report
  int channels = 2;
  int deadline_ms = 10000;
  /// Seconds to wait for every target's health to say SERVING.
  double wait_ready_s = 30;
  bool prepare = true;
  bool prepare_only = false;
  /// Only wait for the targets to be ready (--wait-ready), then exit.
  bool ready_only = false;
  /// Requests in flight during the prepare phase.
  int prepare_inflight = 64;
  /// Open loop: bound on requests in flight (memory); reaching it delays
  /// sends, which the latency from the scheduled time then shows.
  int max_outstanding = 20000;
  std::string json_path; // "" or "-": stdout
  bool quiet = false;
  /// The hot-key race instead of a load (race.hpp): calls sent at once.
  int race = 0;
  bool race_distinct = false;
};

/// Parses argv; exits with status 2 and the usage on a bad command line.
options parse_options(int argc, char** argv);

} // namespace shoutflow::bench
