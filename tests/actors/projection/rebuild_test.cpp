// The rebuild actor (actors/projection/rebuild.hpp) on the real database,
// driven directly: a point-in-time build of a small projection whose index
// step is slow on purpose.

#include <gtest/gtest.h>

#include <caf/all.hpp>
#include <pqxx/pqxx>

#include <memory>
#include <string>

#include "actors/journal/journal_actors.hpp"
#include "actors/projection/generations.hpp"
#include "actors/projection/rebuild.hpp"
#include "tests/support/test_db.hpp"
#include "tests/support/wait.hpp"

using namespace shoutflow;
using namespace shoutflow::testing;
using namespace std::chrono_literals;

namespace {

/// Counts events per stream; its query index takes `pause` to build.
class slow_index final : public projection::read_model {
public:
  std::string name() const override {
    return "slow_index";
  }
  std::vector<std::string> tables() const override {
    return {"si_counts"};
  }
  std::string ddl() const override {
    return "CREATE TABLE si_counts{g} (stream text PRIMARY KEY,"
           "                          events bigint NOT NULL)";
  }
  std::string query_indexes() const override {
    return "SELECT pg_sleep(3);"
           " CREATE INDEX IF NOT EXISTS si_counts{g}_events"
           " ON si_counts{g} (events)";
  }
  std::vector<std::string> keys(const projection::raw_event& e) const override {
    return {e.persistence_id};
  }
  void apply(pqxx::transaction_base& tx, const std::string& suffix,
             const std::vector<projection::keyed_event>& events,
             std::vector<projection::change>*) const override {
    for (auto& k : events)
      tx.exec_params("INSERT INTO si_counts" + suffix
                       + " VALUES ($1, 1) ON CONFLICT (stream)"
                         " DO UPDATE SET events = si_counts"
                       + suffix + ".events + 1",
                     k.key);
  }
};

} // namespace

// The index step runs beside the rebuild actor, not in it: asked for its
// status while the indexes are being built, it answers at once (a manager
// gives each build 5 s, then leaves it out of GetProjectionStatus). The
// build still ends complete, indexes included.
TEST(rebuild, answers_while_it_builds_the_query_indexes) {
  test_database db;
  db.exec("INSERT INTO events (persistence_id, seq_nr, event_type,"
          "                    event_version, payload)"
          " SELECT 'user|u' || (i % 5), i, 'Test', 1, '\\x00'::bytea"
          "   FROM generate_series(1, 50) i");
  auto proj = std::make_shared<slow_index>();
  int32_t generation = 0;
  {
    pqxx::connection conn{db.url()};
    generation = projection::create_build(conn, *proj, 2, 0, 50);
  }
  caf::actor_system_config cfg;
  projection::add_message_types(cfg);
  journal::add_message_types(cfg);
  caf::actor_system sys{cfg};
  projection::rebuild_config rc;
  rc.db_url = db.url();
  rc.proj = proj;
  rc.generation = generation;
  rc.partitions = 2;
  rc.replay.poll = 10ms;
  rc.replay.until_position = 50;
  auto rebuild = projection::spawn_rebuild(sys, rc);
  caf::scoped_actor self{sys};
  self->monitor(rebuild);

  ASSERT_TRUE(wait_until(
    [&] {
      return db.scalar<int64_t>("SELECT count(*) FROM pg_stat_activity"
                                " WHERE pid <> pg_backend_pid()"
                                "   AND state = 'active'"
                                "   AND query LIKE 'SELECT pg_sleep(3);%'")
             == 1;
    },
    30s))
    << "the index step never ran";
  bool answered = false;
  self->request(rebuild, 1s, status_atom::value)
    .receive(
      [&](const projection::reader_status& s) {
        answered = true;
        EXPECT_EQ(s.events, 50);
        EXPECT_TRUE(s.done);
      },
      [&](caf::error& err) {
        ADD_FAILURE() << "no status during the index step: " << sys.render(err);
      });
  EXPECT_TRUE(answered);

  bool ended = false;
  self->receive([&](caf::down_msg&) { ended = true; },
                caf::after(30s) >> [] {});
  ASSERT_TRUE(ended) << "the build did not end";
  auto g = std::to_string(generation);
  EXPECT_EQ(db.scalar<std::string>("SELECT state FROM projection_generations"
                                   " WHERE projection = 'slow_index'"
                                   "   AND generation = "
                                   + g),
            "stopped");
  EXPECT_EQ(db.scalar<int64_t>("SELECT count(*) FROM pg_indexes"
                               " WHERE indexname = 'si_counts_g"
                               + g + "_events'"),
            1);
  EXPECT_EQ(db.scalar<int64_t>("SELECT sum(events) FROM si_counts_g" + g), 50);
}
