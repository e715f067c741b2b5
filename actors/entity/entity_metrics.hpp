#pragma once

// Prometheus metrics of the entity runtime (entities, regions), declared
// together and injected.

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace shoutflow::entity {

struct entity_metrics {
  explicit entity_metrics(prometheus::Registry& registry);

  prometheus::Counter& recoveries;
  prometheus::Histogram& recovery_seconds;
  prometheus::Counter& recovered_events;
  prometheus::Counter& applied;
  prometheus::Counter& rejected;
  prometheus::Counter& noop;
  prometheus::Counter& duplicate;
  prometheus::Counter& snapshots;
  prometheus::Counter& fact_retries;
  /// Entities that stopped because a write's outcome was unknown or stale.
  prometheus::Counter& write_failures;
  prometheus::Gauge& active;
  prometheus::Counter& spawned;
  prometheus::Counter& passivated;
  /// argon2id work of the fact resolver's hashers.
  prometheus::Counter& password_hashes;
  prometheus::Counter& password_verifies;
  /// Exclusive claim lookups that queued behind another command's.
  prometheus::Counter& claim_waits;
};

} // namespace shoutflow::entity
