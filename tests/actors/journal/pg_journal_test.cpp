// Integration tests of the PostgreSQL journal against a real database:
// batch_writer (one transaction per batch, per-write failures) and the
// group-commit coordinator actor.

#include <gtest/gtest.h>

#include <caf/all.hpp>
#include <pqxx/pqxx>
#include <prometheus/registry.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "actors/common/atoms.hpp"
#include "actors/journal/journal_actors.hpp"
#include "actors/journal/journal_coordinator.hpp"
#include "actors/journal/journal_metrics.hpp"
#include "actors/journal/pg_journal.hpp"
#include "tests/support/test_db.hpp"
#include "tests/support/wait.hpp"

using namespace shoutflow;
using namespace shoutflow::journal;
using shoutflow::testing::test_database;

namespace {

// -- helpers -----------------------------------------------------------------

/// Payload bytes that exercise the bytea path: NUL, quotes, backslash, 0xff.
std::string payload_for(const std::string& pid, int64_t seq) {
  return std::string{"p\0\"\\\xff-", 6} + pid + "-" + std::to_string(seq);
}

/// A write of `count` events starting at `first_seq`.
journal_write make_write(const std::string& pid, int64_t first_seq, int count,
                         const std::string& command_id) {
  journal_write w;
  w.persistence_id = pid;
  w.command_id = command_id;
  w.correlation_id = "corr-" + command_id;
  w.causation_id = "cause-" + command_id;
  for (int i = 0; i < count; ++i) {
    auto seq = first_seq + i;
    w.events.push_back({seq, "test_event_" + std::to_string(seq), 1,
                        payload_for(pid, seq), command_id, 0});
  }
  return w;
}

/// A (namespace, key) pair; a function so it can appear inside macros.
std::pair<std::string, std::string> ck(const std::string& ns,
                                       const std::string& key) {
  return {ns, key};
}

claim_op op(const std::string& ns, const std::string& key,
            const std::string& owner) {
  return {ns, key, owner};
}

struct stored_event {
  std::string pid;
  int64_t seq = 0;
  int64_t position = 0;
  std::string tx_id;
  std::string type;
  std::string payload;
  std::string command_id;
  std::string correlation_id;
  std::string node_id;
};

/// Rows of `events` matching `where`, ordered by global position.
std::vector<stored_event> stored_events(const test_database& db,
                                        const std::string& where = "true") {
  pqxx::connection conn{db.url()};
  pqxx::read_transaction tx{conn};
  std::vector<stored_event> out;
  for (const auto& row :
       tx.exec("SELECT persistence_id, seq_nr, global_position, tx_id::text,"
               "       event_type, payload, coalesce(command_id, ''),"
               "       coalesce(correlation_id, ''), coalesce(node_id, '')"
               "  FROM events WHERE "
               + where + " ORDER BY global_position")) {
    stored_event e;
    e.pid = row[0].as<std::string>();
    e.seq = row[1].as<int64_t>();
    e.position = row[2].as<int64_t>();
    e.tx_id = row[3].as<std::string>();
    e.type = row[4].as<std::string>();
    e.payload = pqxx::binarystring{row[5]}.str();
    e.command_id = row[6].as<std::string>();
    e.correlation_id = row[7].as<std::string>();
    e.node_id = row[8].as<std::string>();
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<stored_event> stream(const test_database& db,
                                 const std::string& pid) {
  auto all = stored_events(db, "persistence_id = '" + pid + "'");
  std::sort(all.begin(), all.end(),
            [](auto& a, auto& b) { return a.seq < b.seq; });
  return all;
}

/// (namespace, key) -> owner of every row in `claims`.
std::map<std::pair<std::string, std::string>, std::string>
stored_claims(const test_database& db) {
  pqxx::connection conn{db.url()};
  pqxx::read_transaction tx{conn};
  std::map<std::pair<std::string, std::string>, std::string> out;
  for (const auto& row : tx.exec("SELECT namespace, key, owner_id FROM claims"))
    out[{row[0].as<std::string>(), row[1].as<std::string>()}]
      = row[2].as<std::string>();
  return out;
}

std::string status_name(write_status s) {
  switch (s) {
    case write_status::ok:
      return "ok";
    case write_status::duplicate:
      return "duplicate";
    case write_status::precondition_failed:
      return "precondition_failed";
    case write_status::conflict:
      return "conflict";
    case write_status::unavailable:
      return "unavailable";
    case write_status::fenced:
      return "fenced";
  }
  return "?";
}

} // namespace

namespace shoutflow::journal {

// Readable statuses in GoogleTest failure messages.
void PrintTo(write_status s, std::ostream* os) {
  *os << status_name(s);
}

} // namespace shoutflow::journal

namespace {

/// "status: detail" of every outcome, for assertion messages.
std::string describe(const std::vector<write_outcome>& outs) {
  std::string s;
  for (std::size_t i = 0; i < outs.size(); ++i)
    s += "[" + std::to_string(i) + "] " + status_name(outs[i].status) + ": "
         + outs[i].detail + "\n";
  return s;
}

/// Asserts that write `w` committed as `out` says: its events are in the
/// table, once each, with the returned positions.
void expect_committed(const test_database& db, const journal_write& w,
                      const write_outcome& out) {
  ASSERT_EQ(out.status, write_status::ok) << out.detail;
  ASSERT_EQ(out.positions.size(), w.events.size());
  auto rows = stored_events(db, "persistence_id = '" + w.persistence_id
                                  + "' AND command_id = '" + w.command_id
                                  + "'");
  ASSERT_EQ(rows.size(), w.events.size()) << w.persistence_id;
  std::sort(rows.begin(), rows.end(),
            [](auto& a, auto& b) { return a.seq < b.seq; });
  for (std::size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(rows[i].seq, w.events[i].seq_nr);
    EXPECT_EQ(rows[i].position, out.positions[i]);
    EXPECT_EQ(rows[i].payload, w.events[i].payload);
    EXPECT_EQ(rows[i].type, w.events[i].type);
  }
}

/// Asserts that nothing of write `w` reached the table.
void expect_absent(const test_database& db, const journal_write& w) {
  EXPECT_EQ(stored_events(db, "command_id = '" + w.command_id + "'").size(), 0u)
    << "events of failed write " << w.command_id << " were committed";
}

/// One migrated database per test suite (creating one per test is slow);
/// every test starts from empty tables.
class fresh_tables_test : public ::testing::Test {
protected:
  static void TearDownTestSuite() {
    shared_.reset();
  }

  /// Created on first use: throws with instructions when no server is set.
  static test_database& shared() {
    if (shared_ == nullptr)
      shared_ = std::make_unique<test_database>();
    return *shared_;
  }

  fresh_tables_test() {
    shared().exec("TRUNCATE events, snapshots, claims RESTART IDENTITY");
  }

  const test_database& db = shared();

private:
  static inline std::unique_ptr<test_database> shared_;
};

class batch_writer_test : public fresh_tables_test {
protected:
  batch_writer writer{db.url(), "node-test", "test-writer"};

  std::vector<write_outcome> write(const std::vector<journal_write>& batch) {
    auto out = writer.write(batch);
    EXPECT_EQ(out.size(), batch.size());
    return out;
  }

  /// Writes `w` alone and requires it to commit.
  void seed(const journal_write& w) {
    auto out = write({w});
    ASSERT_EQ(out[0].status, write_status::ok) << out[0].detail;
  }
};

} // namespace

// -- batch_writer: one transaction per batch ----------------------------------

// The common case is one statement (one round trip, sql_append); anything
// else — here a command id applied before — is refused by that statement
// with nothing written and goes through the step-by-step transaction, which
// answers each write as before.
TEST_F(fresh_tables_test,
       common_batches_take_one_statement_and_others_fall_back) {
  prometheus::Registry registry;
  journal_metrics metrics{registry};
  batch_writer w{db.url(), "node-test", "test-writer", &metrics};
  auto a = make_write("os-a", 1, 2, "os-a1");
  a.claims.push_back(op("shout", "os-shout-a", "os-a"));
  auto b = make_write("os-b", 1, 1, "os-b1");
  auto outs = w.write({a, b});
  expect_committed(db, a, outs[0]);
  expect_committed(db, b, outs[1]);
  EXPECT_EQ(metrics.one_statement_batches.Value(), 1);
  EXPECT_EQ(metrics.refused_appends.Value(), 0);
  EXPECT_EQ(stored_claims(db).size(), 1u);

  // b's command again (a retry) beside a new write: refused, then the
  // step-by-step attempt answers b from its original and commits c.
  auto c = make_write("os-c", 1, 1, "os-c1");
  c.claims.push_back(op("shout", "os-shout-c", "os-c"));
  auto again = make_write("os-b", 2, 1, "os-b1");
  auto outs2 = w.write({again, c});
  EXPECT_EQ(outs2[0].status, write_status::duplicate) << outs2[0].detail;
  expect_committed(db, c, outs2[1]);
  EXPECT_EQ(metrics.refused_appends.Value(), 1);
  EXPECT_EQ(metrics.one_statement_batches.Value(), 1);
  EXPECT_EQ(stored_claims(db).size(), 2u)
    << "the refused statement wrote nothing";
  EXPECT_EQ(stored_events(db).size(), 4u);

  // A claim taken by another owner: refused, then only that write fails.
  auto d = make_write("os-d", 1, 1, "os-d1");
  d.claims.push_back(op("shout", "os-shout-a", "os-d"));
  auto e = make_write("os-e", 1, 1, "os-e1");
  auto outs3 = w.write({d, e});
  EXPECT_EQ(outs3[0].status, write_status::precondition_failed)
    << outs3[0].detail;
  expect_committed(db, e, outs3[1]);
  EXPECT_EQ(metrics.refused_appends.Value(), 2);
  EXPECT_EQ(stored_events(db).size(), 5u);
}

// The journal's statements find their rows by key whatever the statistics
// say. A fresh database's `events` looks empty to the planner until
// autovacuum's first ANALYZE; a generic plan cached then once hash-joined
// every later batch's command ids against a sequential scan of the whole
// journal. Here every plan is generic from the first run, autovacuum stays
// away from `events`, and the journal grows by 20,000 rows behind the
// cached plans: the batches after that must not scan it.
TEST(batch_writer_plans, plans_made_on_an_empty_journal_never_scan_it) {
  test_database db;
  db.exec("ALTER DATABASE " + db.name()
          + " SET plan_cache_mode = force_generic_plan");
  db.exec("ALTER TABLE events SET (autovacuum_enabled = false)");
  int64_t rows = 0;
  int batches = 0;
  auto write_batch = [&](batch_writer& w) {
    std::vector<journal_write> batch;
    for (int i = 0; i < 5; ++i) {
      auto pid = "plan-" + std::to_string(batches) + "-" + std::to_string(i);
      batch.push_back(make_write(pid, 1, 1, pid + "-cmd"));
    }
    for (auto& out : w.write(batch))
      ASSERT_EQ(out.status, write_status::ok) << out.detail;
    rows += 5;
    ++batches;
  };
  {
    batch_writer w{db.url(), "node-test", "test-writer"};
    for (int i = 0; i < 3; ++i)
      write_batch(w); // the plans are made and cached now
    db.exec("INSERT INTO events (persistence_id, seq_nr, event_type,"
            " event_version, payload, command_id)"
            " SELECT 'bulk-' || g, 1, 'test_event_1', 1, '\\x00', 'bulk-' || g"
            "   FROM generate_series(1, 20000) g");
    rows += 20000;
    for (int i = 0; i < 20; ++i)
      write_batch(w);
  } // the writer's backend exits and so reports its table statistics
  auto stats = [&](const std::string& column) {
    return db.scalar<int64_t>("SELECT " + column
                              + " FROM pg_stat_user_tables"
                                " WHERE relname = 'events'");
  };
  ASSERT_TRUE(
    shoutflow::testing::eventually([&] { return stats("n_tup_ins") >= rows; }))
    << "the writer's statistics never arrived: " << stats("n_tup_ins") << " of "
    << rows << " inserts counted";
  // Rows read by sequential scans: the migrations' index builds scanned
  // `events` while it was empty, so only the journal's own scans count.
  EXPECT_EQ(stats("seq_tup_read"), 0)
    << stats("seq_scan") << " sequential scans of `events` in " << batches
    << " batches";
  EXPECT_GE(stats("idx_scan"), batches) << "each batch looks its ids up";
}

TEST_F(batch_writer_test, many_streams_commit_in_one_transaction) {
  std::vector<journal_write> batch;
  for (int i = 0; i < 60; ++i)
    batch.push_back(make_write("s-" + std::to_string(i), 1, 1 + i % 3,
                               "cmd-" + std::to_string(i)));
  auto outs = write(batch);
  for (std::size_t i = 0; i < batch.size(); ++i)
    expect_committed(db, batch[i], outs[i]);
  auto rows = stored_events(db);
  ASSERT_EQ(rows.size(), 60u / 3 * (1 + 2 + 3));
  std::set<std::string> tx_ids;
  for (auto& r : rows) {
    tx_ids.insert(r.tx_id);
    EXPECT_EQ(r.node_id, "node-test");
    EXPECT_EQ(r.correlation_id, "corr-" + r.command_id);
  }
  EXPECT_EQ(tx_ids.size(), 1u) << "a batch must be one transaction";
  // Positions follow batch order, then seq order within each write.
  std::vector<int64_t> flat;
  for (auto& o : outs)
    flat.insert(flat.end(), o.positions.begin(), o.positions.end());
  EXPECT_TRUE(std::is_sorted(flat.begin(), flat.end()));
  EXPECT_EQ(std::set<int64_t>(flat.begin(), flat.end()).size(), flat.size());
}

TEST_F(batch_writer_test, multi_event_writes_keep_seq_order) {
  auto first = make_write("multi", 1, 5, "m1");
  auto outs = write({first});
  expect_committed(db, first, outs[0]);
  auto second = make_write("multi", 6, 4, "m2");
  auto other = make_write("other", 1, 3, "o1");
  outs = write({other, second});
  expect_committed(db, other, outs[0]);
  expect_committed(db, second, outs[1]);
  auto rows = stream(db, "multi");
  ASSERT_EQ(rows.size(), 9u);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(rows[i].seq, static_cast<int64_t>(i + 1));
    if (i > 0) {
      EXPECT_LT(rows[i - 1].position, rows[i].position)
        << "positions must ascend with seq_nr";
    }
  }
  EXPECT_NE(rows[0].tx_id, rows[5].tx_id) << "two batches, two transactions";
}

TEST_F(batch_writer_test, empty_batch_is_a_no_op) {
  EXPECT_TRUE(writer.write({}).empty());
  EXPECT_EQ(db.scalar<int64_t>("SELECT count(*) FROM events"), 0);
}

// -- a failure fails only its own write ---------------------------------------

TEST_F(batch_writer_test, stale_seq_nr_conflicts_alone) {
  seed(make_write("taken", 1, 2, "t1"));
  std::vector<journal_write> batch{
    make_write("a", 1, 2, "a1"),
    make_write("taken", 2, 1, "stale"), // seq 2 exists: a stale writer
    make_write("b", 1, 1, "b1"),
    make_write("c", 1, 3, "c1"),
  };
  auto outs = write(batch);
  EXPECT_EQ(outs[1].status, write_status::conflict) << describe(outs);
  EXPECT_TRUE(outs[1].positions.empty());
  expect_committed(db, batch[0], outs[0]);
  expect_committed(db, batch[2], outs[2]);
  expect_committed(db, batch[3], outs[3]);
  expect_absent(db, batch[1]);
  auto taken = stream(db, "taken");
  ASSERT_EQ(taken.size(), 2u);
  EXPECT_EQ(taken[1].command_id, "t1");
}

TEST_F(batch_writer_test, two_writes_to_one_stream_in_a_batch_first_wins) {
  std::vector<journal_write> batch{
    make_write("x", 1, 1, "x-first"),
    make_write("y", 1, 1, "y1"),
    make_write("x", 1, 2, "x-second"), // a second incarnation of x
    make_write("z", 1, 1, "z1"),
  };
  auto outs = write(batch);
  EXPECT_EQ(outs[2].status, write_status::conflict) << describe(outs);
  expect_committed(db, batch[0], outs[0]);
  expect_committed(db, batch[1], outs[1]);
  expect_committed(db, batch[3], outs[3]);
  expect_absent(db, batch[2]);
  EXPECT_EQ(stream(db, "x").size(), 1u);
}

TEST_F(batch_writer_test, duplicate_command_returns_original_events) {
  auto original = make_write("d", 1, 2, "dup-cmd");
  auto first = write({original});
  expect_committed(db, original, first[0]);
  // The retry was decided on a later state (seq 3) and would claim a key:
  // none of it may be written.
  auto retry = make_write("d", 3, 1, "dup-cmd");
  retry.claims.push_back(op("handle", "dup-handle", "d"));
  std::vector<journal_write> batch{make_write("e", 1, 1, "e1"), retry,
                                   make_write("f", 1, 2, "f1")};
  auto outs = write(batch);
  ASSERT_EQ(outs[1].status, write_status::duplicate) << describe(outs);
  ASSERT_EQ(outs[1].original.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(outs[1].original[i].seq_nr, original.events[i].seq_nr);
    EXPECT_EQ(outs[1].original[i].type, original.events[i].type);
    EXPECT_EQ(outs[1].original[i].payload, original.events[i].payload);
    EXPECT_EQ(outs[1].original[i].command_id, "dup-cmd");
    EXPECT_EQ(outs[1].original[i].position, first[0].positions[i]);
  }
  expect_committed(db, batch[0], outs[0]);
  expect_committed(db, batch[2], outs[2]);
  EXPECT_EQ(stream(db, "d").size(), 2u);
  EXPECT_EQ(stored_claims(db).count(ck("handle", "dup-handle")), 0u);
}

// A command that appended nothing keeps its reply (binary, any byte) for a
// retry. Retried in one batch with a retry of a command that did append
// (another stream), each gets its own original back.
TEST_F(batch_writer_test, retried_noop_returns_its_stored_reply) {
  std::string reply{"\x00reply\xff\\x41", 11};
  journal_write noop;
  noop.persistence_id = "m";
  noop.command_id = "noop-cmd";
  noop.noop_reply = reply;
  auto appended = make_write("n", 1, 1, "append-cmd");
  auto first = write({appended, noop});
  expect_committed(db, appended, first[0]);
  ASSERT_EQ(first[1].status, write_status::ok) << describe(first);

  auto retry_noop = noop;
  retry_noop.noop_reply = "another reply";
  auto retry_appended = make_write("n", 2, 1, "append-cmd");
  auto outs = write({retry_noop, retry_appended});
  ASSERT_EQ(outs[0].status, write_status::duplicate) << describe(outs);
  EXPECT_EQ(outs[0].original_reply, reply);
  EXPECT_TRUE(outs[0].original.empty());
  ASSERT_EQ(outs[1].status, write_status::duplicate) << describe(outs);
  ASSERT_EQ(outs[1].original.size(), 1u);
  EXPECT_EQ(outs[1].original[0].seq_nr, 1);
  EXPECT_EQ(outs[1].original[0].payload, appended.events[0].payload);
  EXPECT_EQ(outs[1].original[0].command_id, "append-cmd");
  EXPECT_EQ(outs[1].original[0].position, first[0].positions[0]);
  EXPECT_TRUE(outs[1].original_reply.empty());
  EXPECT_EQ(stream(db, "n").size(), 1u);
}

TEST_F(batch_writer_test, same_command_id_on_another_stream_is_no_duplicate) {
  seed(make_write("p", 1, 1, "shared-cmd"));
  auto w = make_write("q", 1, 1, "shared-cmd");
  auto outs = write({w});
  EXPECT_EQ(outs[0].status, write_status::ok) << describe(outs);
}

TEST_F(batch_writer_test, taken_claim_fails_alone) {
  auto owner = make_write("u0", 1, 1, "u0-1");
  owner.claims.push_back(op("handle", "alice", "u0"));
  seed(owner);
  auto a = make_write("ua", 1, 1, "ua-1");
  a.claims.push_back(op("handle", "bob", "ua"));
  auto b = make_write("ub", 1, 1, "ub-1");
  b.claims.push_back(op("handle", "carol", "ub"));
  b.claims.push_back(op("handle", "alice", "ub")); // taken by u0
  auto c = make_write("uc", 1, 1, "uc-1");
  c.claims.push_back(op("handle", "dave", "uc"));
  c.claims.push_back(op("user", "uc", "uc"));
  auto outs = write({a, b, c});
  EXPECT_EQ(outs[1].status, write_status::precondition_failed)
    << describe(outs);
  expect_committed(db, a, outs[0]);
  expect_committed(db, c, outs[2]);
  expect_absent(db, b);
  auto claims = stored_claims(db);
  EXPECT_EQ(claims.size(), 4u);
  EXPECT_EQ(claims[ck("handle", "alice")], "u0");
  EXPECT_EQ(claims[ck("handle", "bob")], "ua");
  EXPECT_EQ(claims[ck("handle", "dave")], "uc");
  EXPECT_EQ(claims[ck("user", "uc")], "uc");
  EXPECT_EQ(claims.count(ck("handle", "carol")), 0u)
    << "the failed write's other claim must not be left behind";
}

TEST_F(batch_writer_test, guard_on_missing_or_foreign_claim_fails) {
  auto owner = make_write("g0", 1, 1, "g0-1");
  owner.claims.push_back(op("user", "g0", "g0"));
  seed(owner);
  auto missing = make_write("ga", 1, 1, "ga-1");
  missing.guards.push_back(op("user", "ghost", "ghost"));
  auto good = make_write("gb", 1, 1, "gb-1");
  good.guards.push_back(op("user", "g0", "g0"));
  auto foreign = make_write("gc", 1, 1, "gc-1");
  foreign.guards.push_back(op("user", "g0", "someone-else"));
  auto outs = write({missing, good, foreign});
  EXPECT_EQ(outs[0].status, write_status::precondition_failed)
    << describe(outs);
  EXPECT_EQ(outs[2].status, write_status::precondition_failed)
    << describe(outs);
  expect_committed(db, good, outs[1]);
  expect_absent(db, missing);
  expect_absent(db, foreign);
  EXPECT_EQ(stored_claims(db).at(ck("user", "g0")), "g0");
}

TEST_F(batch_writer_test, release_of_foreign_claim_fails_and_keeps_it) {
  auto owner = make_write("r0", 1, 1, "r0-1");
  owner.claims.push_back(op("handle", "kept", "r0"));
  owner.claims.push_back(op("handle", "mine", "r1"));
  seed(owner);
  auto thief = make_write("r1", 1, 1, "r1-1");
  thief.releases.push_back(op("handle", "mine", "r1")); // its own: fine
  thief.releases.push_back(op("handle", "kept", "r1")); // not its own
  auto good = make_write("r2", 1, 1, "r2-1");
  auto absent = make_write("r3", 1, 1, "r3-1");
  absent.releases.push_back(op("handle", "nothing-here", "r3"));
  auto outs = write({thief, good, absent});
  EXPECT_EQ(outs[0].status, write_status::precondition_failed)
    << describe(outs);
  EXPECT_EQ(outs[2].status, write_status::precondition_failed)
    << describe(outs);
  expect_committed(db, good, outs[1]);
  expect_absent(db, thief);
  expect_absent(db, absent);
  auto claims = stored_claims(db);
  EXPECT_EQ(claims[ck("handle", "kept")], "r0");
  EXPECT_EQ(claims[ck("handle", "mine")], "r1")
    << "the failed write's own release must be rolled back";
}

TEST_F(batch_writer_test, claims_of_one_key_in_a_batch_first_wins) {
  auto first = make_write("k1", 1, 1, "k1-1");
  first.claims.push_back(op("handle", "contested", "k1"));
  auto second = make_write("k2", 1, 1, "k2-1");
  second.claims.push_back(op("handle", "contested", "k2"));
  auto third = make_write("k3", 1, 1, "k3-1");
  third.claims.push_back(op("handle", "free", "k3"));
  auto outs = write({first, second, third});
  EXPECT_EQ(outs[1].status, write_status::precondition_failed)
    << describe(outs);
  expect_committed(db, first, outs[0]);
  expect_committed(db, third, outs[2]);
  expect_absent(db, second);
  auto claims = stored_claims(db);
  EXPECT_EQ(claims[ck("handle", "contested")], "k1");
  EXPECT_EQ(claims[ck("handle", "free")], "k3");
}

TEST_F(batch_writer_test, release_then_guard_in_a_batch_fails_the_guard) {
  auto owner = make_write("o", 1, 1, "o-1");
  owner.claims.push_back(op("shout", "s1", "o"));
  seed(owner);
  auto release = make_write("o", 2, 1, "o-2");
  release.releases.push_back(op("shout", "s1", "o"));
  auto guard = make_write("liker", 1, 1, "liker-1");
  guard.guards.push_back(op("shout", "s1", "o"));
  auto outs = write({release, guard});
  expect_committed(db, release, outs[0]);
  EXPECT_EQ(outs[1].status, write_status::precondition_failed)
    << describe(outs);
  expect_absent(db, guard);
  EXPECT_EQ(stored_claims(db).count(ck("shout", "s1")), 0u);
}

// First wins: the guard commits with the claim in place. The later release
// may commit in the same transaction (the claim is then gone) or be failed
// and retried by its entity in a later batch (the claim is then kept) — but
// never half of it.
TEST_F(batch_writer_test, guard_then_release_in_a_batch_guard_wins) {
  auto owner = make_write("o", 1, 1, "o-1");
  owner.claims.push_back(op("shout", "s1", "o"));
  seed(owner);
  auto guard = make_write("liker", 1, 1, "liker-1");
  guard.guards.push_back(op("shout", "s1", "o"));
  auto release = make_write("o", 2, 1, "o-2");
  release.releases.push_back(op("shout", "s1", "o"));
  auto outs = write({guard, release});
  expect_committed(db, guard, outs[0]);
  if (outs[1].status == write_status::ok) {
    expect_committed(db, release, outs[1]);
    EXPECT_EQ(stored_claims(db).count(ck("shout", "s1")), 0u);
  } else {
    EXPECT_EQ(outs[1].status, write_status::precondition_failed)
      << describe(outs);
    expect_absent(db, release);
    EXPECT_EQ(stored_claims(db).count(ck("shout", "s1")), 1u);
    // Retried alone, it commits.
    auto retried = write({release});
    expect_committed(db, release, retried[0]);
    EXPECT_EQ(stored_claims(db).count(ck("shout", "s1")), 0u);
  }
}

TEST_F(batch_writer_test, release_then_claim_by_another_in_a_batch) {
  // A handle given up and taken by someone else in the same batch.
  auto owner = make_write("old", 1, 1, "old-1");
  owner.claims.push_back(op("handle", "popular", "old"));
  seed(owner);
  auto release = make_write("old", 2, 1, "old-2");
  release.releases.push_back(op("handle", "popular", "old"));
  release.claims.push_back(op("handle", "retired", "old"));
  auto claim = make_write("new", 1, 1, "new-1");
  claim.claims.push_back(op("handle", "popular", "new"));
  auto outs = write({release, claim});
  expect_committed(db, release, outs[0]);
  expect_committed(db, claim, outs[1]);
  auto claims = stored_claims(db);
  EXPECT_EQ(claims[ck("handle", "popular")], "new");
  EXPECT_EQ(claims[ck("handle", "retired")], "old");
}

TEST_F(batch_writer_test, double_release_in_a_batch_second_fails) {
  auto owner = make_write("o", 1, 1, "o-1");
  owner.claims.push_back(op("handle", "h", "o"));
  seed(owner);
  auto first = make_write("o", 2, 1, "o-2");
  first.releases.push_back(op("handle", "h", "o"));
  auto second = make_write("p", 1, 1, "p-1");
  second.releases.push_back(op("handle", "h", "o"));
  auto outs = write({first, second});
  expect_committed(db, first, outs[0]);
  EXPECT_EQ(outs[1].status, write_status::precondition_failed)
    << describe(outs);
  expect_absent(db, second);
}

// -- nothing partial ----------------------------------------------------------

TEST_F(batch_writer_test, failed_writes_leave_no_events_or_claims_behind) {
  auto owner = make_write("base", 1, 2, "base-1");
  owner.claims.push_back(op("handle", "base", "base"));
  owner.claims.push_back(op("handle", "old-name", "base"));
  owner.claims.push_back(op("handle", "gr-name", "gr"));
  seed(owner);

  // Stale seq_nr, with a claim and a release that passed before the events
  // statement failed.
  auto stale = make_write("base", 2, 2, "stale-1");
  stale.claims.push_back(op("handle", "stale-new", "base"));
  stale.releases.push_back(op("handle", "old-name", "base"));
  // First claim free, second taken.
  auto half_claim = make_write("hc", 1, 3, "hc-1");
  half_claim.claims.push_back(op("handle", "hc-free", "hc"));
  half_claim.claims.push_back(op("handle", "base", "hc"));
  // Guard missing, claim free.
  auto bad_guard = make_write("bg", 1, 1, "bg-1");
  bad_guard.claims.push_back(op("handle", "bg-free", "bg"));
  bad_guard.guards.push_back(op("user", "nobody", "nobody"));
  // Release of an absent claim, claim free.
  auto bad_release = make_write("br", 1, 1, "br-1");
  bad_release.claims.push_back(op("handle", "br-free", "br"));
  bad_release.releases.push_back(op("handle", "br-none", "br"));
  // Guard missing, release valid: the release must be rolled back.
  auto guard_release = make_write("gr", 1, 1, "gr-1");
  guard_release.guards.push_back(op("user", "nobody", "nobody"));
  guard_release.releases.push_back(op("handle", "gr-name", "gr"));
  auto good = make_write("good", 1, 2, "good-1");
  good.claims.push_back(op("handle", "good", "good"));

  auto outs
    = write({stale, half_claim, good, bad_guard, bad_release, guard_release});
  EXPECT_EQ(outs[0].status, write_status::conflict) << describe(outs);
  EXPECT_EQ(outs[1].status, write_status::precondition_failed)
    << describe(outs);
  EXPECT_EQ(outs[3].status, write_status::precondition_failed)
    << describe(outs);
  EXPECT_EQ(outs[4].status, write_status::precondition_failed)
    << describe(outs);
  EXPECT_EQ(outs[5].status, write_status::precondition_failed)
    << describe(outs);
  expect_committed(db, good, outs[2]);
  for (auto* w :
       {&stale, &half_claim, &bad_guard, &bad_release, &guard_release})
    expect_absent(db, *w);
  auto claims = stored_claims(db);
  EXPECT_EQ(claims.size(), 4u);
  EXPECT_EQ(claims[ck("handle", "base")], "base");
  EXPECT_EQ(claims[ck("handle", "old-name")], "base");
  EXPECT_EQ(claims[ck("handle", "gr-name")], "gr");
  EXPECT_EQ(claims[ck("handle", "good")], "good");
  EXPECT_EQ(db.scalar<int64_t>("SELECT count(*) FROM events"), 4);
}

// A handle change: release the old handle, claim a new one that turns out to
// be taken. The write fails as a whole — the old handle must stay claimed.
TEST_F(batch_writer_test, taken_claim_rolls_back_the_same_writes_release) {
  auto mover = make_write("mover", 1, 1, "mover-1");
  mover.claims.push_back(op("handle", "old-handle", "mover"));
  seed(mover);
  auto other = make_write("other", 1, 1, "other-1");
  other.claims.push_back(op("handle", "wanted", "other"));
  seed(other);
  auto change = make_write("mover", 2, 1, "mover-2");
  change.releases.push_back(op("handle", "old-handle", "mover"));
  change.claims.push_back(op("handle", "wanted", "mover"));
  auto good = make_write("bystander", 1, 1, "bystander-1");
  auto outs = write({change, good});
  EXPECT_EQ(outs[0].status, write_status::precondition_failed)
    << describe(outs);
  expect_committed(db, good, outs[1]);
  expect_absent(db, change);
  auto claims = stored_claims(db);
  EXPECT_EQ(claims.count(ck("handle", "old-handle")), 1u)
    << "the failed write's release was committed: the handle is free for "
       "anyone while mover's events still say it is theirs";
  EXPECT_EQ(claims[ck("handle", "wanted")], "other");
}

// A write the database rejects for a reason other than UNIQUE(persistence_id,
// seq_nr) — here a correlation id that is not valid UTF-8 (it arrives from a
// client's x-correlation-id header) — must fail alone, like every other
// failing write. Today the whole transaction fails with a generic SQL error
// and every batch-mate is reported `unavailable` (pg_journal.cpp, the
// fall-through after the unique_violation branch).
TEST_F(batch_writer_test, write_rejected_by_the_database_fails_alone) {
  auto bad = make_write("bad", 1, 1, "bad-1");
  bad.correlation_id = "not-utf8-\xff\xfe";
  std::vector<journal_write> batch{make_write("a", 1, 1, "a1"), bad,
                                   make_write("b", 1, 2, "b1")};
  auto outs = write(batch);
  EXPECT_NE(outs[1].status, write_status::ok) << describe(outs);
  expect_absent(db, bad);
  expect_committed(db, batch[0], outs[0]);
  expect_committed(db, batch[2], outs[2]);
}

// Same contract with a write that violates the events CHECK (seq_nr > 0).
TEST_F(batch_writer_test, write_violating_a_check_fails_alone) {
  auto bad = make_write("bad", 0, 1, "bad-1");
  std::vector<journal_write> batch{make_write("a", 1, 1, "a1"), bad,
                                   make_write("b", 1, 1, "b1")};
  auto outs = write(batch);
  EXPECT_NE(outs[1].status, write_status::ok) << describe(outs);
  expect_absent(db, bad);
  expect_committed(db, batch[0], outs[0]);
  expect_committed(db, batch[2], outs[2]);
}

// A deadlock with another transaction (another node's journal writing the
// same claims in the opposite order) is a transient failure: PostgreSQL
// aborts one side so the other can go on, and the aborted side is expected
// to retry. The batch_writer instead reports every write of the aborted
// batch `unavailable` (pg_session maps SQLSTATE 40P01 to db_failure::error).
TEST_F(batch_writer_test, deadlock_with_another_transaction_is_retried) {
  pqxx::connection other{db.url()};
  // Make this batch_writer the side PostgreSQL aborts: the other session
  // checks for deadlocks only after 10 s.
  other.set_variable("deadlock_timeout", "'10s'");
  pqxx::work theirs{other};
  theirs.exec("INSERT INTO claims (namespace, key, owner_id)"
              " VALUES ('handle', 'x', 'other')");
  auto w1 = make_write("dl-1", 1, 1, "dl-1");
  w1.claims.push_back(op("handle", "y", "dl-1"));
  auto w2 = make_write("dl-2", 1, 1, "dl-2");
  w2.claims.push_back(op("handle", "x", "dl-2"));
  std::vector<write_outcome> outs;
  std::thread ours{[&] { outs = writer.write({w1, w2}); }};
  // On an early return: let the batch go on, then wait for it.
  struct join_guard {
    std::thread& t;
    pqxx::work& theirs;
    ~join_guard() {
      if (!t.joinable())
        return;
      try {
        theirs.abort();
      } catch (...) {
        // The connection is gone: the batch is not blocked on it either.
      }
      t.join();
    }
  } joiner{ours, theirs};
  // Wait until the batch holds 'y' and waits for 'x'.
  pqxx::connection monitor{db.url()};
  auto waiting = [&] {
    pqxx::nontransaction tx{monitor};
    return tx.exec1("SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database()"
                    "   AND wait_event_type = 'Lock'"
                    "   AND query LIKE '%INSERT INTO claims%'")[0]
             .as<int64_t>()
           > 0;
  };
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!waiting() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_TRUE(waiting()) << "the batch never blocked on the other claim";
  // Close the cycle: blocks until PostgreSQL aborts the batch's transaction.
  EXPECT_NO_THROW(theirs.exec("INSERT INTO claims (namespace, key, owner_id)"
                              " VALUES ('handle', 'y', 'other')"));
  theirs.abort();
  ours.join();
  ASSERT_EQ(outs.size(), 2u);
  expect_committed(db, w1, outs[0]);
  expect_committed(db, w2, outs[1]);
  auto claims = stored_claims(db);
  EXPECT_EQ(claims[ck("handle", "y")], "dl-1");
  EXPECT_EQ(claims[ck("handle", "x")], "dl-2");
}

TEST_F(batch_writer_test, lost_connection_reconnects_on_next_batch) {
  seed(make_write("lc", 1, 1, "lc-1"));
  writer.session().disconnect();
  auto w = make_write("lc", 2, 1, "lc-2");
  auto outs = write({w});
  expect_committed(db, w, outs[0]);
}

// -- fencing (docs/cluster.md) ------------------------------------------------

/// A fenced batch writer of incarnation "inc-a", and shard leases to play
/// with: shard 7 held by "inc-a" at epoch 3 for a minute.
class fenced_writer_test : public fresh_tables_test {
protected:
  fenced_writer_test() {
    db.exec("TRUNCATE leases, lease_history");
    db.exec("INSERT INTO leases (resource, part, owner_node,"
            " owner_incarnation, epoch, expires_at)"
            " VALUES ('shard', 7, 1, 'inc-a', 3,"
            "         clock_timestamp() + interval '1 minute')");
  }

