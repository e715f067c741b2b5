#pragma once

// The node's shared tail of the global log: one fetcher for every live
// partition runner on the node.
//
// Each live partition runs its own reader (manager.hpp: a slow partition
// owner holds back only its own partition), and every reader needs every
// event to find its keys. With a fetcher each, a node with three
// projections of two partitions read the log six times: six fetches per
// commit, a sixth of PostgreSQL's read work each (the issue 14 profile).
// The tail keeps one window of the log in memory and answers the readers
// from it; it implements the fetcher's interface, so a reader does not
// know whether it talks to a tail or a fetcher.
//
// Why a window may be cached: a fetch returns only events of transactions
// below the gap-safe horizon (log_reader.hpp), every one of them finished,
// so no event can appear later between two cursors a fetch has covered. The
// window is such a covered range (lo, hi]: every visible event after lo up
// to and including hi, in (tx_id, position) order, never a subset.
//
//   fetch after c:  lo <= c < hi   → answered from the window
//                   c == hi        → parked; one database fetch after hi
//                                    (single flight) answers every reader
//                                    parked there, and extends the window
//                   c < lo         → a reader behind the window: fetched
//                                    for it alone; a result that reaches
//                                    past hi extends the window
//                   c > hi         → the window is stale: it restarts at c
//                                    (or, while a fetch is in flight, the
//                                    reader is fetched for alone)
//
// The window keeps at most `capacity` events, dropping the oldest (lo moves
// up). Point-in-time fetches (an `until`) and head queries go to the
// database as they are. Rebuilds keep a fetcher of their own: they read
// from zero and would only push the live readers' window out.

#include <caf/actor_system.hpp>

#include <cstdint>
#include <functional>
#include <string>

#include "actors/projection/projection_actors.hpp"
#include "actors/projection/projection_metrics.hpp"

namespace shoutflow::projection {

struct log_tail_config {
  std::string db_url;
  /// Events kept in memory (a few readers' batches).
  std::size_t capacity = 8000;
  /// Counts where the answers came from (null: not counted).
  projection_metrics* metrics = nullptr;
  /// Spawns the database fetcher the tail reads through; empty:
  /// spawn_fetcher(sys, db_url). The tail monitors it and spawns another
  /// when it stops (an exception outside pg_session, say): one dead
  /// fetcher would otherwise stall every live partition of the node.
  std::function<fetcher_actor(caf::actor_system&)> spawn_db;
};

/// Spawns the tail and the fetcher it reads through (linked to it).
fetcher_actor spawn_log_tail(caf::actor_system& sys, log_tail_config cfg);

} // namespace shoutflow::projection
