#pragma once

// Typed interfaces of the entity runtime. Commands and replies cross these
// interfaces as serialized protobuf (v1::EntityCommand / v1::EntityReply), so
// they can cross nodes unchanged once regions live on other nodes.
//
//   gRPC edge ─▶ router ─▶ shard_region (owner of the shard) ─▶ entity
//                                   │
//                                   └─ spawns, passivates, re-spawns entities

#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "actors/cluster/cluster_types.hpp"
#include "actors/common/atoms.hpp"
#include "actors/entity/effect.hpp"

namespace caf {
class actor_system_config;
}

namespace shoutflow::entity {

/// One persistent entity: (cmd, EntityCommand bytes) -> EntityReply bytes.
using entity_actor = caf::typed_actor<
  caf::replies_to<cmd_atom, std::string>::with<std::string>,
  // Finish what is queued, then stop.
  caf::reacts_to<passivate_atom>,
  // The same, storing a snapshot before it stops (a shard hand-off).
  caf::reacts_to<handoff_atom>>;

struct region_stats {
  uint64_t active = 0;
  uint64_t passivating = 0;
  uint64_t spawned = 0;
  uint64_t passivated = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, region_stats& x) {
  return f(x.active, x.passivating, x.spawned, x.passivated);
}

/// Owns the entities of the shards this node holds the lease of. A
/// command for any other shard is answered MOVED, applying nothing.
using region_actor = caf::typed_actor<
  // (entity id, EntityCommand bytes) -> EntityReply bytes
  caf::replies_to<cmd_atom, std::string, std::string>::with<std::string>,
  caf::replies_to<stats_atom>::with<region_stats>,
  // Passivate one entity now (operators, tests).
  caf::reacts_to<passivate_atom, std::string>, caf::reacts_to<tick_atom>,
  // The lease holder interface (actors/cluster/cluster_actors.hpp), for
  // resource "shard": serve a shard at an epoch; hand it off (stop taking
  // its commands, finish those in flight, snapshot and passivate its
  // entities, answer once none is left); or drop it at once.
  caf::reacts_to<grant_atom, cluster::lease_grant>,
  caf::replies_to<handoff_atom, cluster::lease_grant>::with<bool>,
  caf::reacts_to<revoke_atom, cluster::lease_grant>>;

/// Sends commands to the region owning the entity's shard (router.hpp).
using router_actor = caf::typed_actor<
  caf::replies_to<cmd_atom, std::string, std::string>::with<std::string>,
  // (claim namespace, claim key, field name for errors, EntityCommand
  // bytes): route to the owner of a claim, e.g. a login by handle.
  caf::replies_to<alias_atom, std::string, std::string, std::string,
                  std::string>::with<std::string>,
  // The shard map, from the cluster keeper after every round.
  caf::reacts_to<view_atom, cluster::cluster_view>,
  // (node id, endpoint) of every connected node, from the peers actor.
  caf::reacts_to<peers_atom, std::vector<std::pair<int32_t, caf::actor>>>,
  // A command waiting for its shard's owner: route it again.
  caf::reacts_to<retry_atom, uint64_t>>;

/// Resolves the facts decide() needs, off the actor scheduler.
using resolver_actor = caf::typed_actor<
  caf::replies_to<facts_atom,
                  std::vector<fact_request>>::with<std::vector<fact>>,
  // The sender's command is done with the claims it asked for exclusively.
  caf::reacts_to<release_atom>>;

/// Registers this module's message types.
void add_message_types(caf::actor_system_config& cfg);

} // namespace shoutflow::entity
