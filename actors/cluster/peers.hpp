#pragma once

// CAF connections between nodes (docs/cluster.md).
//
// Every node publishes one endpoint actor on its CAF port. It is dynamically
// typed on purpose: nodes of different versions meet during a rolling
// update, and every payload that crosses is a serialized shoutflow.v1
// protobuf (or a plain atom), never a C++ struct. It serves:
//
//   (cmd_atom, entity id, EntityCommand bytes) -> EntityReply bytes
//       to this node's shard region (MOVED when it has no entities role)
//   (batch_atom, ReadSideMessage bytes)   to this node's watch hub
//   (wake_atom)                           to this node's projection manager
//   (retry_atom, projection, generation, key) -> retry_result
//       a dead letter retry for a partition this node runs
//   (round_atom)   another node released leases: this node's keeper runs
//                  a membership round now (told the keeper with subscribe)
//
// The peers actor connects to every other member's endpoint (asynchronously,
// through the middleman actor), monitors it (CAF 0.17 waits forever on a
// dead node otherwise), drops it when the member leaves or its node goes
// down, and tells its subscribers (the router) the current endpoints. It also
// fans broadcasts out: read-side messages to every node with the query role
// (and to the local hub) — kept, in order and bounded, for a member not
// connected yet or again, and sent once it is — and wake-ups to every other
// node with the projections role.

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <chrono>
#include <string>
#include <vector>

#include "actors/cluster/cluster_types.hpp"
#include "actors/common/atoms.hpp"
#include "actors/entity/entity_actors.hpp"

namespace shoutflow::cluster {

using peers_actor = caf::typed_actor<
  caf::reacts_to<view_atom, cluster_view>,
  // Tell this actor every connected node's endpoint, now and on every
  // change: (peers_atom, std::vector<std::pair<int32_t, caf::actor>>);
  // with `true`, also pass it every wake-up (this node's manager).
  caf::reacts_to<subscribe_atom, caf::actor, bool>,
  // A serialized v1::ReadSideMessage for every watch hub in the cluster.
  caf::reacts_to<batch_atom, std::string>,
  // A journal commit: wake the projection readers here and on the other
  // nodes.
  caf::reacts_to<wake_atom>,
  // This node released leases: the other nodes' keepers run a round now.
  caf::reacts_to<round_atom>>;

struct peers_config {
  int32_t self = 0;
  /// This node's watch hub (may be invalid).
  caf::actor local_hub;
  std::chrono::milliseconds connect_timeout{2000};
};

peers_actor spawn_peers(caf::actor_system& sys, peers_config cfg);

/// What the endpoint forwards to (each may be invalid).
struct endpoint_targets {
  entity::region_actor region;
  caf::actor hub;
  caf::actor manager;
};

caf::actor spawn_endpoint(caf::actor_system& sys, endpoint_targets targets);

} // namespace shoutflow::cluster
