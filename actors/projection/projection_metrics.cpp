#include "actors/projection/projection_metrics.hpp"

namespace shoutflow::projection {

namespace {

prometheus::Family<prometheus::Gauge>& gauges(prometheus::Registry& r,
                                              const std::string& name,
                                              const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(r);
}

prometheus::Gauge& gauge(prometheus::Registry& r, const std::string& name,
                         const std::string& help) {
  return gauges(r, name, help).Add({});
}

// Visibility: a few milliseconds when the reader is woken by the commit,
// up to the poll interval when it is not, minutes when something stalls.
const prometheus::Histogram::BucketBoundaries delay_buckets{
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};

} // namespace

projection_metrics::projection_metrics(prometheus::Registry& r)
  : offset(gauges(r, "shoutflow_projection_offset",
                  "Global position of the last event a partition committed "
                  "(partitions leased by this node)")),
    lag_events(gauges(r, "shoutflow_projection_lag_events",
                      "Events in the log after a partition's offset "
                      "(newest position minus the offset's)")),
    lag_seconds(gauges(r, "shoutflow_projection_lag_seconds",
                       "Age of the oldest event after a partition's offset "
                       "(0: caught up)")),
    horizon_blocker_age(
      gauge(r, "shoutflow_projection_horizon_blocker_age_seconds",
            "Age of the oldest open transaction holding the gap-safe horizon "
            "back while committed events wait behind it (0: nothing waits)")),
    horizon_blocker_pid(
      gauge(r, "shoutflow_projection_horizon_blocker_pid",
            "PostgreSQL backend pid of that transaction (0: none)")),
    horizon_stalls(prometheus::BuildCounter()
                     .Name("shoutflow_projection_horizon_stalls_total")
                     .Help("Lag probes that found committed events behind "
                           "the gap-safe horizon")
                     .Register(r)
                     .Add({})),
    log_reads(prometheus::BuildCounter()
                .Name("shoutflow_projection_log_reads_total")
                .Help("Log reads of the live partitions' shared tail, by "
                      "source: database (extends the shared window), direct "
                      "(a reader behind it), shared (answered from it)")
                .Register(r)),
    applied_(prometheus::BuildCounter()
               .Name("shoutflow_projection_events_applied_total")
               .Help("Events applied to read models by the live partitions "
                     "of this node")
               .Register(r)),
    dead_letters_(prometheus::BuildCounter()
                    .Name("shoutflow_projection_dead_letters_total")
                    .Help("Events parked in projection_dead_letters by the "
                          "live partitions of this node")
                    .Register(r)),
    delay_(prometheus::BuildHistogram()
             .Name("shoutflow_projection_visibility_delay_seconds")
             .Help("Seconds from an event's journal transaction to the "
                   "commit of its read-model rows")
             .Register(r)) {
}

const projection_metrics::per_projection*
projection_metrics::of(const std::string& projection) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto it = projections_.find(projection);
  if (it == projections_.end()) {
    prometheus::Labels labels{{"projection", projection}};
    per_projection s;
    s.applied = &applied_.Add(labels);
    s.dead_letters = &dead_letters_.Add(labels);
    s.visibility_delay = &delay_.Add(labels, delay_buckets);
    it = projections_.emplace(projection, s).first;
  }
  return &it->second;
}

} // namespace shoutflow::projection
