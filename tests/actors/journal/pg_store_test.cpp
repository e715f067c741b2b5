// Integration tests of the PostgreSQL store (recovery, claim and command
// lookups, snapshots) against a real database.

#include <gtest/gtest.h>

#include <caf/all.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "actors/common/atoms.hpp"
#include "actors/journal/journal_actors.hpp"
#include "actors/journal/pg_journal.hpp"
#include "actors/journal/pg_store.hpp"
#include "tests/support/test_db.hpp"

using namespace shoutflow;
using namespace shoutflow::journal;
using shoutflow::testing::test_database;

namespace {

constexpr auto timeout = std::chrono::seconds(10);

journal_write make_write(const std::string& pid, int64_t first_seq, int count,
                         const std::string& command_id) {
  journal_write w;
  w.persistence_id = pid;
  w.command_id = command_id;
  for (int i = 0; i < count; ++i) {
    auto seq = first_seq + i;
    w.events.push_back(
      {seq, "type_" + std::to_string(seq), 1 + i % 2,
       std::string{"\0bytes-", 7} + pid + "-" + std::to_string(seq), command_id,
       0});
  }
  return w;
}

/// One migrated database for the suite (creating one per test is slow);
/// every test starts from empty tables.
class store_test : public ::testing::Test {
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

  store_test() {
    shared().exec("TRUNCATE events, snapshots, claims RESTART IDENTITY");
  }

  static inline std::unique_ptr<test_database> shared_;
  const test_database& db = shared();
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  store_actor store;
  batch_writer writer{db.url(), "node-test", "store-test-writer"};

  void SetUp() override {
    add_message_types(cfg);
    sys = std::make_unique<caf::actor_system>(cfg);
    store = spawn_pg_store(*sys, {db.url(), 3});
  }

  void TearDown() override {
    caf::anon_send_exit(store, caf::exit_reason::user_shutdown);
  }

  /// Commits `w` and returns its positions.
  std::vector<int64_t> commit(const journal_write& w) {
    auto out = writer.write({w});
    EXPECT_EQ(out[0].status, write_status::ok) << out[0].detail;
    return out[0].positions;
  }

  recovery_data recover(const std::string& pid) {
    caf::scoped_actor self{*sys};
    recovery_data out;
    self->request(store, timeout, recover_atom::value, pid)
      .receive([&](recovery_data& d) { out = std::move(d); },
               [&](caf::error& err) {
                 ADD_FAILURE() << "recover: " << sys->render(err);
               });
    return out;
  }

  claim_lookup claim(const std::string& ns, const std::string& key) {
    caf::scoped_actor self{*sys};
    claim_lookup out;
    self->request(store, timeout, claim_atom::value, ns, key)
      .receive([&](claim_lookup& c) { out = std::move(c); },
               [&](caf::error& err) {
                 ADD_FAILURE() << "claim: " << sys->render(err);
               });
    return out;
  }

  std::vector<event_record> lookup(const std::string& pid,
                                   const std::string& cid) {
    caf::scoped_actor self{*sys};
    std::vector<event_record> out;
    self->request(store, timeout, lookup_atom::value, pid, cid)
      .receive([&](command_lookup& c) { out = std::move(c.events); },
               [&](caf::error& err) {
                 ADD_FAILURE() << "lookup: " << sys->render(err);
               });
    return out;
  }

  void snapshot(const std::string& pid, int64_t seq, const std::string& payload,
                int32_t version = 1) {
    caf::anon_send(store, snapshot_atom::value,
                   snapshot_record{pid, seq, version, payload});
  }
};

} // namespace

TEST_F(store_test, recover_of_an_unknown_stream_is_empty) {
  auto d = recover("nobody");
  EXPECT_EQ(d.snapshot.persistence_id, "nobody");
  EXPECT_EQ(d.snapshot.seq_nr, 0);
  EXPECT_TRUE(d.snapshot.payload.empty());
  EXPECT_TRUE(d.events.empty());
}

