#pragma once

// The membership table and the leases, as blocking SQL (docs/cluster.md).
// Used by the membership worker (a detached actor) and by tools; every call
// runs on the caller's thread.
//
// One round, in ONE transaction: heartbeat this node's row; declare members
// silent for longer than the lease TTL down (and delete rows down for a
// minute); renew this node's unexpired leases; compute the assignment
// (assignment.hpp) over the active members; acquire the free or expired
// leases assigned to this node, bumping their epochs (FOR UPDATE SKIP
// LOCKED: a lease whose row a writer still holds FOR KEY SHARE is taken in
// a later round); read the whole lease map. Times are the database's
// clock_timestamp(), one clock for the whole cluster.
//
// A member is declared down only once its heartbeat is older than the TTL,
// and a node renews its leases in the same transaction as its heartbeat:
// so a down member's leases have expired by the time it is declared down.

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "actors/cluster/cluster_types.hpp"
#include "actors/journal/pg_session.hpp"

namespace shoutflow::cluster {

/// A leased resource: `parts` of it, owned by members with `role`.
struct resource_spec {
  std::string resource;
  int32_t parts = 0;
  std::string role;
};

struct membership_config {
  std::string db_url;
  /// This node: id, incarnation, host, ports, roles (state is ignored).
  member self;
  std::vector<resource_spec> resources;
  /// The cluster's shard count (fixed for its life).
  uint32_t shards = 256;
  std::chrono::milliseconds lease_ttl{3000};
};

/// What one round found and did.
struct round_result {
  /// False when this node's row is gone or belongs to another incarnation:
  /// it was declared down. Nothing else is filled in then.
  bool member = true;
  member_state state = member_state::joining;
  cluster_view view;
  /// Every lease this node holds after the round (renewed or acquired).
  std::vector<lease_grant> held;
  /// Held leases the assignment gives to another node (or to none, when
  /// this node is leaving): to hand off and release.
  std::vector<lease_grant> give_up;
  /// Nodes this round declared down.
  std::vector<int32_t> declared_down;
  /// Per lease this round took from a node that had not released it:
  /// seconds since that node's last renewal.
  std::vector<double> failover_seconds;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, round_result& x) {
  return f(x.member, x.state, x.view, x.held, x.give_up, x.declared_down,
           x.failover_seconds);
}

class membership_table {
public:
  explicit membership_table(membership_config cfg);

  /// Registers this node as joining, creating the lease rows it needs.
  /// A row of an earlier incarnation of this node id is taken over (its
  /// leases expire at once: that process is gone); one of a live member on
  /// another host is waited out for up to `wait`, then refused. Throws
  /// std::runtime_error naming the problem (a shard count that differs
  /// from the cluster's, a node id in use).
  void join(std::chrono::milliseconds wait);

  /// One round (see above). `leaving`: take nothing, give up everything.
  /// `give_back`: leases this node stopped serving at these epochs because
  /// it could not renew them in time; they are freed before the renewal,
  /// so that they can only be taken again at a new epoch.
  journal::db_result round(bool leaving,
                           const std::vector<lease_grant>& give_back,
                           round_result& out);

  /// Frees a lease this node holds at that epoch (after its hand-off).
  journal::db_result release(const lease_grant& g);

  /// Frees every lease of this incarnation and deletes its member row.
  journal::db_result leave();

  const membership_config& config() const {
    return cfg_;
  }

private:
  membership_config cfg_;
  journal::pg_session session_;
};

/// Reads the view (members and leases) without taking part: admin, tools.
journal::db_result read_view(pqxx::connection& conn, cluster_view& out);

} // namespace shoutflow::cluster
