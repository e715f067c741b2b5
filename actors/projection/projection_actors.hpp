#pragma once

// Typed interfaces and messages of the projection engine.
//
//   journal commit ─wake─▶ manager ─wake─▶ reader (one per projection
//   generation) ─fetch─▶ fetcher (gap-safe SQL) ; reader ─apply─▶ partitions
//   (one per hash(key) % N, each owning a connection) ─changes─▶ watch hub
//
// Batches and acks are plain values (raw event rows, cursors), so readers
// and partitions can live on different nodes once the cluster spreads them.

#include <caf/actor.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "actors/common/atoms.hpp"
#include "actors/projection/projection.hpp"

namespace caf {
class actor_system_config;
}

namespace shoutflow::projection {

/// What a generation's reader and partitions do: apply the log for the
/// queries (live), or replay it into a rebuild's tables, to the head
/// (building) or up to a point in time.
enum class generation_role { live, building, point_in_time };

/// "live", "building", "point-in-time": the label in status and logs.
const char* to_string(generation_role role);

/// projection_generations.state of a generation in `role` (a point-in-time
/// build is "building" there too).
const char* generation_state(generation_role role);

struct keyed_ref {
  uint32_t index = 0;
  std::string key;
  /// The projection could not name the event's keys (it does not decode):
  /// `key` is its stream's owner, and the event is poison.
  bool unrouted = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, keyed_ref& x) {
  return f(x.index, x.key, x.unrouted);
}

/// What retrying a key's dead letters did: events applied, and the keys of
/// other partitions a fixed unrouted event was handed to (as dead letters
/// of theirs, to retry there).
struct retry_result {
  uint64_t applied = 0;
  std::vector<std::string> handed_off;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, retry_result& x) {
  return f(x.applied, x.handed_off);
}

/// One partition's share of a reader batch: the events it must apply (each
/// for a key it owns, in log order) and the batch's end cursor, which
/// becomes its offset.
struct partition_batch {
  uint64_t id = 0;
  std::vector<raw_event> events;
  std::vector<keyed_ref> keyed;
  cursor end;
  /// The reader publishes what this batch changes (false: a rebuild before
  /// its promotion; the partition need not work the changes out).
  bool changes_wanted = true;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, partition_batch& x) {
  return f(x.id, x.events, x.keyed, x.end, x.changes_wanted);
}

struct partition_ack {
  uint64_t id = 0;
  uint64_t applied = 0;
  uint64_t dead_lettered = 0;
  /// What the share changed in the read models; the reader publishes a
  /// whole batch's changes in log order once every share has committed.
  std::vector<change> changes;
  /// Some of the share had been committed by an earlier attempt whose
  /// answer was lost (a COMMIT in doubt): what it changed is not known.
  bool changes_unknown = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, partition_ack& x) {
  return f(x.id, x.applied, x.dead_lettered, x.changes, x.changes_unknown);
}

using partition_actor = caf::typed_actor<
  caf::replies_to<apply_atom, partition_batch>::with<partition_ack>,
  // The partition's offset.
  caf::replies_to<offset_atom>::with<cursor>,
  // Re-apply the dead-lettered events of a key, in order; answers how many
  // applied (the key stays blocked if the first still fails).
  caf::replies_to<retry_atom, std::string>::with<retry_result>>;

struct fetch_result {
  std::vector<raw_event> events;
  /// Committed events exist past the gap-safe horizon (an older
  /// transaction is still open): fetch again soon.
  bool behind_horizon = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, fetch_result& x) {
  return f(x.events, x.behind_horizon);
}

/// A projection generation's progress.
struct reader_status {
  std::string projection;
  int32_t generation = 0;
  std::string state;
  cursor watermark;
  int64_t events = 0;
  int64_t dead_letters = 0;
  /// recorded_at of the last applied event (ms), 0 if none.
  int64_t last_event_ms = 0;
  bool done = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, reader_status& x) {
  return f(x.projection, x.generation, x.state, x.watermark, x.events,
           x.dead_letters, x.last_event_ms, x.done);
}

using reader_actor = caf::typed_actor<
  caf::reacts_to<wake_atom>,
  // A poll timer; stale ones (an older number) are ignored.
  caf::reacts_to<tick_atom, uint64_t>,
  // The linger has passed: fetch if waiting to.
  caf::reacts_to<fetch_atom>,
  // Resend the failed share of partition N.
  caf::reacts_to<retry_atom, uint64_t>,
  // Answers once everything up to the cursor is applied.
  caf::replies_to<await_atom, cursor>::with<cursor>,
  caf::replies_to<status_atom>::with<reader_status>,
  // true: stop at the next batch boundary and answer the watermark there
  // (a rebuilt generation before its swap); false: go on.
  caf::replies_to<hold_atom, bool>::with<cursor>,
  // A rebuilt generation about to be swapped in: publish to this sink from
  // the next batch on, go on, and take this role.
  caf::reacts_to<promote_atom, caf::actor>>;

using fetcher_actor = caf::typed_actor<
  // (after, limit, until position or 0, until recorded_at ms or 0)
  caf::replies_to<fetch_atom, cursor, int64_t, int64_t,
                  int64_t>::with<fetch_result>,
  // The newest global position (0: empty log).
  caf::replies_to<head_atom>::with<int64_t>>;

/// Registers this module's message types.
void add_message_types(caf::actor_system_config& cfg);

} // namespace shoutflow::projection