  batch_writer writer{db.url(), "node-1", "fenced-writer", nullptr, "inc-a"};

  static journal_write fenced(journal_write w, int32_t shard, int64_t epoch) {
    w.shard = shard;
    w.lease_epoch = epoch;
    return w;
  }
};

TEST_F(fenced_writer_test, write_under_the_held_lease_commits_with_its_epoch) {
  auto w = fenced(make_write("f1", 1, 2, "f1-1"), 7, 3);
  auto outs = writer.write({w});
  expect_committed(db, w, outs[0]);
  EXPECT_EQ(db.scalar<int64_t>("SELECT count(*) FROM events"
                               " WHERE lease_epoch = 3"),
            2);
}

TEST_F(fenced_writer_test, stale_epoch_expired_lease_or_other_owner_is_fenced) {
  auto good = fenced(make_write("ok", 1, 1, "ok-1"), 7, 3);
  auto stale = fenced(make_write("stale", 1, 1, "stale-1"), 7, 2);
  auto unleased = fenced(make_write("none", 1, 1, "none-1"), 8, 1);
  auto outs = writer.write({stale, good, unleased});
  EXPECT_EQ(outs[0].status, write_status::fenced) << outs[0].detail;
  expect_committed(db, good, outs[1]);
  EXPECT_EQ(outs[2].status, write_status::fenced) << outs[2].detail;
  expect_absent(db, stale);
  expect_absent(db, unleased);

  // A stale epoch alone, for a shard this node still holds at a newer one:
  // the one-statement append must refuse it by itself (above, the unleased
  // write alone sends the batch down the step-by-step path).
  auto stale_alone = fenced(make_write("stale-alone", 1, 1, "stale-alone-1"),
                            7, 2);
  EXPECT_EQ(writer.write({stale_alone})[0].status, write_status::fenced);
  expect_absent(db, stale_alone);

  // Expired by the database's clock: a node frozen past its lease.
  db.exec("UPDATE leases SET expires_at = clock_timestamp()"
          " - interval '1 second' WHERE part = 7");
  auto late = fenced(make_write("late", 1, 1, "late-1"), 7, 3);
  EXPECT_EQ(writer.write({late})[0].status, write_status::fenced);
  expect_absent(db, late);

  // Taken over by another incarnation at the next epoch.
  db.exec("UPDATE leases SET owner_incarnation = 'inc-b', epoch = 4,"
          " expires_at = clock_timestamp() + interval '1 minute'"
          " WHERE part = 7");
  auto after = fenced(make_write("after", 1, 1, "after-1"), 7, 4);
  EXPECT_EQ(writer.write({after})[0].status, write_status::fenced);
  expect_absent(db, after);
}

// A new owner's acquisition (FOR UPDATE) waits for a batch of the old owner
// that holds the lease row FOR KEY SHARE, so the batch is never appended
// after the new owner took over.
TEST_F(fenced_writer_test, takeover_waits_for_the_batch_in_flight) {
  pqxx::connection old_owner{db.url()};
  pqxx::work tx{old_owner};
  auto held = tx.exec("SELECT part FROM leases WHERE part = 7"
                      " AND owner_incarnation = 'inc-a' AND epoch = 3"
                      "   AND expires_at > clock_timestamp()"
                      " FOR KEY SHARE");
  ASSERT_EQ(held.size(), 1u);
  pqxx::connection taker{db.url()};
  pqxx::work take{taker};
  take.exec("SET LOCAL lock_timeout = '200ms'");
  EXPECT_THROW(take.exec("SELECT 1 FROM leases WHERE part = 7 FOR UPDATE"),
               pqxx::sql_error);
  take.abort();
  // A renewal does not wait for it.
  pqxx::connection renewer{db.url()};
  pqxx::work renew{renewer};
  renew.exec("SET LOCAL lock_timeout = '200ms'");
  EXPECT_NO_THROW(renew.exec("UPDATE leases SET expires_at = clock_timestamp()"
                             " + interval '1 minute' WHERE part = 7"));
  renew.commit();
  tx.commit();
}

// The race the fence's row lock exists for: a batch of the old owner whose
// statement took its snapshot before a new owner's acquisition committed
// would pass a check of the lease under that snapshot, at the old epoch.
// Locking the row makes it wait for the acquisition (which holds the row
// FOR UPDATE, as membership.cpp's does) and then check the newest version:
// it fails as fenced, with nothing written.
TEST_F(fenced_writer_test, a_batch_behind_a_takeover_waits_and_is_fenced) {
  pqxx::connection taker{db.url()};
  pqxx::work take{taker};
  take.exec("SELECT 1 FROM leases WHERE resource = 'shard' AND part = 7"
            " FOR UPDATE");
  take.exec("UPDATE leases SET owner_incarnation = 'inc-b', epoch = 4"
            " WHERE resource = 'shard' AND part = 7");
  auto w = fenced(make_write("behind", 1, 1, "behind-1"), 7, 3);
  std::vector<write_outcome> outs;
  std::thread batch{[&] { outs = writer.write({w}); }};
  bool waited = shoutflow::testing::eventually(
    [&] {
      return db.scalar<int64_t>("SELECT count(*) FROM pg_locks"
                                " WHERE NOT granted")
             > 0;
    },
    std::chrono::seconds(10));
  take.commit();
  batch.join();
  EXPECT_TRUE(waited) << "the batch never waited for the takeover";
  ASSERT_EQ(outs.size(), 1u);
  EXPECT_EQ(outs[0].status, write_status::fenced) << outs[0].detail;
  expect_absent(db, w);
}

TEST_F(batch_writer_test, unreachable_database_is_unavailable_for_all) {
  // Port 1 on loopback: nothing listens there, connecting fails at once.
  batch_writer dead{"postgresql://shoutflow@127.0.0.1:1/nowhere", "node-test",
                    "dead-writer"};
  auto started = std::chrono::steady_clock::now();
  auto outs
    = dead.write({make_write("a", 1, 1, "a1"), make_write("b", 1, 1, "b1")});
  EXPECT_LT(std::chrono::steady_clock::now() - started,
            std::chrono::seconds(2));
  ASSERT_EQ(outs.size(), 2u);
  for (auto& o : outs) {
    EXPECT_EQ(o.status, write_status::unavailable);
    EXPECT_FALSE(o.detail.empty());
  }
}

// -- the coordinator actor ----------------------------------------------------

namespace {

/// An actor system with the journal's message types.
struct actor_env {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;

