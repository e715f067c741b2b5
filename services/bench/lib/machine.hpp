// What a benchmark records about the machine it ran on. On a shared machine
// a figure means little without the load beside it, so every report carries
// the load average at its start and end.

#pragma once

#include <array>
#include <string>

namespace shoutflow::bench {

struct machine_info {
  unsigned nproc = 0;
  std::string cpu_model; // "model name" of /proc/cpuinfo; "" when unknown
  std::string kernel;    // uname -r
  std::string hostname;
  double memory_gib = 0; // MemTotal
};

machine_info read_machine();

/// The 1-, 5- and 15-minute load averages; zeros when unreadable.
std::array<double, 3> load_average();

/// CPU seconds (user + system) this process has used so far.
double cpu_seconds();

/// Now as "2026-12-04T16:05:00Z".
std::string utc_timestamp();

} // namespace shoutflow::bench
