#pragma once

// The cluster's actors on one node (docs/cluster.md).
//
//   membership worker (detached: blocking SQL, membership.hpp)
//        ▲ round / release / leave
//        │
//   keeper ──grant / handoff / revoke──▶ lease holders (the shard region,
//        │                                the projection manager)
//        └──(view_atom, cluster_view)──▶ subscribers (router, peers)
//
// The keeper runs a round every heartbeat interval. It grants what the
// round acquired, hands off what the assignment gives to another node (and
// releases it once its holder is done), and revokes what it could not renew:
// a lease counts as held locally only until the start of its last
// successful renewal plus the TTL minus a safety margin, so a node that
// cannot reach the database stops serving before the database lets another
// node take over; a lease revoked so is freed by the next round and taken
// again only at a new epoch. It never blocks: the worker does the SQL.

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "actors/cluster/cluster_metrics.hpp"
#include "actors/cluster/cluster_types.hpp"
#include "actors/cluster/membership.hpp"
#include "actors/common/atoms.hpp"

namespace caf {
class actor_system_config;
}

namespace shoutflow::cluster {

/// Whatever serves a leased resource.
using lease_holder_actor = caf::typed_actor<
  // Serve this from now on; the epoch is the fencing token of its writes.
  caf::reacts_to<grant_atom, lease_grant>,
  // Stop serving it gracefully; answer once nothing of it runs any more
  // (the lease is released after that).
  caf::replies_to<handoff_atom, lease_grant>::with<bool>,
  // Lost (not renewed in time, or taken): stop at once.
  caf::reacts_to<revoke_atom, lease_grant>>;

using keeper_actor = caf::typed_actor<
  caf::reacts_to<round_atom>,
  // Run a round now (another node released leases); the timer is unchanged.
  caf::reacts_to<wake_atom>, caf::reacts_to<check_atom>,
  // Answers once this node holds everything assigned to it (state up), or
  // false after `timeout`.
  caf::replies_to<join_atom, caf::timespan>::with<bool>,
  // Leave: take nothing more, hand everything off; answers once nothing is
  // held (the member row stays until leave() of the worker).
  caf::replies_to<leave_atom>::with<bool>,
  // The latest view.
  caf::replies_to<view_atom>::with<cluster_view>>;

struct keeper_config {
  membership_config membership;
  std::chrono::milliseconds interval{500};
  /// Stop serving a lease this long before the database lets it expire.
  std::chrono::milliseconds safety_margin{500};
  /// Longest a holder may take to hand one lease off before it is revoked.
  std::chrono::milliseconds handoff_timeout{10000};
  /// Hand-offs running at once; the rest wait their turn (each moving
  /// shard pauses only for its own snapshots, docs/cluster.md).
  std::size_t parallel_handoffs = 4;
  /// resource -> holder ("shard", "projection/users", ...).
  std::map<std::string, lease_holder_actor> holders;
  /// Receive (view_atom, cluster_view) after every round.
  std::vector<caf::actor> subscribers;
  /// Told (round_atom) when this node released leases, to make the other
  /// nodes take them at once (the peers actor; may be invalid).
  caf::actor nudge;
  /// Optional; outlives the keeper.
  cluster_metrics* metrics = nullptr;
};

/// Spawns the keeper and its worker. The node must have joined (the
/// membership table's join()) before.
keeper_actor spawn_keeper(caf::actor_system& sys, keeper_config cfg);

/// Registers this module's message types.
void add_message_types(caf::actor_system_config& cfg);

} // namespace shoutflow::cluster