  actor_env() {
    add_message_types(cfg);
    sys = std::make_unique<caf::actor_system>(cfg);
  }
};

/// Outcomes reported by many writer actors, keyed by persistence id.
struct outcome_log {
  std::mutex mx;
  std::condition_variable cv;
  std::map<std::string, write_outcome> outcomes;
  std::vector<std::string> errors;

  void add(const std::string& pid, write_outcome out) {
    std::lock_guard<std::mutex> guard{mx};
    outcomes[pid] = std::move(out);
    cv.notify_all();
  }

  void fail(const std::string& pid, const std::string& what) {
    std::lock_guard<std::mutex> guard{mx};
    errors.push_back(pid + ": " + what);
    cv.notify_all();
  }

  /// Waits until `n` writers have answered; false on timeout.
  bool wait_for(std::size_t n, std::chrono::seconds timeout) {
    std::unique_lock<std::mutex> lock{mx};
    return cv.wait_for(lock, timeout,
                       [&] { return outcomes.size() + errors.size() >= n; });
  }
};

journal_stats stats_of(caf::actor_system& sys, const journal_actor& j) {
  caf::scoped_actor self{sys};
  journal_stats out;
  self->request(j, std::chrono::seconds(5), stats_atom::value)
    .receive([&](journal_stats& s) { out = s; },
             [&](caf::error& err) {
               ADD_FAILURE() << "stats: " << sys.render(err);
             });
  return out;
}

bool drain(caf::actor_system& sys, const journal_actor& j) {
  caf::scoped_actor self{sys};
  bool drained = false;
  self->request(j, std::chrono::seconds(10), drain_atom::value)
    .receive([&](bool b) { drained = b; },
             [&](caf::error& err) {
               ADD_FAILURE() << "drain: " << sys.render(err);
             });
  return drained;
}

class journal_actor_test : public fresh_tables_test {
protected:
  actor_env env;
  journal_actor journal;

