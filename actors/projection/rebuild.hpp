#pragma once

// One rebuild of a projection on this node (manager.hpp): generation N+1,
// created by the manager before it spawns this actor, replayed from zero by
// one reader into all its partitions while the live generation serves, then
// swapped in.
//
//   building ──caught up──▶ holding ──held at W──▶ promoted ──swapped──▶ done
//      ▲                       │                     │   ▲
//      └──────hold failed──────┘                     └───┘ not yet
//
// * building: caught up once the reader's watermark reaches the lowest
//   committed offset of the live generation; looked at after every batch
//   the reader applies (it tells its watermark) and on a timer.
// * holding: the reader stops at the next batch boundary W; the tables get
//   the query indexes they were built without, and their statistics
//   (generations.hpp, finish_build) — a failure releases the reader and
//   goes back to building. That step (seconds to minutes on a large
//   generation) runs on a helper actor with its own session, so the
//   rebuild keeps answering status requests meanwhile.
// * promoted: the reader publishes its changes from W on (the hubs keep
//   them aside until the swap) and goes on; the swap transaction
//   (generations.hpp) is tried at once, then after every batch and on the
//   timer until its condition holds. Once swapped,
//   every hub is told the retired generation's final offsets, the owner
//   (the manager) is told to move its live runners to the new generation,
//   and the retired generation's tables are dropped (the swap waited for
//   its partitions' transactions in flight and fences every later one).
// * done: the actor quits normally.
//
// A point-in-time build (until a position or a time) never swaps: once its
// reader is done it is marked stopped, left in place for inspection, and
// the actor quits. Whenever the actor stops, its reader, fetcher and
// partitions stop with it; an interrupted rebuild is abandoned at the next
// start of this node (generations.hpp).
//
// A detached actor: its bookkeeping (offsets, the swap, DROP TABLE) is
// blocking SQL, short statements all.

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <chrono>
#include <cstdint>
#include <string>

#include "actors/projection/log_reader.hpp"
#include "actors/projection/projection.hpp"
#include "actors/projection/projection_actors.hpp"

namespace shoutflow::projection {

using rebuild_actor = caf::typed_actor<
  // After a journal commit: wake the reader.
  caf::reacts_to<wake_atom>,
  // The build's progress (its reader's status).
  caf::replies_to<status_atom>::with<reader_status>,
  // Retry the dead letters of a key in its partition of this generation.
  caf::replies_to<retry_atom, std::string>::with<retry_result>,
  // The next step of the swap protocol: on a timer, and from the reader
  // after every batch it applied (with its watermark).
  caf::reacts_to<tick_atom>, caf::reacts_to<applied_atom, cursor>,
  // From the reader: a point-in-time build is complete.
  caf::reacts_to<built_atom, std::string, int32_t>>;

struct rebuild_config {
  std::string db_url;
  projection_ptr proj;
  /// The generation being built (created by the caller) and its partitions.
  int32_t generation = 0;
  int32_t partitions = 2;
  replay_settings replay{50000};
  /// Receives (batch_atom, ReadSideMessage bytes) for every watch hub: the
  /// build's changes from its promotion on, then the swap.
  caf::actor sink;
  /// Told (retire_atom, projection name, retired generation) once the
  /// build is swapped in.
  caf::actor owner;
};

rebuild_actor spawn_rebuild(caf::actor_system& sys, rebuild_config cfg);

} // namespace shoutflow::projection
