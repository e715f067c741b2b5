#pragma once

// A projection partition: applies, for the keys it owns (hash(key) % count
// == index), the events a reader hands it, in log order, writing read-model
// rows and its offset in ONE transaction — and skipping whatever is at or
// below its offset. That is the exactly-once effect (G3): a batch redelivered
// after a crash or a lost ack changes nothing twice.
//
// Poison events: when a batch fails for a reason other than the database
// (an undecodable event, a broken invariant), the partition applies it again
// one event at a time, each in a savepoint; an event that fails goes to
// projection_dead_letters with its error, and its key becomes blocked: the
// key's later events are parked there too, in order, so they are never
// applied out of order. `retry` re-applies a key's dead letters in order
// and unblocks it once all apply.
//
// Fencing (docs/cluster.md): every transaction first locks, FOR KEY SHARE,
// its generation's row in the expected state (a swap, which locks it FOR
// UPDATE, waits for it and then stops it) and, for a live partition, this
// node's lease of the partition at its epoch, unexpired. A partition whose
// fence fails writes nothing and answers `fenced`: it must stop.
//
// A detached actor (own thread, own connection): database calls never run
// on the CAF scheduler.

#include <caf/actor_system.hpp>

#include <optional>
#include <string>

#include "actors/projection/projection.hpp"
#include "actors/projection/projection_actors.hpp"
#include "actors/projection/projection_metrics.hpp"
#include "actors/projection/watch_hub.hpp"

namespace shoutflow::projection {

/// What a partition's writes are fenced by. No `role`: no fence (engine
/// tests only).
struct partition_fence {
  /// The generation must still be in this role's state.
  std::optional<generation_role> role;
  /// "projection/<name>" for a leased (live) partition; empty: none.
  std::string lease_resource;
  int64_t lease_epoch = 0;
  std::string incarnation;
};

struct partition_config {
  std::string db_url;
  projection_ptr proj;
  int32_t generation = 1;
  int32_t index = 0;
  int32_t count = 1;
  /// Receives (batch_atom, ReadSideMessage bytes) for the changes of a
  /// retried dead letter (may be invalid). Batch changes go out through
  /// the reader, in log order.
  caf::actor sink;
  partition_fence fence;
  /// Live partitions count what they commit (null: not counted, as for a
  /// rebuild, whose replay would read as a burst of traffic).
  const projection_metrics::per_projection* metrics = nullptr;
};

partition_actor spawn_partition(caf::actor_system& sys, partition_config cfg);

/// The partition of a key: FNV-1a 64 (stable across nodes) modulo count.
int32_t partition_of(const std::string& key, int32_t count);

} // namespace shoutflow::projection
