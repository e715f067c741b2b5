#pragma once

// The lag probe: samples, every `interval`, how far behind the log the
// live partitions leased by this node are, and — only when committed
// events wait behind the gap-safe horizon — which transaction holds it
// (projection_metrics.hpp lists the series).
//
// One statement per sample reads the offsets of the partitions this
// incarnation holds an unexpired lease for, the log's newest position and,
// per partition, the recorded_at of the first event after its offset (one
// index probe each). Lag in events is the newest position minus the
// offset's: positions are handed out at INSERT and commit out of order, so
// it is exact up to the events of the journal batches in flight (and 0
// whenever nothing follows the offset). Lag in seconds is the database's
// clock minus that event's recorded_at: one clock, no skew.
//
// The horizon check is one index probe (an event whose writer xid is not
// below the snapshot's xmin, yet visible: committed, but held back). Only
// then is pg_stat_activity read for the oldest transaction with an xid: its
// age and backend pid point at the culprit (a long migration, a forgotten
// psql session, another database on the same server — xids are
// server-wide). Prepared transactions hold the horizon too but have no
// backend; they are not reported.
//
// A detached actor: the SQL blocks its own thread, never the scheduler.

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include <chrono>
#include <cstdint>
#include <string>

#include "actors/projection/projection_metrics.hpp"

namespace shoutflow::projection {

struct lag_probe_config {
  std::string db_url;
  int32_t node_id = 0;
  std::string incarnation;
  std::chrono::milliseconds interval{1000};
};

/// `metrics` must outlive the actor.
caf::actor spawn_lag_probe(caf::actor_system& sys, lag_probe_config cfg,
                           projection_metrics* metrics);

} // namespace shoutflow::projection