TEST_F(store_test, recover_without_snapshot_returns_every_event_in_order) {
  auto first = make_write("r", 1, 3, "c1");
  auto second = make_write("r", 4, 2, "c2");
  auto p1 = commit(first);
  auto p2 = commit(second);
  commit(make_write("other", 1, 2, "c3"));
  auto d = recover("r");
  EXPECT_EQ(d.snapshot.seq_nr, 0);
  ASSERT_EQ(d.events.size(), 5u);
  std::vector<event_record> expected = first.events;
  expected.insert(expected.end(), second.events.begin(), second.events.end());
  std::vector<int64_t> positions = p1;
  positions.insert(positions.end(), p2.begin(), p2.end());
  for (std::size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(d.events[i].seq_nr, static_cast<int64_t>(i + 1));
    EXPECT_EQ(d.events[i].type, expected[i].type);
    EXPECT_EQ(d.events[i].version, expected[i].version);
    EXPECT_EQ(d.events[i].payload, expected[i].payload);
    EXPECT_EQ(d.events[i].command_id, expected[i].command_id);
    EXPECT_EQ(d.events[i].position, positions[i]);
  }
}

TEST_F(store_test, recover_returns_latest_snapshot_and_only_later_events) {
  commit(make_write("s", 1, 3, "c1"));
  commit(make_write("s", 4, 3, "c2"));
  snapshot("s", 2, "state-at-2");
  snapshot("s", 4, std::string{"state\0at-4", 10}, 3);
  auto d = recover("s");
  EXPECT_EQ(d.snapshot.persistence_id, "s");
  EXPECT_EQ(d.snapshot.seq_nr, 4);
  EXPECT_EQ(d.snapshot.version, 3);
  EXPECT_EQ(d.snapshot.payload, std::string("state\0at-4", 10));
  ASSERT_EQ(d.events.size(), 2u);
  EXPECT_EQ(d.events[0].seq_nr, 5);
  EXPECT_EQ(d.events[1].seq_nr, 6);
  EXPECT_EQ(d.events[1].command_id, "c2");
}

TEST_F(store_test, snapshot_at_the_head_leaves_no_events) {
  commit(make_write("h", 1, 2, "c1"));
  snapshot("h", 2, "state-at-2");
  auto d = recover("h");
  EXPECT_EQ(d.snapshot.seq_nr, 2);
  EXPECT_TRUE(d.events.empty());
}

TEST_F(store_test, snapshot_never_goes_backwards) {
  commit(make_write("b", 1, 8, "c1"));
  snapshot("b", 5, "five");
  snapshot("b", 3, "three");      // older: must not overwrite
  snapshot("b", 5, "five-again"); // same seq_nr: keeps the first
  auto d = recover("b");
  EXPECT_EQ(d.snapshot.seq_nr, 5);
  EXPECT_EQ(d.snapshot.payload, "five");
  ASSERT_EQ(d.events.size(), 3u);
  EXPECT_EQ(d.events.front().seq_nr, 6);
  snapshot("b", 7, "seven"); // newer: upserted
  d = recover("b");
  EXPECT_EQ(d.snapshot.seq_nr, 7);
  EXPECT_EQ(d.snapshot.payload, "seven");
  ASSERT_EQ(d.events.size(), 1u);
  EXPECT_EQ(d.events.front().seq_nr, 8);
  EXPECT_EQ(db.scalar<int64_t>("SELECT count(*) FROM snapshots"), 1);
  EXPECT_EQ(db.scalar<int64_t>("SELECT seq_nr FROM snapshots"), 7);
}

TEST_F(store_test, claim_lookup_found_and_not_found) {
  auto w = make_write("alice-id", 1, 1, "c1");
  w.claims.push_back({"handle", "alice", "alice-id"});
  w.claims.push_back({"user", "alice-id", "alice-id"});
  commit(w);
  auto found = claim("handle", "alice");
  EXPECT_TRUE(found.found);
  EXPECT_EQ(found.owner, "alice-id");
  EXPECT_TRUE(claim("user", "alice-id").found);
  auto missing = claim("handle", "bob");
  EXPECT_FALSE(missing.found);
  EXPECT_TRUE(missing.owner.empty());
  // Namespaces are separate.
  EXPECT_FALSE(claim("shout", "alice").found);
}

TEST_F(store_test, claim_lookup_sees_a_release) {
  auto w = make_write("u", 1, 1, "c1");
  w.claims.push_back({"handle", "gone", "u"});
  commit(w);
  ASSERT_TRUE(claim("handle", "gone").found);
  auto r = make_write("u", 2, 1, "c2");
  r.releases.push_back({"handle", "gone", "u"});
  commit(r);
  EXPECT_FALSE(claim("handle", "gone").found);
}

