// Integration tests of the schema migrations against a real database: a
// fresh database per test, created here without migrating it.

#include <gtest/gtest.h>

#include <pqxx/pqxx>

#include <atomic>
#include <exception>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include "actors/journal/migrations.hpp"
#include "tests/support/test_db.hpp"

using namespace shoutflow;
using namespace shoutflow::journal;
using shoutflow::testing::admin_url;
using shoutflow::testing::url_with_database;

namespace {

/// An empty database (no schema at all), dropped afterwards.
class fresh_database {
public:
  fresh_database() {
    static std::atomic<int> counter{0};
    std::random_device rd;
    name_ = "sf_migr_" + std::to_string(::getpid()) + "_"
            + std::to_string(counter++) + "_" + std::to_string(rd() % 100000);
    pqxx::connection conn{admin_url()};
    pqxx::nontransaction tx{conn};
    tx.exec("CREATE DATABASE " + name_);
    url_ = url_with_database(admin_url(), name_);
  }

  ~fresh_database() {
    try {
      pqxx::connection conn{admin_url()};
      pqxx::nontransaction tx{conn};
      tx.exec("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
    } catch (...) {
      // A leftover test database is harmless; never throw from here.
    }
  }

  fresh_database(const fresh_database&) = delete;
  fresh_database& operator=(const fresh_database&) = delete;

  const std::string& url() const {
    return url_;
  }

  pqxx::result query(const std::string& sql) const {
    pqxx::connection conn{url_};
    pqxx::work tx{conn};
    auto r = tx.exec(sql);
    tx.commit();
    return r;
  }

  int64_t count(const std::string& sql) const {
    return query(sql)[0][0].as<int64_t>();
  }

private:
  std::string name_;
  std::string url_;
};

int latest_version() {
  return migrations().back().version;
}

} // namespace

TEST(migrations, embedded_list_is_ordered_and_named) {
  auto& all = migrations();
  ASSERT_FALSE(all.empty());
  EXPECT_EQ(all.front().version, 1);
  EXPECT_EQ(all.front().name, "journal");
  std::set<int> versions;
  for (std::size_t i = 0; i < all.size(); ++i) {
    EXPECT_TRUE(versions.insert(all[i].version).second)
      << "version " << all[i].version << " appears twice";
    if (i > 0) {
      EXPECT_LT(all[i - 1].version, all[i].version);
    }
    EXPECT_FALSE(all[i].name.empty());
    EXPECT_FALSE(all[i].sql.empty());
  }
}

TEST(migrations, fresh_database_gets_every_migration_recorded) {
  fresh_database db;
  auto report = migrate(db.url());
  EXPECT_EQ(report.applied, static_cast<int>(migrations().size()));
  EXPECT_EQ(report.current_version, latest_version());
  auto rows = db.query("SELECT version, name FROM schema_migrations"
                       " ORDER BY version");
  ASSERT_EQ(rows.size(), migrations().size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(rows[i][0].as<int>(), migrations()[i].version);
    EXPECT_EQ(rows[i][1].as<std::string>(), migrations()[i].name);
  }
  for (auto table : {"events", "snapshots", "claims"})
    EXPECT_EQ(db.count(std::string{"SELECT count(*) FROM "} + table), 0)
      << table;
}

TEST(migrations, second_run_is_a_no_op) {
  fresh_database db;
  migrate(db.url());
  db.query("INSERT INTO claims (namespace, key, owner_id)"
           " VALUES ('handle', 'keep', 'me')");
  auto applied_at = db.query("SELECT applied_at::text FROM schema_migrations"
                             " ORDER BY version");
  auto again = migrate(db.url());
  EXPECT_EQ(again.applied, 0);
  EXPECT_EQ(again.current_version, latest_version());
  EXPECT_EQ(db.count("SELECT count(*) FROM schema_migrations"),
            static_cast<int64_t>(migrations().size()));
  auto after = db.query("SELECT applied_at::text FROM schema_migrations"
                        " ORDER BY version");
  ASSERT_EQ(after.size(), applied_at.size());
  for (std::size_t i = 0; i < after.size(); ++i)
    EXPECT_EQ(after[i][0].as<std::string>(),
              applied_at[i][0].as<std::string>());
  EXPECT_EQ(db.count("SELECT count(*) FROM claims"), 1) << "data kept";
}

TEST(migrations, concurrent_migrations_apply_once) {
  for (int round = 0; round < 3; ++round) {
    fresh_database db;
    constexpr int threads = 4;
    std::vector<migration_report> reports(threads);
    std::vector<std::string> errors(threads);
    std::vector<std::thread> workers;
    for (int i = 0; i < threads; ++i)
      workers.emplace_back([&, i] {
        try {
          reports[i] = migrate(db.url());
        } catch (const std::exception& e) {
          errors[i] = e.what();
        }
      });
    for (auto& t : workers)
      t.join();
    int applied = 0;
    for (int i = 0; i < threads; ++i) {
      EXPECT_TRUE(errors[i].empty()) << "thread " << i << ": " << errors[i];
      EXPECT_EQ(reports[i].current_version, latest_version());
      applied += reports[i].applied;
    }
    EXPECT_EQ(applied, static_cast<int>(migrations().size()))
      << "each migration must be applied exactly once";
    EXPECT_EQ(db.count("SELECT count(*) FROM schema_migrations"),
              static_cast<int64_t>(migrations().size()));
  }
}

TEST(migrations, events_table_has_the_stream_seq_unique_constraint) {
  fresh_database db;
  migrate(db.url());
  auto def = db.query("SELECT pg_get_constraintdef(oid) FROM pg_constraint"
                      " WHERE conrelid = 'events'::regclass"
                      "   AND conname = 'events_stream_seq'");
  ASSERT_EQ(def.size(), 1u);
  EXPECT_EQ(def[0][0].as<std::string>(), "UNIQUE (persistence_id, seq_nr)");
  db.query("INSERT INTO events (persistence_id, seq_nr, event_type,"
           " event_version, payload) VALUES ('p', 1, 't', 1, '')");
  EXPECT_THROW(db.query("INSERT INTO events (persistence_id, seq_nr,"
                        " event_type, event_version, payload)"
                        " VALUES ('p', 1, 't', 1, '')"),
               pqxx::unique_violation);
  // Another stream may use the same seq_nr.
  db.query("INSERT INTO events (persistence_id, seq_nr, event_type,"
           " event_version, payload) VALUES ('q', 1, 't', 1, '')");
  EXPECT_THROW(db.query("INSERT INTO events (persistence_id, seq_nr,"
                        " event_type, event_version, payload)"
                        " VALUES ('r', 0, 't', 1, '')"),
               pqxx::check_violation);
}

TEST(migrations, events_table_has_the_tx_position_index) {
  fresh_database db;
  migrate(db.url());
  auto def = db.query("SELECT indexdef FROM pg_indexes"
                      " WHERE tablename = 'events'"
                      "   AND indexname = 'events_tx_position'");
  ASSERT_EQ(def.size(), 1u);
  EXPECT_NE(def[0][0].as<std::string>().find("(tx_id, global_position)"),
            std::string::npos)
    << def[0][0].as<std::string>();
}

// Migration 0006 gives read-model generations that existed before it the
// partial index GetTimeline's celebrity merge needs (new generations get it
// from the timelines projection's DDL).
TEST(migrations, existing_timeline_generations_get_the_merged_shouts_index) {
  fresh_database db;
  migrate(db.url());
  db.query("CREATE TABLE rm_author_shouts_g7 (author_id text, shout_id text,"
           " fanned_out boolean, deleted boolean)");
  db.query("DELETE FROM schema_migrations WHERE version = 6");
  EXPECT_EQ(migrate(db.url()).applied, 1);
  auto def = db.query("SELECT indexdef FROM pg_indexes"
                      " WHERE tablename = 'rm_author_shouts_g7'");
  ASSERT_EQ(def.size(), 1u);
  auto text = def[0][0].as<std::string>();
  EXPECT_NE(text.find("(author_id, shout_id)"), std::string::npos) << text;
  EXPECT_NE(text.find("WHERE ((NOT fanned_out) AND (NOT deleted))"),
            std::string::npos)
    << text;
}

TEST(migrations, tx_id_defaults_to_the_writers_transaction_id) {
  fresh_database db;
  migrate(db.url());
  pqxx::connection conn{db.url()};
  std::string first_tx;
  {
    pqxx::work tx{conn};
    auto r = tx.exec1("WITH ins AS ("
                      "  INSERT INTO events (persistence_id, seq_nr,"
                      "    event_type, event_version, payload)"
                      "  VALUES ('p', 1, 't', 1, ''), ('p', 2, 't', 1, '')"
                      "  RETURNING tx_id)"
                      " SELECT count(*), count(DISTINCT tx_id),"
                      "        bool_and(tx_id = pg_current_xact_id()),"
                      "        min(tx_id)::text FROM ins");
    EXPECT_EQ(r[0].as<int64_t>(), 2);
    EXPECT_EQ(r[1].as<int64_t>(), 1);
    EXPECT_TRUE(r[2].as<bool>());
    first_tx = r[3].as<std::string>();
    tx.commit();
  }
  {
    pqxx::work tx{conn};
    tx.exec("INSERT INTO events (persistence_id, seq_nr, event_type,"
            " event_version, payload) VALUES ('p', 3, 't', 1, '')");
    tx.commit();
  }
  pqxx::read_transaction tx{conn};
  auto r = tx.exec1("SELECT count(DISTINCT tx_id),"
                    "       (SELECT tx_id::text FROM events WHERE seq_nr = 1)"
                    "  FROM events");
  EXPECT_EQ(r[0].as<int64_t>(), 2) << "each transaction has its own tx_id";
  EXPECT_EQ(r[1].as<std::string>(), first_tx);
}

TEST(migrations, unreachable_database_throws_a_clear_error) {
  try {
    migrate("postgresql://shoutflow@127.0.0.1:1/nowhere?connect_timeout=2");
    FAIL() << "migrate must throw";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string{e.what()}.find("database migration failed"),
              std::string::npos)
      << e.what();
  }
}
