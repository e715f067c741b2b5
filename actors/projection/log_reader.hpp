#pragma once

// The gap-safe tail of the global log, one reader per projection generation.
//
// A global position is handed out at INSERT but becomes visible at COMMIT,
// so concurrent writers commit out of order and `position > last` would skip
// a late commit forever. The fetcher therefore reads only rows whose writer
// transaction is older than every transaction still running
// (tx_id < pg_snapshot_xmin(pg_current_snapshot())), ordered by
// (tx_id, position), with that pair as the cursor. The read side's own
// transactions, which write no events, are left out of that horizon
// (gap_safe_horizon_sql below).
//
// The reader routes each batch to the partitions it runs, by key, and waits
// for their acks before the next (the next batch is fetched meanwhile). A
// live generation runs one reader per partition, on the node holding that
// partition's lease (manager.hpp), so a slow or dead partition owner holds
// back only its own partition (the live readers of a node share one log
// tail, log_tail.hpp, so the log is still read once per node); a rebuild
// runs one reader for all of them.
// Its watermark — everything up to it applied by its partitions — answers
// `await`. After each batch it publishes what its partitions committed (a
// ChangeBatch: the partitions, the cursors before and after, the changes in
// log order) to its sink, which fans it out to every watch hub; the hubs
// derive the read-your-writes watermark (G6) from them. It starts from the
// lowest offset of its partitions. It wakes on a `wake` after a journal
// commit (from this node or another); polling is the fallback (and, when
// committed rows wait behind an open transaction's horizon, a quick
// re-poll). A partition that answers `fenced` (its lease or its generation
// moved on) stops the reader, with that error as its exit reason.

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/duration.hpp>

#include <chrono>
#include <string>
#include <vector>

#include "actors/projection/projection.hpp"
#include "actors/projection/projection_actors.hpp"
#include "actors/projection/watch_hub.hpp"

namespace shoutflow::projection {

/// How a reader walks the log: events per fetch, the poll while idle, and
/// where a point-in-time build stops. A rebuild passes its own to its reader.
struct replay_settings {
  int64_t batch_size = 2000;
  std::chrono::milliseconds poll{200};
  /// A point-in-time build stops after this position / time (0: never).
  int64_t until_position = 0;
  int64_t until_ms = 0;
  /// A live reader fetches at most once per `linger` (0: as soon as it
  /// can), so that what commits meanwhile makes one batch instead of
  /// several (docs/read-side.md). Rebuilds do not linger.
  std::chrono::milliseconds linger{0};

  bool point_in_time() const {
    return until_position > 0 || until_ms > 0;
  }
};

struct reader_config {
  projection_ptr proj;
  int32_t generation = 1;
  /// Labels status and logs.
  generation_role role = generation_role::live;
  /// One slot per partition of the generation (their number is the
  /// partition count); the reader applies the partitions it has a handle
  /// for and skips the rest.
  std::vector<partition_actor> partitions;
  fetcher_actor fetcher;
  /// How long a fetch may take before the reader gives up on it and tries
  /// again. `caf::infinite` for a fetcher that answers every request within
  /// a bound of its own, as the node's log tail does (log_tail.hpp): in CAF
  /// 0.17 a timed request costs the clock thread an entry, and its timeout
  /// fires later as a stale message, for every fetch — the live readers'
  /// fetches were three quarters of the clock's request timeouts at the
  /// write peak (docs/benchmarks.md). Without a timeout the reader watches
  /// its fetcher and stops when it does (a promise the fetcher held dies
  /// with it unanswered).
  caf::duration fetch_timeout{std::chrono::seconds(60)};
  replay_settings replay;
  /// The rebuild this reader replays for (none for a live reader): told
  /// (applied_atom, watermark) after every batch, and (built_atom,
  /// projection name, generation) when an `until` build is complete.
  caf::actor owner;
  /// Receives (batch_atom, ReadSideMessage bytes) after every batch while
  /// `publish` is on (a rebuild publishes from its promotion on).
  caf::actor sink;
  bool publish = true;
};

/// The fetcher's query: $1 cursor tx (text), $2 cursor position, $3 limit,
/// $4 until position (0: none), $5 until time in ms (0: none). Columns: tx
/// (text), position, persistence id, seq_nr, type, version, payload,
/// recorded_at (ms), behind; the last row has a NULL tx and only `behind`:
/// whether committed events wait behind the horizon.
std::string log_fetch_sql();

/// The gap-safe horizon as an SQL expression (an xid8): events of
/// transactions below it are all visible or rolled back (log_reader.cpp).
std::string gap_safe_horizon_sql();

fetcher_actor spawn_fetcher(caf::actor_system& sys, const std::string& db_url);

reader_actor spawn_reader(caf::actor_system& sys, reader_config cfg);

} // namespace shoutflow::projection
