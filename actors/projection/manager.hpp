#pragma once

// The projection manager: one per node with the "projections" role.
//
// Live generations run by lease (docs/cluster.md): the manager is the lease
// holder of "projection/<name>". For each partition lease this node holds
// it runs a partition runner — the partition and a reader that applies
// that partition only, reading through the node's one shared log tail
// (log_tail.hpp) — fenced by the lease's epoch and by the
// generation being live. A hand-off holds the reader at a batch boundary and
// stops the runner; a revoked lease stops it at once; a runner whose
// partition is fenced (its generation was swapped out) starts again on the
// live generation while the lease is held. The new owner of a partition
// resumes from its committed offset.
//
// Rebuilds run on the node that was asked: the manager creates generation
// N+1 (recording this node as its builder) and spawns a rebuild actor for
// it (rebuild.hpp: replay, hold, promote, swap). Once it has swapped the
// build in, it tells the manager, which restarts this node's runners of
// the retired generation on the new one at once, from its offsets; on other
// nodes the partition leases' owners do the same when their next batch
// finds their generation fenced.
//
// Dead-letter retries go to the partition that owns the key: a runner or
// build here, or the node holding the partition's lease (through its
// endpoint).
//
// A detached actor: its bookkeeping (DDL, generation rows) is blocking SQL.

#include <caf/actor_system.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "actors/cluster/cluster_types.hpp"
#include "actors/projection/generations.hpp"
#include "actors/projection/log_reader.hpp"
#include "actors/projection/projection.hpp"
#include "actors/projection/projection_actors.hpp"
#include "actors/projection/projection_metrics.hpp"

namespace shoutflow::projection {

using manager_actor = caf::typed_actor<
  // After a journal commit (here or on another node): wake the readers.
  caf::reacts_to<wake_atom>,
  // One status per projection generation running here (a live one's
  // partitions combined).
  caf::replies_to<status_atom>::with<std::vector<reader_status>>,
  // (projection, until position or 0, until time ms or 0) -> generation
  caf::replies_to<rebuild_atom, std::string, int64_t, int64_t>::with<int32_t>,
  // A dead letter's id -> events applied by the retry of its key.
  caf::replies_to<retry_atom, int64_t>::with<uint64_t>,
  // (projection, generation, key): retry a key of a partition run here
  // (asked by another node's manager).
  caf::replies_to<retry_atom, std::string, int32_t,
                  std::string>::with<retry_result>,
  caf::reacts_to<tick_atom>,
  // (projection, retired generation): a rebuild here was swapped in.
  caf::reacts_to<retire_atom, std::string, int32_t>,
  // The lease holder interface (actors/cluster/cluster_actors.hpp).
  caf::reacts_to<grant_atom, cluster::lease_grant>,
  caf::replies_to<handoff_atom, cluster::lease_grant>::with<bool>,
  caf::reacts_to<revoke_atom, cluster::lease_grant>,
  // Who holds which lease; and the other nodes' endpoints.
  caf::reacts_to<view_atom, cluster::cluster_view>,
  caf::reacts_to<peers_atom, std::vector<std::pair<int32_t, caf::actor>>>>;

struct manager_config {
  std::string db_url;
  std::vector<projection_ptr> projections;
  int32_t partitions = 2;
  /// How the live readers walk the log: events per fetch, the poll while
  /// idle, the linger between fetches under load.
  replay_settings live;
  /// A rebuild's batches: a read-model row touched by many events of a
  /// batch is written once per batch, so larger batches rebuild faster
  /// (users 2,000 -> 20,000: 57k -> 105k events/s; 20,000 -> 50,000 on
  /// 1M events: 82-107k -> 111-123k, docs/benchmarks.md). Memory grows
  /// with it: the node peaked at ~190 MB during a 50,000-event rebuild.
  int64_t rebuild_batch_size = 50000;
  /// Receives (batch_atom, ReadSideMessage bytes) for every watch hub.
  caf::actor sink;
  /// This node (builder of its rebuilds) and its incarnation (lease
  /// fences).
  int32_t node_id = 0;
  std::string incarnation;
  /// Counts what the live partitions commit (optional; outlives the
  /// manager).
  projection_metrics* metrics = nullptr;
};

manager_actor spawn_manager(caf::actor_system& sys, manager_config cfg);

} // namespace shoutflow::projection