TEST_F(store_test, lookup_finds_the_events_of_a_command) {
  auto first = make_write("l", 1, 2, "cmd-a");
  auto p = commit(first);
  commit(make_write("l", 3, 1, "cmd-b"));
  commit(make_write("m", 1, 1, "cmd-a"));
  auto events = lookup("l", "cmd-a");
  ASSERT_EQ(events.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(events[i].seq_nr, first.events[i].seq_nr);
    EXPECT_EQ(events[i].type, first.events[i].type);
    EXPECT_EQ(events[i].payload, first.events[i].payload);
    EXPECT_EQ(events[i].command_id, "cmd-a");
    EXPECT_EQ(events[i].position, p[i]);
  }
  EXPECT_EQ(lookup("l", "cmd-b").size(), 1u);
  EXPECT_EQ(lookup("m", "cmd-a").size(), 1u);
  EXPECT_TRUE(lookup("l", "cmd-unknown").empty());
  EXPECT_TRUE(lookup("nobody", "cmd-a").empty());
}

TEST_F(store_test, many_concurrent_requests_all_answer) {
  for (int i = 0; i < 20; ++i)
    commit(make_write("c" + std::to_string(i), 1, 1 + i % 4, "x"));
  caf::scoped_actor self{*sys};
  using handle = decltype(self->request(store, timeout, recover_atom::value,
                                        std::string{}));
  std::vector<handle> pending;
  for (int round = 0; round < 5; ++round)
    for (int i = 0; i < 20; ++i)
      pending.push_back(self->request(store, timeout, recover_atom::value,
                                      "c" + std::to_string(i)));
  for (std::size_t k = 0; k < pending.size(); ++k) {
    auto i = static_cast<int>(k % 20);
    pending[k].receive(
      [&](recovery_data& d) {
        EXPECT_EQ(d.snapshot.persistence_id, "c" + std::to_string(i));
        EXPECT_EQ(d.events.size(), static_cast<std::size_t>(1 + i % 4));
      },
      [&](caf::error& err) { ADD_FAILURE() << sys->render(err); });
  }
}

TEST(store_unreachable, answers_with_an_error_promptly) {
  caf::actor_system_config cfg;
  add_message_types(cfg);
  caf::actor_system sys{cfg};
  // Port 1 on loopback: nothing listens there, connecting fails at once.
  auto store
    = spawn_pg_store(sys, {"postgresql://shoutflow@127.0.0.1:1/nowhere", 2});
  {
    caf::scoped_actor self{sys};
    auto expect_db_error = [&](const caf::error& err) {
      EXPECT_EQ(err.category(), caf::atom("db")) << sys.render(err);
      EXPECT_EQ(err.code(), static_cast<uint8_t>(db_errc::unavailable));
    };
    auto started = std::chrono::steady_clock::now();
    self->request(store, timeout, recover_atom::value, std::string{"x"})
      .receive(
        [&](recovery_data&) { ADD_FAILURE() << "recovered from nothing"; },
        expect_db_error);
    self
      ->request(store, timeout, claim_atom::value, std::string{"handle"},
                std::string{"x"})
      .receive([&](claim_lookup&) { ADD_FAILURE() << "claim from nothing"; },
               expect_db_error);
    self
      ->request(store, timeout, lookup_atom::value, std::string{"x"},
                std::string{"c"})
      .receive([&](command_lookup&) { ADD_FAILURE() << "lookup from nothing"; },
               expect_db_error);
    // A lost snapshot is logged, not fatal: the store still answers.
    caf::anon_send(store, snapshot_atom::value,
                   snapshot_record{"x", 1, 1, "s"});
    self->request(store, timeout, recover_atom::value, std::string{"x"})
      .receive(
        [&](recovery_data&) { ADD_FAILURE() << "recovered from nothing"; },
        expect_db_error);
    EXPECT_LT(std::chrono::steady_clock::now() - started,
              std::chrono::seconds(3))
      << "errors must come promptly, not after a timeout";
  }
  caf::anon_send_exit(store, caf::exit_reason::user_shutdown);
}
