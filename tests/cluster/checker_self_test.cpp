// The invariant checker can fail: a clean run against one real node passes
// every check, and each kind of damage — done to copies of that run's
// database, to the live read models, to the recorded acknowledgements, or
// to a synthetic Watch recording — is reported by the check that owns it.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <pqxx/pqxx>

#include <algorithm>
#include <atomic>
#include <chrono>

#include "actors/entity/sharding.hpp"
#include "tests/support/invariants.hpp"

using namespace shoutflow;
using namespace shoutflow::testing;
using namespace std::chrono_literals;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

namespace {

/// Some violation mentions every one of `parts`.
::testing::Matcher<const violations&> reports(const std::string& a,
                                              const std::string& b = "") {
  return Contains(AllOf(HasSubstr(a), HasSubstr(b)));
}

/// A copy of a database (CREATE DATABASE ... TEMPLATE), dropped on
/// destruction. Nothing may be connected to the original meanwhile.
class database_copy {
public:
  database_copy(const std::string& original, const std::string& name)
    : name_(name) {
    pqxx::connection conn{admin_url()};
    pqxx::nontransaction tx{conn};
    tx.exec("CREATE DATABASE " + name_ + " TEMPLATE " + original);
    url_ = url_with_database(admin_url(), name_);
  }

  ~database_copy() {
    try {
      pqxx::connection conn{admin_url()};
      pqxx::nontransaction tx{conn};
      tx.exec("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
    } catch (...) {
      // A leftover copy is harmless; never throw from a destructor.
    }
  }

  const std::string& url() const {
    return url_;
  }

  void exec(const std::string& sql) const {
    pqxx::connection conn{url_};
    pqxx::work tx{conn};
    tx.exec(sql);
    tx.commit();
  }

private:
  std::string name_;
  std::string url_;
};

std::string q(const std::string& s) {
  std::string out = "'";
  for (auto c : s)
    out += c == '\'' ? std::string{"''"} : std::string(1, c);
  return out + "'";
}

class checker_self_test : public cluster_scenario {
protected:
  std::vector<const command_record*> acked(const std::string& method) const {
    std::vector<const command_record*> out;
    for (auto& r : records_)
      if (r.method == method && r.outcome == command_outcome::acknowledged
          && !r.result.duplicate())
        out.push_back(&r);
    return out;
  }

