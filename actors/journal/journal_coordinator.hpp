#pragma once

// The journal's group commit: one coordinator actor per node.
//
// It gathers journal_writes from many entities for at most `batch_window`
// (or until `max_batch` writes are waiting) and hands the batch to one of
// `writers` detached worker actors, each owning a connection and a
// batch_writer (pg_journal.hpp). It replies to every entity after COMMIT.
// While all workers are busy, new writes queue and form the next batch:
// that is where batching comes from under load.
//
// Database calls happen only on the workers' own threads, never on the CAF
// scheduler.

#include <caf/actor_system.hpp>

#include "actors/journal/journal_actors.hpp"
#include "actors/journal/journal_metrics.hpp"
#include "actors/journal/pg_journal.hpp"

namespace shoutflow::journal {

/// Spawns the coordinator and its workers. `metrics` may be null and must
/// otherwise outlive the actors.
journal_actor spawn_pg_journal(caf::actor_system& sys, journal_config cfg,
                               journal_metrics* metrics);

} // namespace shoutflow::journal
