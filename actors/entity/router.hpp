#pragma once

// The router: entity id -> shard (sharding.hpp) -> the node that holds the
// shard's lease -> that node's shard region: this node's own, or another
// node's through its CAF endpoint (actors/cluster/peers.hpp). It learns the
// shard map from the cluster keeper's views and the endpoints from the
// peers actor.
//
// A command the owner answers MOVED (it is handing the shard off, or lost
// it; nothing was applied), or one for a shard without a reachable owner
// (in transit), waits `retry_pause` and is routed again with the refreshed
// map, until `route_timeout` has passed; then the caller gets the MOVED
// answer (UNAVAILABLE to clients). A request that fails or times out is
// never resent: its outcome is unknown, and the client retries it with its
// command_id. A login by handle is routed by first resolving the handle's
// claim to its owner.

#include <chrono>
#include <cstdint>

#include <caf/actor_system.hpp>

#include "actors/entity/entity_actors.hpp"
#include "actors/journal/journal_actors.hpp"

namespace shoutflow::entity {

struct router_config {
  uint32_t shards = 256;
  /// This node's id (the shard map names owners by node id).
  int32_t self = 0;
  std::chrono::milliseconds lookup_timeout{5000};
  /// Longest a command is routed again and again (moved, no owner).
  std::chrono::milliseconds route_timeout{5000};
  /// Bound on one hop to another node's region (a node may die with the
  /// command): past the entity's own I/O timeout, so an entity's
  /// UNAVAILABLE answer arrives first. The hop to this node's region has
  /// none: its entities answer every command, and the caller's request
  /// carries the client's deadline.
  std::chrono::milliseconds hop_timeout{10500};
  std::chrono::milliseconds retry_pause{25};
};

/// `local` (may be invalid: a node without the entities role) serves the
/// shards this node holds. Subscribe the router to the keeper's views and
/// the peers' endpoints.
router_actor spawn_router(caf::actor_system& sys, router_config cfg,
                          region_actor local, journal::store_actor store);

} // namespace shoutflow::entity
