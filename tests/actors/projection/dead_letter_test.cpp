// Poison events (G3 with a bad event in the log): an event that does not
// decode goes to projection_dead_letters with its error; the later events of
// its key are parked behind it, in order, and other keys go on; once the
// event is fixed, RetryDeadLetter applies it and the parked events exactly
// once, in order, unblocks the key and removes the dead letters. A retry
// that still fails keeps the key blocked and records the new error.
//
// Poison is planted with raw SQL into `events` (a payload that does not
// decode for its type, or a second post of a shout id, which fails in SQL)
// and fixed with an UPDATE to a valid encoding from the
// real codec; everything else goes through the node (commands via the
// router, dead letters via the AdminService).

#include <gtest/gtest.h>

#include <caf/all.hpp>
#include <google/protobuf/util/time_util.h>

#include <chrono>
#include <thread>

#include "actors/common/clock.hpp"
#include "actors/common/id_generator.hpp"
#include "actors/user/user_codec.hpp"
#include "tests/support/test_db.hpp"
#include "tests/support/test_node.hpp"
#include "tests/support/wait.hpp"

using namespace shoutflow;
using namespace shoutflow::testing;
using namespace std::chrono_literals;

namespace {

using shoutflow::testing::eventually;

/// Bytes that parse as no protobuf message: field 1, length 127, 5 bytes.
const std::string garbage = std::string("\x0a\x7f", 2) + "trunc";

class dead_letter_test : public ::testing::Test {
protected:
  dead_letter_test()
    : node_{db_.url(), [](node::node_config& c) { with_read_side(c); }} {
  }

  v1::CommandResult ok(const v1::UserCommand& c) {
    auto r = node_.send(c);
    EXPECT_TRUE(r.has_result()) << c.DebugString() << r.DebugString();
    return r.has_result() ? r.result() : v1::CommandResult{};
  }

  std::string cid() {
    return "cmd-" + std::to_string(++next_);
  }

  void register_users(std::initializer_list<const char*> ids) {
    for (auto* id : ids)
      ok(register_user(cid(), id, id));
  }

  std::string post(const std::string& who) {
    return ok(post_shout(cid(), who, "by " + who)).shout_id();
  }

  void like(const std::string& who, const std::string& shout) {
    v1::UserCommand c;
    auto* l = c.mutable_like_shout();
    l->set_command_id(cid());
    l->set_user_id(who);
    l->set_shout_id(shout);
    ok(c);
  }

  int64_t next_seq(const std::string& user) {
    return db_.scalar<int64_t>("SELECT coalesce(max(seq_nr), 0) + 1 FROM events"
                               " WHERE persistence_id = 'user|"
                               + user + "'");
  }

  /// Appends a raw row to `user`'s stream; returns its position.
  int64_t insert_raw(const std::string& user, const std::string& type,
                     const std::string& payload, int version = 1) {
    auto seq = next_seq(user);
    pqxx::connection conn{db_.url()};
    pqxx::work tx{conn};
    auto pos = tx.exec_params1("INSERT INTO events (persistence_id, seq_nr,"
                               "  event_type, event_version, payload)"
                               " VALUES ($1, $2, $3, $4, $5)"
                               " RETURNING global_position",
                               "user|" + user, seq, type, version,
                               pqxx::binarystring(payload))[0]
                 .as<int64_t>();
    tx.commit();
    return pos;
  }

  int64_t insert_event(const std::string& user, const v1::UserEvent& e) {
    auto enc = user::encode_event(e);
    return insert_raw(user, enc.type, enc.payload, enc.version);
  }

  /// "Fixes" the event at `position`: a valid encoding of `e` (same type).
  void fix(int64_t position, const v1::UserEvent& e, int version = 1) {
    auto enc = user::encode_event(e);
    pqxx::connection conn{db_.url()};
    pqxx::work tx{conn};
    auto r = tx.exec_params("UPDATE events SET payload = $2, event_type = $3,"
                            "  event_version = $4"
                            " WHERE global_position = $1",
                            position, pqxx::binarystring(enc.payload), enc.type,
                            version);
    ASSERT_EQ(r.affected_rows(), 1u);
    tx.commit();
  }

