#pragma once

// The router: entity id -> shard (sharding.hpp) -> the region that owns the
// shard. On a single node every shard maps to the local region; the cluster
// replaces the shard map, not the callers. A login by handle is routed by
// first resolving the handle's claim to its owner.

#include <cstdint>
#include <vector>

#include <caf/actor_system.hpp>

#include "actors/entity/entity_actors.hpp"
#include "actors/journal/journal_actors.hpp"

namespace shoutflow::entity {

struct router_config {
  uint32_t shards = 256;
  std::chrono::milliseconds lookup_timeout{5000};
};

/// All shards owned by `local`.
router_actor spawn_router(caf::actor_system& sys, router_config cfg,
                          region_actor local, journal::store_actor store);

} // namespace shoutflow::entity
