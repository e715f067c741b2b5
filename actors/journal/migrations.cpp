#include "actors/journal/migrations.hpp"

#include <pqxx/pqxx>

#include <algorithm>
#include <stdexcept>

#include "actors/common/log.hpp"

namespace shoutflow::journal {

// Generated from migrations/*.sql by CMake (migrations_embedded.cpp).
extern const std::vector<std::pair<std::string, std::string>>
  embedded_migrations;

namespace {

// pg_advisory_xact_lock key: "shoutflow" folded to 63 bits.
constexpr int64_t migration_lock = 0x73686f7574666c6f;

} // namespace

const std::vector<migration>& migrations() {
  static const std::vector<migration> all = [] {
    std::vector<migration> out;
    for (auto& [file, sql] : embedded_migrations) {
      // "0001_journal.sql" -> version 1, name "journal".
      auto underscore = file.find('_');
      auto dot = file.rfind('.');
      out.push_back({std::stoi(file.substr(0, underscore)),
                     file.substr(underscore + 1, dot - underscore - 1), sql});
    }
    std::sort(out.begin(), out.end(),
              [](auto& a, auto& b) { return a.version < b.version; });
    return out;
  }();
  return all;
}

migration_report migrate(const std::string& db_url) {
  migration_report report;
  try {
    pqxx::connection conn{db_url};
    {
      pqxx::work tx{conn};
      tx.exec("SELECT pg_advisory_xact_lock(" + std::to_string(migration_lock)
              + ")");
      tx.exec("CREATE TABLE IF NOT EXISTS schema_migrations ("
              " version integer PRIMARY KEY,"
              " name text NOT NULL,"
              " applied_at timestamptz NOT NULL DEFAULT now())");
      tx.commit();
    }
    for (auto& m : migrations()) {
      pqxx::work tx{conn};
      tx.exec("SELECT pg_advisory_xact_lock(" + std::to_string(migration_lock)
              + ")");
      auto done = tx.exec_params("SELECT 1 FROM schema_migrations "
                                 "WHERE version = $1",
                                 m.version);
      if (done.empty()) {
        tx.exec(m.sql);
        tx.exec_params("INSERT INTO schema_migrations (version, name) "
                       "VALUES ($1, $2)",
                       m.version, m.name);
        tx.commit();
        ++report.applied;
        log_info("migrations",
                 "applied " + std::to_string(m.version) + " " + m.name);
      }
      report.current_version = m.version;
    }
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string{"database migration failed: "}
                             + e.what());
  }
  return report;
}

} // namespace shoutflow::journal
