#pragma once

// A shard region: hosts the entities of the shards this node owns, spawning
// each on its first command and passivating it when idle or when the active
// set exceeds its cap, so memory follows the active set, not the user count.
//
// Passivation hand-shake: the region stops forwarding to the entity and
// sends it `passivate`; commands that arrive meanwhile are buffered. The
// entity finishes what it already received, then stops; on its down
// message the region starts a fresh incarnation for any buffered commands.
// (Messages between two actors keep their order, so nothing forwarded
// before `passivate` is lost.)
//
// Shards come and go with their leases (docs/cluster.md). A granted shard
// is served at its lease epoch, which every entity of it writes under. A
// shard handed off stops taking commands (they are answered MOVED, so the
// router sends them to the next owner), lets its entities finish what they
// hold, snapshot and stop, and answers once none is left. A revoked shard's
// entities are killed at once: the journal refuses their writes anyway.

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>

#include <caf/actor_system.hpp>

#include "actors/entity/entity_actors.hpp"
#include "actors/entity/entity_metrics.hpp"

namespace shoutflow::entity {

struct region_config {
  /// The cluster's shard count (entity id -> shard, sharding.hpp).
  uint32_t shards = 256;
  /// Passivate an entity after this long without a command.
  std::chrono::milliseconds passivate_after{std::chrono::minutes(2)};
  /// At most this many entities in memory; the least recently used go.
  std::size_t max_active = 100000;
};

/// Spawns entity `id` of `shard`, writing under lease epoch `epoch`.
using entity_factory = std::function<entity_actor(
  caf::actor_system&, const std::string& id, int32_t shard, int64_t epoch)>;

region_actor spawn_shard_region(caf::actor_system& sys, entity_factory factory,
                                region_config cfg, entity_metrics* metrics);

} // namespace shoutflow::entity
