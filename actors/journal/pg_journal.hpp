#pragma once

// The PostgreSQL journal: one batch of entity writes in ONE transaction.
//
// batch_writer writes a whole batch with unnest()-based multi-row
// statements; the coordinator actor (journal_coordinator.hpp) gathers the
// batches and replies to every entity after COMMIT. synchronous_commit stays
// on: an acknowledged write is durable.
//
// A write that cannot commit (fenced: its shard lease moved on; duplicate
// command id; failed claim/guard/release; stale seq_nr) fails alone: the worker rolls the transaction back,
// drops that write and retries the rest (batch_writer below).
//
// Database calls happen only on the workers' own threads, never on the CAF
// scheduler.

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include "actors/journal/journal_actors.hpp"
#include "actors/journal/journal_metrics.hpp"
#include "actors/journal/pg_session.hpp"

namespace shoutflow::journal {

struct journal_config {
  std::string db_url;
  /// Recorded in events.node_id.
  std::string node_id = "node-0";
  /// This process in the membership table: fenced writes commit only under
  /// shard leases this incarnation holds (docs/cluster.md).
  std::string incarnation;
  std::chrono::microseconds batch_window{500};
  std::size_t max_batch = 256;
  std::size_t writers = 2;
  /// Every write is answered within this long: with its outcome, or as in
  /// doubt (an error) while it is still queued or being written. Kept by
  /// the coordinator for all writes at once, so an entity's request needs
  /// no timeout of its own.
  std::chrono::milliseconds write_timeout{10000};
  /// Told (wake) after every commit that appended events: the read side's
  /// readers wake on it instead of polling (may be invalid).
  caf::actor on_commit;
};

/// Writes batches synchronously on the calling thread (used by the worker
/// actors, and directly by tests).
class batch_writer {
public:
  batch_writer(std::string db_url, std::string node_id, std::string name,
               journal_metrics* metrics = nullptr,
               std::string incarnation = {});

  /// One outcome per write, in order. Writes that are `ok` are durable.
  std::vector<write_outcome> write(const std::vector<journal_write>& batch);

  pg_session& session() {
    return session_;
  }

private:
  std::string node_id_;
  std::string incarnation_;
  pg_session session_;
  journal_metrics* metrics_;
};

} // namespace shoutflow::journal
