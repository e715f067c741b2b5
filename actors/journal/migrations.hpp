#pragma once

// Versioned SQL migrations (actors/journal/migrations/NNNN_name.sql, embedded
// at build time), applied in order, each in its own transaction and recorded
// in `schema_migrations`. An advisory lock serializes concurrent nodes;
// applying twice is a no-op.

#include <string>
#include <vector>

namespace shoutflow::journal {

struct migration {
  int version;
  std::string name;
  std::string sql;
};

/// The embedded migrations, ordered by version.
const std::vector<migration>& migrations();

struct migration_report {
  int applied = 0;
  int current_version = 0;
};

/// Applies pending migrations. Throws std::runtime_error with a clear
/// message when the database is unreachable or a migration fails.
migration_report migrate(const std::string& db_url);

} // namespace shoutflow::journal
