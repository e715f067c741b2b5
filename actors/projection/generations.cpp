#include "actors/projection/generations.hpp"

#include <stdexcept>

#include "actors/common/log.hpp"

namespace shoutflow::projection {

namespace {

void lock_schema(pqxx::transaction_base& tx) {
  tx.exec("SELECT pg_advisory_xact_lock(" + std::to_string(schema_lock) + ")");
}

void point_views(pqxx::transaction_base& tx, const read_model& p,
                 int32_t generation) {
  auto suffix = generation_suffix(generation);
  for (auto& base : p.tables()) {
    tx.exec("DROP VIEW IF EXISTS " + base);
    tx.exec("CREATE VIEW " + base + " AS SELECT * FROM " + base + suffix);
  }
}

/// A rebuild's generation starts without its query indexes
/// (`finish_build`).
void create_tables(pqxx::transaction_base& tx, const read_model& p,
                   int32_t generation, bool with_query_indexes) {
  auto suffix = generation_suffix(generation);
  tx.exec(expand_ddl(p.ddl(), suffix));
  if (with_query_indexes && !p.query_indexes().empty())
    tx.exec(expand_ddl(p.query_indexes(), suffix));
}

void drop_tables(pqxx::transaction_base& tx, const read_model& p,
                 int32_t generation) {
  auto suffix = generation_suffix(generation);
  for (auto& base : p.tables())
    tx.exec("DROP TABLE IF EXISTS " + base + suffix);
  tx.exec_params("DELETE FROM projection_offsets"
                 " WHERE projection = $1 AND generation = $2",
                 p.name(), generation);
  tx.exec_params("DELETE FROM projection_change_log"
                 " WHERE projection = $1 AND generation = $2",
                 p.name(), generation);
}

int32_t next_generation(pqxx::transaction_base& tx, const std::string& name) {
  return tx
    .exec_params1("SELECT coalesce(max(generation), 0) + 1"
                  "  FROM projection_generations WHERE projection = $1",
                  name)[0]
    .as<int32_t>();
}

} // namespace

std::optional<std::pair<int32_t, int32_t>>
live_generation(pqxx::transaction_base& tx, const std::string& name) {
  auto rows = tx.exec_params("SELECT generation, partitions"
                             "  FROM projection_generations"
                             " WHERE projection = $1 AND state = 'live'",
                             name);
  if (rows.empty())
    return std::nullopt;
  return std::make_pair(rows[0][0].as<int32_t>(), rows[0][1].as<int32_t>());
}

void prepare_generations(const generations_config& cfg) {
  try {
    pqxx::connection conn{cfg.db_url};
    pqxx::work tx{conn};
    lock_schema(tx);
    for (auto& p : cfg.projections) {
      auto name = p->name();
      // A rebuild interrupted by a crash starts over when asked again. One
      // that a live member runs is left alone.
      for (const auto& row : tx.exec_params(
             "SELECT generation FROM projection_generations g"
             " WHERE projection = $1 AND state = 'building'"
             "   AND (builder IS NULL OR builder = $2"
             "        OR NOT EXISTS (SELECT 1 FROM cluster_members m"
             "                        WHERE m.node_id = g.builder"
             "                          AND m.state <> 'down'))",
             name, cfg.node_id)) {
        auto g = row[0].as<int32_t>();
        drop_tables(tx, *p, g);
        tx.exec_params("UPDATE projection_generations SET state = 'retired'"
                       " WHERE projection = $1 AND generation = $2",
                       name, g);
        log_warn("projection", "dropped the interrupted rebuild " + name + " g"
                                 + std::to_string(g));
      }
      if (auto live = live_generation(tx, name)) {
        if (live->second != cfg.partitions)
          throw std::runtime_error(
            "projection " + name + " generation " + std::to_string(live->first)
            + " was built with " + std::to_string(live->second)
            + " partitions, the node is " + "configured with "
            + std::to_string(cfg.partitions)
            + ": rebuild it, or keep the partition count");
        continue;
      }
      auto g = next_generation(tx, name);
      create_tables(tx, *p, g, true);
      point_views(tx, *p, g);
      tx.exec_params("INSERT INTO projection_generations"
                     " (projection, generation, state, partitions)"
                     " VALUES ($1, $2, 'live', $3)",
                     name, g, cfg.partitions);
      log_info("projection",
               "created " + name + " generation " + std::to_string(g));
    }
    tx.commit();
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string{"cannot prepare read models: "}
                             + e.what());
  }
}