  /// Waits until every live read model has applied (or parked) the log.
  ::testing::AssertionResult caught_up() {
    pqxx::connection conn{db_.url()};
    pqxx::read_transaction tx{conn};
    auto r = tx.exec("SELECT tx_id::text AS tx, global_position FROM events"
                     " ORDER BY tx_id DESC, global_position DESC LIMIT 1");
    projection::cursor end{std::stoull(r[0][0].as<std::string>()),
                           r[0][1].as<int64_t>()};
    caf::scoped_actor self{node_.get().system()};
    auto result = ::testing::AssertionSuccess();
    self
      ->request(node_.get().hub(), 30s, await_atom::value,
                std::vector<std::string>{"users", "shouts", "timelines"}, end)
      .receive([](bool) {},
               [&](caf::error& err) {
                 result = ::testing::AssertionFailure()
                          << node_.get().system().render(err);
               });
    return result;
  }

  std::vector<v1::DeadLetter> dead_letters(const std::string& projection) {
    auto stub = node_.admin_stub();
    v1::ListDeadLettersRequest req;
    req.set_projection(projection);
    v1::DeadLetters resp;
    auto ctx = context_with_deadline();
    auto s = stub->ListDeadLetters(ctx.get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return {resp.dead_letters().begin(), resp.dead_letters().end()};
  }

  grpc::Status retry(int64_t id, uint64_t* applied = nullptr) {
    auto stub = node_.admin_stub();
    v1::RetryDeadLetterRequest req;
    req.set_id(id);
    v1::RetryDeadLetterResponse resp;
    auto ctx = context_with_deadline(30s);
    auto s = stub->RetryDeadLetter(ctx.get(), req, &resp);
    if (applied != nullptr)
      *applied = resp.applied();
    return s;
  }

  int64_t dead_letters_in_status(const std::string& projection) {
    auto stub = node_.admin_stub();
    v1::ProjectionStatus resp;
    auto ctx = context_with_deadline();
    auto s = stub->GetProjectionStatus(ctx.get(), {}, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    for (auto& p : resp.projections())
      if (p.projection() == projection && p.state() == "live")
        return p.dead_letters();
    ADD_FAILURE() << "no live " << projection;
    return -1;
  }

  int64_t user_field(const std::string& user, const std::string& column) {
    return db_.scalar<int64_t>(
      "SELECT " + column + " FROM rm_users WHERE user_id = '" + user + "'");
  }

  std::string user_text(const std::string& user, const std::string& column) {
    return db_.scalar<std::string>(
      "SELECT " + column + " FROM rm_users WHERE user_id = '" + user + "'");
  }

  int64_t count(const std::string& sql) {
    return db_.scalar<int64_t>(sql);
  }

  double continuity_violations() {
    return metric_value(node_,
                        "shoutflow_projection_continuity_violations_total");
  }

  /// A well-formed shout id the node never handed out.
  static std::string fresh_shout_id() {
    static manual_clock clk{1700000000000};
    static snowflake_generator ids{clk, 999};
    return ids.next_id();
  }

  test_database db_;
  test_node node_;
  int next_ = 0;
};

v1::UserEvent shout_posted(const std::string& author, const std::string& id,
                           const std::string& text) {
  v1::UserEvent e;
  auto* p = e.mutable_shout_posted();
  p->set_shout_id(id);
  p->set_author_id(author);
  p->set_text(text);
  *p->mutable_posted_at() = google::protobuf::util::TimeUtil::GetCurrentTime();
  return e;
}

v1::UserEvent user_followed(const std::string& user,
                            const std::string& target) {
  v1::UserEvent e;
  auto* f = e.mutable_user_followed();
  f->set_user_id(user);
  f->set_target_user_id(target);
  *f->mutable_followed_at()
    = google::protobuf::util::TimeUtil::GetCurrentTime();
  return e;
}

v1::UserEvent bio_updated(const std::string& user, const std::string& bio) {
  v1::UserEvent e;
  auto* p = e.mutable_profile_updated();
  p->set_user_id(user);
  p->set_bio(bio);
  *p->mutable_updated_at() = google::protobuf::util::TimeUtil::GetCurrentTime();
  return e;
}

} // namespace

// The whole life of a poison event in the users and timelines read models.
TEST_F(dead_letter_test, poison_parks_its_key_until_fixed_and_retried) {
  register_users({"alice", "bob", "carol"});
  auto p0 = post("alice");
  ASSERT_TRUE(caught_up());

  // alice's stream: a ShoutPosted that does not decode, then a valid
  // profile update; bob follows alice and likes her shout (events of bob's
  // stream that also key alice); carol, unrelated, posts.
  auto poison = insert_raw("alice", "ShoutPosted", garbage);
  auto profile = insert_event("alice",
                              bio_updated("alice", "after the poison"));
  auto followed = ok(follow(cid(), "bob", "alice")).global_position();
  like("bob", p0);
  auto liked = db_.scalar<int64_t>("SELECT max(global_position) FROM events");
  auto c1 = post("carol");
  ASSERT_TRUE(caught_up());

  // users: alice is blocked, her later events parked in log order.
  auto users = dead_letters("users");
  ASSERT_EQ(users.size(), 4u);
  std::vector<int64_t> positions;
  for (auto& d : users) {
    EXPECT_EQ(d.key(), "alice");
    EXPECT_EQ(d.generation(), 1);
    positions.push_back(d.global_position());
  }
  EXPECT_EQ(positions,
            (std::vector<int64_t>{poison, profile, followed, liked}));
  EXPECT_EQ(users[0].event_type(), "ShoutPosted");
  EXPECT_EQ(users[0].persistence_id(), "user|alice");
  EXPECT_NE(users[0].error().find("cannot decode"), std::string::npos)
    << users[0].error();
  for (std::size_t i = 1; i < users.size(); ++i)
    EXPECT_EQ(users[i].error(), "") << "a parked event carries no error";
  EXPECT_EQ(dead_letters_in_status("users"), 4);
  auto timelines = dead_letters("timelines");
  ASSERT_EQ(timelines.size(), 2u);
  EXPECT_EQ(timelines[0].global_position(), poison);
  EXPECT_EQ(timelines[1].global_position(), followed);

  // Nothing parked was applied; the other keys went on.
  EXPECT_EQ(user_field("alice", "shout_count"), 1);
  EXPECT_EQ(user_field("alice", "follower_count"), 0);
  EXPECT_EQ(user_field("alice", "likes_received"), 0);
  EXPECT_EQ(user_field("alice", "source_seq"), 2);
  EXPECT_EQ(user_text("alice", "bio"), "");
  EXPECT_EQ(user_field("bob", "following_count"), 1);
  EXPECT_EQ(user_field("bob", "likes_given"), 1);
  EXPECT_EQ(user_field("carol", "shout_count"), 1);
  EXPECT_EQ(
    count("SELECT like_count FROM rm_shouts WHERE shout_id = '" + p0 + "'"), 1);
  EXPECT_EQ(
    count("SELECT count(*) FROM rm_shouts WHERE shout_id = '" + c1 + "'"), 1);
  EXPECT_EQ(
    count("SELECT count(*) FROM rm_followers WHERE author_id = 'alice'"), 0);

  // Fix the event, retry: the poison and everything parked behind it apply
  // once, in order (the stream's seq_nr continuity holds: 3, then 4).
  auto fixed_id = fresh_shout_id();
  fix(poison, shout_posted("alice", fixed_id, "fixed"));
  uint64_t applied = 0;
  auto s = retry(users[0].id(), &applied);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(applied, 4u);
  s = retry(timelines[0].id(), &applied);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(applied, 2u);
  EXPECT_TRUE(dead_letters("users").empty());
  EXPECT_TRUE(dead_letters("timelines").empty());
  EXPECT_EQ(dead_letters_in_status("users"), 0);
  EXPECT_EQ(user_field("alice", "shout_count"), 2);
  EXPECT_EQ(user_field("alice", "follower_count"), 1);
  EXPECT_EQ(user_field("alice", "likes_received"), 1);
  EXPECT_EQ(user_field("alice", "source_seq"), 4);
  EXPECT_EQ(user_text("alice", "bio"), "after the poison");
  EXPECT_EQ(continuity_violations(), 0);
  EXPECT_EQ(count("SELECT count(*) FROM rm_followers WHERE author_id = 'alice'"
                  " AND follower_id = 'bob'"),
            1);
  EXPECT_EQ(count("SELECT count(*) FROM rm_home WHERE owner_id = 'bob'"
                  " AND shout_id IN ('"
                  + fixed_id + "', '" + p0 + "')"),
            2);

  // The key is unblocked: new events for alice apply normally — from other
  // streams, and from her own (her entity was behind the planted rows: the
  // first attempt may be refused as a conflict, the retry recovers).
  ok(follow(cid(), "carol", "alice"));
  auto own = post_shout("alice-own", "alice", "back to normal");
  auto r = node_.send(own);
  for (int i = 0; i < 3 && !r.has_result(); ++i)
    r = node_.send(own);
  ASSERT_TRUE(r.has_result()) << r.DebugString();
  ASSERT_TRUE(caught_up());
  EXPECT_EQ(user_field("alice", "follower_count"), 2);
  EXPECT_EQ(user_field("alice", "shout_count"), 3);
  EXPECT_EQ(user_field("alice", "source_seq"), 5);
  EXPECT_TRUE(dead_letters("users").empty());
  EXPECT_TRUE(dead_letters("timelines").empty());
  EXPECT_EQ(continuity_violations(), 0);
}

// A retry whose event still does not apply leaves the key blocked (later
// events keep being parked) and records the error of this attempt.
TEST_F(dead_letter_test,
       failed_retry_keeps_the_key_blocked_with_the_new_error) {
  register_users({"alice", "bob"});
  auto p0 = post("alice");
  auto poison = insert_raw("alice", "ShoutPosted", garbage);
  ok(follow(cid(), "bob", "alice"));
  ASSERT_TRUE(caught_up());
  auto before = dead_letters("users");
  ASSERT_EQ(before.size(), 2u);
  auto first_error = before[0].error();
  ASSERT_NE(first_error, "");

  uint64_t applied = 99;
  auto s = retry(before[0].id(), &applied);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(applied, 0u);
  EXPECT_EQ(dead_letters("users").size(), 2u);

  // A "fix" that is still wrong (a version the codec does not know): the
  // retry fails again and records why.
  fix(poison, shout_posted("alice", fresh_shout_id(), "still wrong"), 7);
  s = retry(before[0].id(), &applied);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(applied, 0u);
  auto after = dead_letters("users");
  ASSERT_EQ(after.size(), 2u);
  EXPECT_EQ(after[0].id(), before[0].id());
  EXPECT_NE(after[0].error(), first_error) << "the new error was not recorded";
  EXPECT_NE(after[0].error().find("v7"), std::string::npos) << after[0].error();
  EXPECT_EQ(after[1].error(), "");

  // Still blocked: a new event for alice is parked, not applied.
  like("bob", p0);
  ASSERT_TRUE(caught_up());
  EXPECT_EQ(dead_letters("users").size(), 3u);
  EXPECT_EQ(user_field("alice", "follower_count"), 0);
  EXPECT_EQ(user_field("alice", "likes_received"), 0);
  EXPECT_EQ(user_field("bob", "likes_given"), 1);

  // An unknown dead letter is refused.
  EXPECT_FALSE(retry(999999).ok());

  // Fixed for real; retried through a parked event's id (any of the key's):
  // all three apply, in order, once.
  fix(poison, shout_posted("alice", fresh_shout_id(), "fixed"));
  s = retry(after[1].id(), &applied);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(applied, 3u);
  EXPECT_TRUE(dead_letters("users").empty());
  EXPECT_EQ(user_field("alice", "shout_count"), 2);
  EXPECT_EQ(user_field("alice", "follower_count"), 1);
  EXPECT_EQ(user_field("alice", "likes_received"), 1);
  EXPECT_EQ(user_field("alice", "source_seq"), 3);
  // A second retry of the same id finds nothing left to do.
  EXPECT_FALSE(retry(after[1].id()).ok());
  EXPECT_EQ(user_field("alice", "follower_count"), 1);
  EXPECT_EQ(continuity_violations(), 0);
}

// The poison event is routed to its stream's owner (its real keys are
// unknown while it does not decode). Once fixed, a retry must apply it to
// the keys it really affects: a follow alice -> carol changes carol's
// follower count and carol's follower list — not a follow of alice by
// alice — and a projection the event does not concern must simply let
// go of it.
TEST_F(dead_letter_test, fixed_poison_is_applied_to_the_keys_it_affects) {
  register_users({"alice", "bob", "carol"});
  auto poison = insert_raw("alice", "UserFollowed", garbage);
  ASSERT_TRUE(caught_up());
  std::vector<v1::DeadLetter> all;
  for (auto* p : {"users", "shouts", "timelines"})
    for (auto& d : dead_letters(p))
      all.push_back(d);
  ASSERT_FALSE(all.empty());
  for (auto& d : all)
    EXPECT_EQ(d.global_position(), poison);

  fix(poison, user_followed("alice", "carol"));
  for (auto& d : all) {
    uint64_t applied = 0;
    auto s = retry(d.id(), &applied);
    EXPECT_TRUE(s.ok()) << d.projection() << ": " << s.error_message();
  }
  for (auto* p : {"users", "shouts", "timelines"}) {
    auto left = dead_letters(p);
    EXPECT_TRUE(left.empty())
      << p << " keeps the fixed event as a dead letter: "
      << (left.empty() ? "" : left[0].error());
  }
  EXPECT_EQ(user_field("alice", "following_count"), 1);
  EXPECT_EQ(user_field("carol", "follower_count"), 1)
    << "the fixed follow never reached its target's document";
  EXPECT_EQ(count("SELECT count(*) FROM rm_followers WHERE author_id = 'carol'"
                  " AND follower_id = 'alice'"),
            1)
    << "carol's follower list lacks alice";
  EXPECT_EQ(count("SELECT count(*) FROM rm_followers WHERE author_id = 'alice'"
                  " AND follower_id = 'alice'"),
            0)
    << "the fixed follow was applied as alice following herself";
}

// The same for a shout: a fixed ShoutPosted must reach the shouts read model
// (keyed by the shout's id, not by its author).
TEST_F(dead_letter_test, fixed_poison_shout_reaches_the_shouts_read_model) {
  register_users({"alice"});
  auto poison = insert_raw("alice", "ShoutPosted", garbage);
  ASSERT_TRUE(caught_up());
  auto shouts = dead_letters("shouts");
  ASSERT_EQ(shouts.size(), 1u);
  EXPECT_EQ(shouts[0].global_position(), poison);

  auto id = fresh_shout_id();
  fix(poison, shout_posted("alice", id, "fixed"));
  uint64_t applied = 0;
  auto s = retry(shouts[0].id(), &applied);
  ASSERT_TRUE(s.ok()) << s.error_message();
  auto left = dead_letters("shouts");
  EXPECT_TRUE(left.empty())
    << "still a dead letter: " << (left.empty() ? "" : left[0].error());
  EXPECT_EQ(
    count("SELECT count(*) FROM rm_shouts WHERE shout_id = '" + id + "'"), 1)
    << "the fixed shout never reached rm_shouts";
}

// A second post of a shout id the read models already hold means a corrupt
// log: G3 applies each post once, so the shouts and timelines projections
// insert a new shout's rows without ON CONFLICT. Such a post must fail as a
// dead letter carrying the database's error, never overwrite the first
// post's document or duplicate its timeline rows, and other keys go on.
TEST_F(dead_letter_test, duplicate_post_is_a_dead_letter_not_an_overwrite) {
  register_users({"alice", "bob", "carol"});
  ok(follow(cid(), "bob", "alice"));
  auto p0 = post("alice");
  ASSERT_TRUE(caught_up());

  auto dup = insert_event("alice", shout_posted("alice", p0, "posted again"));
  auto c1 = post("carol");
  ASSERT_TRUE(caught_up());

  auto shouts = dead_letters("shouts");
  ASSERT_EQ(shouts.size(), 1u);
  EXPECT_EQ(shouts[0].global_position(), dup);
  EXPECT_EQ(shouts[0].key(), p0);
  EXPECT_NE(shouts[0].error().find("duplicate key"), std::string::npos)
    << shouts[0].error();
  auto timelines = dead_letters("timelines");
  ASSERT_EQ(timelines.size(), 1u);
  EXPECT_EQ(timelines[0].global_position(), dup);
  EXPECT_EQ(timelines[0].key(), "alice");
  EXPECT_NE(timelines[0].error().find("duplicate key"), std::string::npos)
    << timelines[0].error();

  // A retry fails the same way: the error is recorded, the key stays
  // blocked, and the partition is not stuck retrying the transaction.
  uint64_t applied = 99;
  auto s = retry(shouts[0].id(), &applied);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(applied, 0u);
  auto again = dead_letters("shouts");
  ASSERT_EQ(again.size(), 1u);
  EXPECT_NE(again[0].error().find("duplicate key"), std::string::npos)
    << again[0].error();

  // The first post's rows are as they were.
  EXPECT_EQ(db_.scalar<std::string>("SELECT text FROM rm_shouts"
                                    " WHERE shout_id = '"
                                    + p0 + "'"),
            "by alice");
  EXPECT_EQ(count("SELECT count(*) FROM rm_author_shouts WHERE shout_id = '"
                  + p0 + "'"),
            1);
  EXPECT_EQ(count("SELECT count(*) FROM rm_home WHERE shout_id = '" + p0 + "'"),
            2)
    << "alice's and bob's homes hold alice's shout once each";

  // Other keys went on, in both projections.
  EXPECT_EQ(
    count("SELECT count(*) FROM rm_shouts WHERE shout_id = '" + c1 + "'"), 1);
  EXPECT_EQ(count("SELECT count(*) FROM rm_author_shouts WHERE shout_id = '"
                  + c1 + "'"),
            1);
  EXPECT_EQ(continuity_violations(), 0);
}
