#pragma once

// The gap-safe tail of the global log, one reader per projection generation.
//
// A global position is handed out at INSERT but becomes visible at COMMIT,
// so concurrent writers commit out of order and `position > last` would skip
// a late commit forever. The fetcher therefore reads only rows whose writer
// transaction is older than every transaction still running
// (tx_id < pg_snapshot_xmin(pg_current_snapshot())), ordered by
// (tx_id, position), with that pair as the cursor.
//
// The reader routes each batch to the projection's partitions by key and
// waits for every partition's ack before the next (the next batch is
// fetched meanwhile): its watermark — everything up to it applied by every
// partition — is what a query with `min_position` waits for (G6). It starts
// from the lowest partition offset. It wakes on a `wake` from the journal
// after each commit; polling is the fallback (and, when committed rows wait
// behind an open transaction's horizon, a quick re-poll).

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include <chrono>
#include <string>
#include <vector>

#include "actors/projection/projection.hpp"
#include "actors/projection/projection_actors.hpp"
#include "actors/projection/watch_hub.hpp"

namespace shoutflow::projection {

struct reader_config {
  projection_ptr proj;
  int32_t generation = 1;
  /// "live" or "building": labels status and logs.
  std::string role = "live";
  std::vector<partition_actor> partitions;
  fetcher_actor fetcher;
  int64_t batch_size = 2000;
  std::chrono::milliseconds poll{200};
  /// A point-in-time build stops after this position / time (0: never).
  int64_t until_position = 0;
  int64_t until_ms = 0;
  /// Told (built_atom, projection name, generation) when an `until` build
  /// is complete.
  caf::actor on_done;
  /// Where committed changes go, in log order (live generations only).
  hub_actor hub;
};

/// The fetcher's query: $1 cursor tx (text), $2 cursor position, $3 limit,
/// $4 until position (0: none), $5 until time in ms (0: none). Columns: tx
/// (text), position, persistence id, seq_nr, type, version, payload,
/// recorded_at (ms).
extern const char* const log_fetch_sql;

fetcher_actor spawn_fetcher(caf::actor_system& sys, const std::string& db_url);

reader_actor spawn_reader(caf::actor_system& sys, reader_config cfg);

} // namespace shoutflow::projection