int32_t create_build(pqxx::connection& conn, const read_model& p,
                     int32_t partitions, int32_t builder,
                     std::optional<int64_t> until_position) {
  pqxx::work tx{conn};
  lock_schema(tx);
  auto running = tx.exec_params("SELECT generation, coalesce(builder, -1)"
                                "  FROM projection_generations"
                                " WHERE projection = $1 AND state = 'building'",
                                p.name());
  if (!running.empty())
    throw std::invalid_argument(p.name()
                                + " is already being rebuilt (generation "
                                + running[0][0].as<std::string>() + " on node "
                                + running[0][1].as<std::string>() + ")");
  auto g = next_generation(tx, p.name());
  create_tables(tx, p, g, false);
  if (!p.build_ddl().empty())
    tx.exec(expand_ddl(p.build_ddl(), generation_suffix(g)));
  tx.exec_params("INSERT INTO projection_generations (projection,"
                 " generation, state, partitions, until_position, builder)"
                 " VALUES ($1, $2, 'building', $3, $4, $5)",
                 p.name(), g, partitions, until_position, builder);
  tx.commit();
  return g;
}

void finish_build(pqxx::connection& conn, const read_model& p,
                  int32_t generation) {
  auto suffix = generation_suffix(generation);
  pqxx::work tx{conn};
  if (!p.completion_sql().empty())
    tx.exec(expand_ddl(p.completion_sql(), suffix));
  if (!p.query_indexes().empty())
    tx.exec(expand_ddl(p.query_indexes(), suffix));
  for (auto& base : p.tables())
    tx.exec("ANALYZE " + base + suffix);
  tx.commit();
}

void mark_stopped(pqxx::connection& conn, const std::string& name,
                  int32_t generation) {
  pqxx::work tx{conn};
  tx.exec_params("UPDATE projection_generations SET state = 'stopped'"
                 " WHERE projection = $1 AND generation = $2",
                 name, generation);
  tx.commit();
}

std::vector<cursor> offsets_of(pqxx::transaction_base& tx,
                               const std::string& name, int32_t generation,
                               int32_t partitions) {
  std::vector<cursor> out(static_cast<std::size_t>(std::max(partitions, 0)));
  for (const auto& row :
       tx.exec_params("SELECT partition, tx_id::text, position"
                      "  FROM projection_offsets"
                      " WHERE projection = $1 AND generation = $2",
                      name, generation)) {
    auto p = row[0].as<int32_t>();
    if (p >= 0 && p < partitions)
      out[static_cast<std::size_t>(p)] = {std::stoull(row[1].as<std::string>()),
                                          row[2].as<int64_t>()};
  }
  return out;
}

swap_outcome try_swap(pqxx::connection& conn, const read_model& p,
                      int32_t rebuilt, const cursor& promoted_at) {
  swap_outcome out;
  pqxx::work tx{conn};
  lock_schema(tx);
  auto live = live_generation(tx, p.name());
  if (!live) {
    out.why = "no live generation";
    return out;
  }
  auto [g, partitions] = *live;
  // Waits for every partition transaction of both generations in flight;
  // fences every later one (they check the state under FOR KEY SHARE).
  auto rows = tx.exec_params("SELECT generation, state, partitions"
                             "  FROM projection_generations"
                             " WHERE projection = $1"
                             "   AND generation IN ($2, $3)"
                             " ORDER BY generation FOR UPDATE",
                             p.name(), g, rebuilt);
  if (rows.size() != 2 || rows[1][1].as<std::string>() != "building") {
    out.why = "generation " + std::to_string(rebuilt) + " is not building";
    return out;
  }
  if (rows[1][2].as<int32_t>() != partitions) {
    out.why = "the partition counts differ";
    return out;
  }
  auto old_offsets = offsets_of(tx, p.name(), g, partitions);
  auto new_offsets = offsets_of(tx, p.name(), rebuilt, partitions);
  for (std::size_t i = 0; i < old_offsets.size(); ++i) {
    if (old_offsets[i] < promoted_at) {
      out.why = "the live partition " + std::to_string(i)
                + " has not reached where the rebuild was promoted";
      return out;
    }
    if (new_offsets[i] < old_offsets[i]) {
      out.why = "the rebuilt partition " + std::to_string(i)
                + " is behind the live one";
      return out;
    }
  }
  point_views(tx, p, rebuilt);
  tx.exec_params("UPDATE projection_generations SET state = 'retired'"
                 " WHERE projection = $1 AND generation = $2",
                 p.name(), g);
  tx.exec_params("UPDATE projection_generations"
                 "   SET state = 'live', swapped_at = now()"
                 " WHERE projection = $1 AND generation = $2",
                 p.name(), rebuilt);
  tx.commit();
  out.swapped = true;
  out.retired = g;
  out.retired_offsets = std::move(old_offsets);
  return out;
}

void drop_generation(pqxx::connection& conn, const read_model& p,
                     int32_t generation) {
  pqxx::work tx{conn};
  drop_tables(tx, p, generation);
  tx.commit();
}

void prune_change_log(pqxx::connection& conn, std::chrono::seconds retention) {
  pqxx::work tx{conn};
  tx.exec_params("DELETE FROM projection_change_log"
                 " WHERE recorded_at < now() - $1 * interval '1 second'",
                 static_cast<int64_t>(retention.count()));
  tx.commit();
}

} // namespace shoutflow::projection
