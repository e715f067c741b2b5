#pragma once

// Prometheus metrics of the read side's projections on one node, declared
// together and injected.
//
// Written by the live partitions this node runs (partition.cpp), after
// each commit:
//   shoutflow_projection_events_applied_total{projection}
//   shoutflow_projection_dead_letters_total{projection}
//   shoutflow_projection_visibility_delay_seconds{projection}   histogram:
//     from an event's commit to its read-model rows being committed (see
//     partition.cpp for the clock it uses)
// Sampled by the lag probe (lag_probe.hpp), for the partitions whose lease
// this node holds — series appear and vanish with the leases:
//   shoutflow_projection_offset{projection, partition}        global position
//   shoutflow_projection_lag_events{projection, partition}
//   shoutflow_projection_lag_seconds{projection, partition}
// and, only while the gap-safe horizon holds committed events back:
//   shoutflow_projection_horizon_blocker_age_seconds
//   shoutflow_projection_horizon_blocker_pid
//   shoutflow_projection_horizon_stalls_total  (probes that found it behind)
// Counted by the node's shared log tail (log_tail.hpp):
//   shoutflow_projection_log_reads_total{source}: "database" (a fetch that
//   extends the shared window), "direct" (for a reader behind the window),
//   "shared" (a reader's fetch answered from the window)

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <map>
#include <mutex>
#include <string>

namespace shoutflow::projection {

struct projection_metrics {
  /// The series of one projection, resolved at start.
  struct per_projection {
    prometheus::Counter* applied = nullptr;
    prometheus::Counter* dead_letters = nullptr;
    prometheus::Histogram* visibility_delay = nullptr;
  };

  explicit projection_metrics(prometheus::Registry& registry);

  /// The series of `projection`, created on first use: when a partition
  /// runner starts (a lease grant), never per event.
  const per_projection* of(const std::string& projection);

  prometheus::Family<prometheus::Gauge>& offset;
  prometheus::Family<prometheus::Gauge>& lag_events;
  prometheus::Family<prometheus::Gauge>& lag_seconds;
  prometheus::Gauge& horizon_blocker_age;
  prometheus::Gauge& horizon_blocker_pid;
  prometheus::Counter& horizon_stalls;
  prometheus::Family<prometheus::Counter>& log_reads;

private:
  prometheus::Family<prometheus::Counter>& applied_;
  prometheus::Family<prometheus::Counter>& dead_letters_;
  prometheus::Family<prometheus::Histogram>& delay_;
  std::mutex mtx_;
  std::map<std::string, per_projection> projections_;
};

} // namespace shoutflow::projection
