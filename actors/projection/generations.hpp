#pragma once

// Projection generations in the database (blue/green): read models live in
// tables suffixed _g<N>, read through views of stable names that point at
// the live generation. Blocking SQL for the projection manager (a detached
// actor) and node start-up.
//
// The swap (docs/read-side.md, docs/cluster.md): in ONE transaction, lock
// both generations' rows FOR UPDATE — which waits for every partition
// transaction of either in flight, since those hold them FOR KEY SHARE, and
// fences every later one, since those check the state — then read both
// generations' offsets, and swap only if, for every partition p,
//   promoted_at <= offset(live, p) <= offset(rebuilt, p):
// the rebuilt generation has everything the live one applied (no read goes
// back in time, G6), and it published its changes from at or before where
// the live one stops (so Watch streams miss nothing). Otherwise nothing
// changes and the caller tries again.

#include <pqxx/pqxx>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "actors/projection/projection.hpp"

namespace shoutflow::projection {

/// Same key as the migrations: one node at a time changes the schema.
constexpr int64_t schema_lock = 0x73686f7574666c6f;

struct generations_config {
  std::string db_url;
  std::vector<projection_ptr> projections;
  int32_t partitions = 2;
  /// This node: interrupted rebuilds of its own, or of nodes no longer in
  /// the cluster, are abandoned at start.
  int32_t node_id = 0;
};

/// Creates what is missing so every projection has a live generation
/// (tables, views, bookkeeping) and abandons interrupted rebuilds. Run once
/// at node start. Throws std::runtime_error naming the problem.
void prepare_generations(const generations_config& cfg);

/// The live generation of `name` and its partition count; nothing if none.
std::optional<std::pair<int32_t, int32_t>>
live_generation(pqxx::transaction_base& tx, const std::string& name);

/// Creates generation N+1 of `p` for a rebuild by `builder`, returns N+1.
/// Throws std::invalid_argument when another rebuild of it runs.
int32_t create_build(pqxx::connection& conn, const read_model& p,
                     int32_t partitions, int32_t builder,
                     std::optional<int64_t> until_position);

/// Completes a build's tables for queries: fills what its apply left to the
/// end (read_model::completion_sql), creates the query indexes it was
/// built without (read_model::query_indexes) and gathers the planner's
/// statistics, so the first queries after the swap plan on real numbers.
/// Idempotent. Long on a large generation: the caller's session needs a
/// statement timeout to match.
void finish_build(pqxx::connection& conn, const read_model& p,
                  int32_t generation);

/// Marks a point-in-time build complete.
void mark_stopped(pqxx::connection& conn, const std::string& name,
                  int32_t generation);

/// Every partition's offset of a generation (missing rows: the start).
std::vector<cursor> offsets_of(pqxx::transaction_base& tx,
                               const std::string& name, int32_t generation,
                               int32_t partitions);

struct swap_outcome {
  bool swapped = false;
  /// The retired generation's final offsets (when swapped).
  std::vector<cursor> retired_offsets;
  int32_t retired = 0;
  /// Why not (when not swapped).
  std::string why;
};

/// The swap transaction (see above).
swap_outcome try_swap(pqxx::connection& conn, const read_model& p,
                      int32_t rebuilt, const cursor& promoted_at);

/// Drops a retired generation's tables, offsets and change log.
void drop_generation(pqxx::connection& conn, const read_model& p,
                     int32_t generation);

/// Forgets logged change batches older than `retention`: a watch hub that
/// missed a batch for longer than that cannot fill it in any more.
void prune_change_log(pqxx::connection& conn, std::chrono::seconds retention);

} // namespace shoutflow::projection
