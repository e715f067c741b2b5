#pragma once

// The projection manager: one per node with the "projections" role. It owns
// every projection generation running on the node (a reader, its fetcher and
// its partitions), answers read-your-writes waits (G6) and status, runs
// rebuilds, and routes dead-letter retries to the partition that owns the
// key.
//
// Generations (blue/green): read models live in tables suffixed _g<N>, read
// through views of stable names. A rebuild creates generation N+1, replays
// the log from zero into it while generation N keeps serving, and once it
// has caught up swaps the views in one transaction, stops generation N and
// drops its tables. A point-in-time build (until a position or a time) is
// left in place for inspection instead of being swapped in.
//
// A detached actor: its bookkeeping (DDL, generation rows) is blocking SQL.

#include <caf/actor_system.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "actors/projection/projection.hpp"
#include "actors/projection/projection_actors.hpp"
#include "actors/projection/watch_hub.hpp"

namespace shoutflow::projection {

using manager_actor = caf::typed_actor<
  // After each journal commit: wake the live readers.
  caf::reacts_to<wake_atom>,
  // Answers true once every named projection has applied the cursor.
  caf::replies_to<await_atom, std::vector<std::string>, cursor>::with<bool>,
  caf::replies_to<status_atom>::with<std::vector<reader_status>>,
  // (projection, until position or 0, until time ms or 0) -> generation
  caf::replies_to<rebuild_atom, std::string, int64_t, int64_t>::with<int32_t>,
  // A dead letter's id -> events applied by the retry of its key.
  caf::replies_to<retry_atom, int64_t>::with<uint64_t>,
  caf::reacts_to<built_atom, std::string, int32_t>,
  caf::reacts_to<tick_atom>>;

struct manager_config {
  std::string db_url;
  std::vector<projection_ptr> projections;
  int32_t partitions = 2;
  int64_t batch_size = 2000;
  std::chrono::milliseconds poll{200};
  hub_actor hub;
};

/// Creates what is missing so every projection has a live generation
/// (tables, views, bookkeeping) and retires builds a crash interrupted.
/// Blocking; run once at node start. Throws std::runtime_error.
void prepare_generations(const manager_config& cfg);

manager_actor spawn_manager(caf::actor_system& sys, manager_config cfg);

} // namespace shoutflow::projection