  void
  start(std::chrono::microseconds window, std::size_t max_batch = 256,
        std::size_t writers = 2, journal_metrics* metrics = nullptr,
        std::chrono::milliseconds write_timeout = std::chrono::seconds(10)) {
    journal_config cfg;
    cfg.db_url = db.url();
    cfg.node_id = "node-actor-test";
    cfg.batch_window = window;
    cfg.max_batch = max_batch;
    cfg.writers = writers;
    cfg.write_timeout = write_timeout;
    journal = spawn_pg_journal(*env.sys, cfg, metrics);
  }

  void TearDown() override {
    if (journal)
      caf::anon_send_exit(journal, caf::exit_reason::user_shutdown);
  }

  /// `n` actors, one stream each, all sending one write at once.
  std::shared_ptr<outcome_log> concurrent_writes(int n) {
    auto log = std::make_shared<outcome_log>();
    auto j = journal;
    for (int i = 0; i < n; ++i) {
      auto w = make_write("entity-" + std::to_string(i), 1, 1 + i % 2,
                          "cmd-" + std::to_string(i));
      // The write is a spawn argument: CAF 0.17 spawns argument-less
      // function actors through a null tuple (UB that UBSan reports).
      env.sys->spawn(
        [j, log](caf::event_based_actor* self, const journal_write& w) {
          self->request(j, std::chrono::seconds(20), write_atom::value, w)
            .then(
              [=](write_outcome& out) {
                log->add(w.persistence_id, std::move(out));
              },
              [=](caf::error& err) {
                log->fail(w.persistence_id, self->system().render(err));
              });
        },
        w);
    }
    return log;
  }