  std::vector<command_record> records_;
};

TEST_F(checker_self_test, passes_a_clean_run_and_reports_every_kind_of_damage) {
  ASSERT_NO_FATAL_FAILURE(start_cluster(1, [](cluster_options& o) {
    o.cluster_flags = binary_has_cluster_flags(shoutflowd_binary());
  }));
  ASSERT_NO_FATAL_FAILURE(start_load());
  ASSERT_NO_FATAL_FAILURE(start_watch(0));
  ASSERT_NO_FATAL_FAILURE(expect_progress(300));

  // A clean run passes every check; otherwise the rest means nothing.
  finish_and_verify();
  ASSERT_FALSE(HasFailure()) << "the clean run must pass first";
  records_ = load_->log().records();
  auto posts = acked("PostShout");
  ASSERT_GE(posts.size(), 3u);
  auto* noop = [&]() -> const command_record* {
    pqxx::connection conn{db_url_};
    pqxx::read_transaction tx{conn};
    for (auto& r : records_)
      if (r.outcome == command_outcome::acknowledged
          && tx.exec("SELECT 1 FROM noop_commands WHERE command_id = "
                     + q(r.command_id))
                 .size()
               == 1)
        return &r;
    return nullptr;
  }();
  ASSERT_NE(noop, nullptr) << "the load made no no-op command";
  auto& p = *posts[0];
  auto& p2 = *posts[1];

  auto* c = cluster_.get();
  retry_policy quick;
  quick.budget = 5s;
  command_log scratch_log;
  command_client client{[c] { return c->command_targets(); }, quick,
                        &scratch_log};

  {
    SCOPED_TRACE("G4: a resend that answers differently from the first "
                 "acknowledgement");
    std::vector<command_record> tampered = {p};
    tampered[0].result.set_seq_nr(p.result.seq_nr() + 1);
    EXPECT_THAT(check_resend(client, tampered, seed_),
                reports("G4: resending", p.command_id));
    EXPECT_THAT(check_resend(client, {p}, seed_), IsEmpty());
  }
  {
    SCOPED_TRACE("G5: an unexpected status code");
    std::vector<command_record> tampered = {p};
    tampered[0].outcome = command_outcome::rejected;
    tampered[0].code = grpc::StatusCode::INTERNAL;
    EXPECT_THAT(unexpected_rejections(tampered), reports("G5", p.command_id));
  }
  {
    SCOPED_TRACE("G3: live read models that differ from a rebuild");
    pqxx::connection conn{db_url_};
    auto live = [&](const std::string& name) {
      pqxx::read_transaction tx{conn};
      return tx
        .exec1("SELECT generation FROM projection_generations"
               " WHERE state = 'live' AND projection = "
               + q(name))[0]
        .as<std::string>();
    };
    auto users = "rm_users_g" + live("users");
    auto home = "rm_home_g" + live("timelines");
    {
      pqxx::work tx{conn};
      tx.exec("UPDATE " + users + " SET bio = 'tampered' WHERE user_id = "
              + q(load_->users()[0]));
      tx.exec("DELETE FROM " + home + " WHERE ctid = (SELECT ctid FROM " + home
              + " LIMIT 1)");
      tx.commit();
    }
    auto found = check_projections({db_url_, [c] { return c->query_targets(); },
                                    [c] { return c->admin_targets(); }, 60s});
    EXPECT_THAT(found, reports(users + " (live) differs", "tampered"));
    EXPECT_THAT(found, reports(home + " (live) differs", "0 rows only live"));
    EXPECT_THAT(found, Not(reports("rm_shouts")));
  }

  // The journal checks run on copies of the database, without a node.
  ASSERT_NE(cluster_->stop(0), -1);
  EXPECT_THAT(check_journal(db_url_, records_), IsEmpty());
  int copies = 0;
  auto copy = [&] {
    return std::make_unique<database_copy>(
      db_->name(), db_->name() + "_c" + std::to_string(copies++));
  };
  {
    SCOPED_TRACE("G1: an acknowledged event is lost");
    auto db = copy();
    db->exec("DELETE FROM events WHERE command_id = " + q(p.command_id));
    EXPECT_THAT(check_journal(db->url(), records_),
                reports("G1: acknowledged PostShout " + p.command_id,
                        "is not in the journal"));
  }
  {
    SCOPED_TRACE("G1: an acknowledged no-op is lost");
    auto db = copy();
    db->exec("DELETE FROM noop_commands WHERE command_id = "
             + q(noop->command_id));
    EXPECT_THAT(check_journal(db->url(), records_),
                reports(noop->command_id, "is not in the journal"));
  }
  {
    SCOPED_TRACE("G1, G2: a command applied twice, with a duplicate seq_nr");
    auto db = copy();
    db->exec("ALTER TABLE events DROP CONSTRAINT events_stream_seq");
    db->exec("INSERT INTO events (persistence_id, seq_nr, event_type,"
             " event_version, payload, command_id, node_id)"
             " SELECT persistence_id, seq_nr, event_type, event_version,"
             " payload, command_id, node_id FROM events WHERE command_id = "
             + q(p.command_id));
    auto found = check_journal(db->url(), records_);
    EXPECT_THAT(found, reports(p.command_id, "appended 2 events"));
    EXPECT_THAT(found, reports("G2: user|" + p.user_id,
                               "a second event with that seq_nr"));
  }
  {
    SCOPED_TRACE("G1, G2: an event nobody sent, after a gap");
    auto db = copy();
    db->exec("INSERT INTO events (persistence_id, seq_nr, event_type,"
             " event_version, payload, command_id, node_id)"
             " SELECT persistence_id, seq_nr + 2, event_type, event_version,"
             " payload, 'nobody-sent-this', node_id FROM events"
             " WHERE persistence_id = "
             + q("user|" + p.user_id) + " ORDER BY seq_nr DESC LIMIT 1");
    auto found = check_journal(db->url(), records_);
    EXPECT_THAT(found, reports("phantom", "nobody-sent-this"));
    EXPECT_THAT(found, reports("G2: user|" + p.user_id, "a gap"));
  }
  {
    SCOPED_TRACE("G1: acknowledged with another shout id");
    auto db = copy();
    db->exec("UPDATE events SET payload = (SELECT payload FROM events WHERE"
             " command_id = "
             + q(p2.command_id) + ") WHERE command_id = " + q(p.command_id));
    EXPECT_THAT(check_journal(db->url(), records_),
                reports(p.command_id, "was acknowledged with shout"));
  }
  {
    SCOPED_TRACE("G1: a rejected command that the journal holds");
    auto tampered = records_;
    for (auto& r : tampered)
      if (r.command_id == p.command_id) {
        r.outcome = command_outcome::rejected;
        r.code = grpc::StatusCode::NOT_FOUND;
      }
    EXPECT_THAT(check_journal(db_url_, tampered),
                reports(p.command_id, "was rejected"));
  }
  {
    SCOPED_TRACE("G1: an acknowledged result that the journal contradicts");
    auto tampered = records_;
    for (auto& r : tampered)
      if (r.command_id == p.command_id)
        r.result.set_global_position(r.result.global_position() + 100000);
    EXPECT_THAT(check_journal(db_url_, tampered),
                reports(p.command_id, "is stored as"));
  }
  {
    SCOPED_TRACE("G2: writes outside the lease history");
    auto& users = load_->users();
    constexpr uint64_t shards = 8;
    auto shard = [&](const std::string& u) {
      return std::to_string(fnv1a64(u) % shards);
    };
    auto stream = [&](const std::string& u) { return q("user|" + u); };
    auto db = copy();
    // From a known state whether or not the node wrote under leases.
    db->exec("UPDATE events SET lease_epoch = NULL");
    db->exec("DELETE FROM lease_history");
    db->exec("INSERT INTO cluster_settings VALUES ('shards', '8')"
             " ON CONFLICT (name) DO UPDATE SET value = '8'");
    // users[0]: epochs 2 then 1 (granted, but going back).
    db->exec("INSERT INTO lease_history (resource, part, epoch, owner_node,"
             " owner_incarnation) VALUES ('shard', "
             + shard(users[0]) + ", 101, 0, 'a'), ('shard', " + shard(users[0])
             + ", 102, 0, 'a')");
    db->exec("UPDATE events SET node_id = 'node-0', lease_epoch = CASE WHEN"
             " seq_nr = 1 THEN 102 ELSE 101 END WHERE persistence_id = "
             + stream(users[0]));
    // users[1]: an epoch never granted.
    db->exec("UPDATE events SET lease_epoch = 107 WHERE persistence_id = "
             + stream(users[1]));
    // users[2]: granted to node 5, written by node 0.
    db->exec("INSERT INTO lease_history (resource, part, epoch, owner_node,"
             " owner_incarnation) VALUES ('shard', "
             + shard(users[2]) + ", 103, 5, 'b')");
    db->exec("UPDATE events SET node_id = 'node-0', lease_epoch = 103"
             " WHERE persistence_id = "
             + stream(users[2]));
    // users[3]: all in order (no violation).
    db->exec("INSERT INTO lease_history (resource, part, epoch, owner_node,"
             " owner_incarnation) VALUES ('shard', "
             + shard(users[3]) + ", 104, 0, 'c')");
    db->exec("UPDATE events SET node_id = 'node-0', lease_epoch = 104"
             " WHERE persistence_id = "
             + stream(users[3]));
    auto found = check_journal(db->url(), records_);
    EXPECT_THAT(found, reports("user|" + users[0], "the epoch went back"));
    EXPECT_THAT(found, reports("user|" + users[1], "never granted"));
    EXPECT_THAT(found, reports("user|" + users[2], "gave to node-5"));
    EXPECT_THAT(found, Not(reports("user|" + users[3] + " ")));
    journal_check_options strict;
    strict.require_lease_epoch = true;
    EXPECT_THAT(check_journal(db->url(), records_, strict),
                reports("G2:", "carry no lease_epoch"));
  }
}

// -- the Watch check, on recordings made up here ------------------------------

std::vector<subject_event> watched_journal() {
  return {
    {1, 10, "watch-register-w"}, {2, 12, "a"}, {3, 15, "b"}, {4, 20, "c"}};
}

watch_change change(int64_t position, const std::string& bio) {
  return {position, "w", bio, true};
}

watch_segment stream(const std::string& initial_bio,
                     std::vector<watch_change> changes) {
  watch_segment s;
  s.target = "node";
  s.has_initial = true;
  s.initial_user_id = "w";
  s.initial_bio = initial_bio;
  s.changes = std::move(changes);
  return s;
}

violations check_one(std::vector<watch_change> changes,
                     const std::string& initial_bio = "") {
  return check_watch_segments("w", {stream(initial_bio, std::move(changes))},
                              watched_journal(), {12, 15, 20}, true);
}

TEST(watch_check_self_test, watch_check_accepts_exactly_the_later_positions) {
  EXPECT_THAT(check_one({change(12, "watch a"), change(15, "watch b"),
                         change(20, "watch c")}),
              IsEmpty());
  // A change may carry a newer document than its own position.
  EXPECT_THAT(check_one({change(12, "watch b"), change(15, "watch b"),
                         change(20, "watch c")}),
              IsEmpty());
  // Changes from before the initial document's state may come again.
  EXPECT_THAT(check_one({change(15, "watch b"), change(20, "watch c")},
                        "watch b"),
              IsEmpty());
}

TEST(watch_check_self_test, watch_check_reports_duplicates_gaps_and_disorder) {
  EXPECT_THAT(check_one({change(12, "watch a"), change(15, "watch b"),
                         change(15, "watch b"), change(20, "watch c")}),
              reports("at 15", "delivered twice"));
  EXPECT_THAT(check_one({change(12, "watch a"), change(20, "watch c")}),
              reports("positions 15", "never delivered"));
  EXPECT_THAT(check_one({change(15, "watch b"), change(20, "watch c")}),
              reports("positions 12", "never delivered"));
  EXPECT_THAT(check_one({change(12, "watch a"), change(20, "watch c"),
                         change(15, "watch b")}),
              reports("at 15", "out of order"));
  EXPECT_THAT(check_one({change(12, "watch a"), change(15, "watch b")}),
              reports("stopped short", "20"));
  EXPECT_THAT(check_one({change(12, "watch a"), change(15, "watch a"),
                         change(20, "watch c")}),
              reports("at 15", "older document"));
  EXPECT_THAT(check_one({change(12, "watch a"), change(13, "watch a"),
                         change(15, "watch b"), change(20, "watch c")}),
              reports("at 13", "not a position"));
  auto ended = stream("", {change(12, "watch a")});
  ended.ended = true;
  ended.ended_early = true;
  ended.end_status = "UNAVAILABLE gone";
  EXPECT_THAT(check_watch_segments("w", {ended}, watched_journal(),
                                   {12, 15, 20}, true),
              reports("ended before the test stopped it", "UNAVAILABLE"));
  auto other = stream("", {});
  other.initial_user_id = "someone";
  EXPECT_THAT(check_watch_segments("w", {other}, watched_journal(), {}, true),
              reports("initial document", "someone"));
  EXPECT_THAT(check_watch_segments("w", {}, watched_journal(), {}, true),
              reports("no stream"));
}

TEST(watch_check_self_test, watch_check_across_reopened_streams) {
  auto first = stream("", {change(12, "watch a")});
  first.ended = true;
  first.ended_early = true;
  // Reopened after 15: its initial document covers it.
  EXPECT_THAT(check_watch_segments(
                "w", {first, stream("watch b", {change(20, "watch c")})},
                watched_journal(), {12, 15, 20}, false),
              IsEmpty());
  // Reopened with a document from before 15, and 15 never came.
  EXPECT_THAT(check_watch_segments(
                "w", {first, stream("watch a", {change(20, "watch c")})},
                watched_journal(), {12, 15, 20}, false),
              reports("positions 15", "never delivered"));
  // With a single stream expected, a reopen is itself a violation.
  EXPECT_THAT(check_watch_segments(
                "w", {first, stream("watch b", {change(20, "watch c")})},
                watched_journal(), {12, 15, 20}, true),
              reports("reopened"));
}

TEST(shard_hash_self_test, fnv1a64_is_the_sharding_contract) {
  EXPECT_EQ(fnv1a64(""), 0xcbf29ce484222325ULL);
  EXPECT_EQ(fnv1a64("a"), 0xaf63dc4c8601ec8cULL);
  EXPECT_EQ(fnv1a64("foobar"), 0x85944171f73967e8ULL);
  for (std::string id : {"alice", "ld-u7", "watched", "x_y-z"})
    EXPECT_EQ(fnv1a64(id) % 256, entity::shard_of(id, 256)) << id;
}

} // namespace