  /// Every write of concurrent_writes(n) is ok and in the table exactly once.
  void expect_all_committed_once(outcome_log& log, int n) {
    ASSERT_TRUE(log.wait_for(n, std::chrono::seconds(30)))
      << "only " << log.outcomes.size() << " of " << n << " writes answered";
    std::lock_guard<std::mutex> guard{log.mx};
    EXPECT_TRUE(log.errors.empty()) << log.errors.front();
    auto rows = stored_events(db);
    std::map<std::pair<std::string, int64_t>, int> seen;
    std::map<std::pair<std::string, int64_t>, int64_t> position;
    for (auto& r : rows) {
      ++seen[{r.pid, r.seq}];
      position[{r.pid, r.seq}] = r.position;
    }
    std::size_t expected_events = 0;
    for (int i = 0; i < n; ++i) {
      auto pid = "entity-" + std::to_string(i);
      auto& out = log.outcomes.at(pid);
      ASSERT_EQ(out.status, write_status::ok) << pid << ": " << out.detail;
      auto count = static_cast<std::size_t>(1 + i % 2);
      ASSERT_EQ(out.positions.size(), count);
      expected_events += count;
      for (std::size_t k = 0; k < count; ++k) {
        auto key = std::make_pair(pid, static_cast<int64_t>(k + 1));
        EXPECT_EQ(seen[key], 1) << pid << " seq " << k + 1;
        EXPECT_EQ(position[key], out.positions[k]);
      }
    }
    EXPECT_EQ(rows.size(), expected_events);
  }
};

} // namespace

TEST_F(journal_actor_test, group_commit_batches_concurrent_writers) {
  start(std::chrono::milliseconds(5));
  constexpr int n = 200;
  auto log = concurrent_writes(n);
  expect_all_committed_once(*log, n);
  EXPECT_TRUE(drain(*env.sys, journal));
  auto st = stats_of(*env.sys, journal);
  EXPECT_EQ(st.writes, static_cast<uint64_t>(n));
  EXPECT_EQ(st.events, static_cast<uint64_t>(n / 2 * 3));
  EXPECT_GT(st.batches, 0u);
  EXPECT_GT(st.largest_batch, 1u);
  EXPECT_LT(st.batches, st.writes) << "group commit did not batch";
  // Fewer transactions than writes in the table, too.
  EXPECT_EQ(db.scalar<int64_t>("SELECT count(DISTINCT tx_id) FROM events"),
            static_cast<int64_t>(st.batches));
}

TEST_F(journal_actor_test, zero_batch_window_still_commits_everything) {
  start(std::chrono::microseconds(0));
  constexpr int n = 200;
  auto log = concurrent_writes(n);
  expect_all_committed_once(*log, n);
  EXPECT_TRUE(drain(*env.sys, journal));
  auto st = stats_of(*env.sys, journal);
  EXPECT_EQ(st.writes, static_cast<uint64_t>(n));
  EXPECT_GT(st.batches, 0u);
  EXPECT_LE(st.batches, st.writes);
}

TEST_F(journal_actor_test, max_batch_bounds_every_batch) {
  start(std::chrono::milliseconds(20), 8, 1);
  constexpr int n = 100;
  auto log = concurrent_writes(n);
  expect_all_committed_once(*log, n);
  auto st = stats_of(*env.sys, journal);
  EXPECT_EQ(st.writes, static_cast<uint64_t>(n));
  EXPECT_LE(st.largest_batch, 8u);
  EXPECT_GE(st.batches, static_cast<uint64_t>(n / 8));
}

TEST_F(journal_actor_test, drain_answers_after_every_queued_write) {
  start(std::chrono::milliseconds(5), 16, 2);
  constexpr int n = 120;
  caf::scoped_actor self{*env.sys};
  using handle = decltype(self->request(journal, std::chrono::seconds(1),
                                        write_atom::value, journal_write{}));
  std::vector<handle> pending;
  for (int i = 0; i < n; ++i)
    pending.push_back(self->request(journal, std::chrono::seconds(20),
                                    write_atom::value,
                                    make_write("drain-" + std::to_string(i), 1,
                                               1, "dc-" + std::to_string(i))));
  // Same sender: the drain request is queued behind every write.
  bool drained = false;
  self->request(journal, std::chrono::seconds(20), drain_atom::value)
    .receive([&](bool b) { drained = b; },
             [&](caf::error& err) { ADD_FAILURE() << env.sys->render(err); });
  ASSERT_TRUE(drained);
  EXPECT_EQ(db.scalar<int64_t>("SELECT count(*) FROM events"), n)
    << "drain answered before every write had committed";
  for (auto& h : pending)
    h.receive(
      [&](write_outcome& out) {
        EXPECT_EQ(out.status, write_status::ok) << out.detail;
      },
      [&](caf::error& err) { ADD_FAILURE() << env.sys->render(err); });
  auto st = stats_of(*env.sys, journal);
  EXPECT_EQ(st.writes, static_cast<uint64_t>(n));
  EXPECT_LE(st.largest_batch, 16u);
  // Idle: drain answers at once.
  EXPECT_TRUE(drain(*env.sys, journal));
}

TEST_F(journal_actor_test, failures_reach_their_own_writer_and_metrics) {
  prometheus::Registry registry;
  journal_metrics metrics{registry};
  start(std::chrono::milliseconds(5), 256, 1, &metrics);
  caf::scoped_actor self{*env.sys};
  auto send = [&](const journal_write& w) {
    write_outcome out;
    self->request(journal, std::chrono::seconds(10), write_atom::value, w)
      .receive([&](write_outcome& o) { out = std::move(o); },
               [&](caf::error& err) { ADD_FAILURE() << env.sys->render(err); });
    return out;
  };
  ASSERT_EQ(send(make_write("m", 1, 1, "m1")).status, write_status::ok);
  EXPECT_EQ(send(make_write("m", 1, 1, "m-stale")).status,
            write_status::conflict);
  EXPECT_EQ(send(make_write("m", 2, 1, "m1")).status, write_status::duplicate);
  auto guarded = make_write("n", 1, 1, "n1");
  guarded.guards.push_back(op("user", "nobody", "nobody"));
  EXPECT_EQ(send(guarded).status, write_status::precondition_failed);
  EXPECT_EQ(metrics.conflicts.Value(), 1.0);
  EXPECT_EQ(metrics.duplicates.Value(), 1.0);
  EXPECT_EQ(metrics.precondition_failures.Value(), 1.0);
  EXPECT_EQ(metrics.writes.Value(), 1.0) << "only committed writes count";
  EXPECT_EQ(db.scalar<int64_t>("SELECT count(*) FROM events"), 1);
}

// Entities ask the journal without a timeout of their own: the journal
// answers every write within write_timeout. Writes held up (the events
// table locked: one in flight, two queued behind the single worker) are
// answered in doubt — not before their deadline's last check, once each —
// yet their entities' fence holds until the worker is really done with
// them, and they commit when the lock goes (in doubt: maybe written).
TEST_F(journal_actor_test, held_writes_are_answered_in_doubt_by_write_timeout) {
  using namespace std::chrono_literals;
  prometheus::Registry registry;
  journal_metrics metrics{registry};
  constexpr auto write_timeout = 300ms;
  start(std::chrono::milliseconds(1), 1, 1, &metrics, write_timeout);
  caf::scoped_actor self{*env.sys};
  pqxx::connection locker{db.url()};
  pqxx::work lock{locker};
  lock.exec("LOCK TABLE events IN EXCLUSIVE MODE");
  auto started = std::chrono::steady_clock::now();
  // Our own bound (10 s) only ends the test if the journal never answers.
  using handle
    = decltype(self->request(journal, 10s, write_atom::value, journal_write{}));
  std::vector<handle> pending;
  for (int i = 0; i < 3; ++i)
    pending.push_back(self->request(journal, 10s, write_atom::value,
                                    make_write("held-" + std::to_string(i), 1,
                                               1, "hc-" + std::to_string(i))));
  for (auto& h : pending)
    h.receive(
      [&](write_outcome& out) {
        ADD_FAILURE() << "answered while the table was locked: " << out.detail;
      },
      [&](caf::error& err) { EXPECT_EQ(err, caf::sec::request_timeout); });
  auto waited = std::chrono::steady_clock::now() - started;
  // The checks run every write_timeout / 20: none answers earlier than the
  // last check before its deadline, and none waits past the deadline by
  // more than the scheduling noise of a loaded machine.
  EXPECT_GE(waited, write_timeout - write_timeout / 20);
  EXPECT_LT(waited, 5s);
  EXPECT_EQ(metrics.in_doubt.Value(), 3.0);
  // Still being written: a recovering entity must wait behind the fence.
  bool fenced_early = false;
  self->request(journal, 200ms, fence_atom::value, std::string{"held-0"})
    .receive([&](bool) { fenced_early = true; }, [&](caf::error&) {});
  EXPECT_FALSE(fenced_early)
    << "the fence opened while the in-doubt write was still in flight";
  lock.commit();
  bool fenced = false;
  self->request(journal, 10s, fence_atom::value, std::string{"held-2"})
    .receive([&](bool b) { fenced = b; },
             [&](caf::error& err) { ADD_FAILURE() << env.sys->render(err); });
  EXPECT_TRUE(fenced);
  EXPECT_TRUE(drain(*env.sys, journal));
  EXPECT_EQ(db.scalar<int64_t>("SELECT count(*) FROM events"), 3)
    << "the in-doubt writes commit once the lock is gone";
  EXPECT_EQ(metrics.writes.Value(), 3.0);
  EXPECT_EQ(metrics.in_doubt.Value(), 3.0);
}
