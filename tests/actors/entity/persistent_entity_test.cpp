// Integration tests of the generic persistent entity hosting the user
// aggregate, against real PostgreSQL through an in-process node
// (tests/support/test_node.hpp): recovery from snapshot + tail equals a full
// replay; idempotency (G4) on every path the runtime has for it (recent
// window, recovery, restart, journal dedupe, lookup before a rejection or
// no-op); a single history per user (G2) under concurrent senders and
// in-doubt writes; facts re-checked when they change before the write; a
// broken stored history refused rather than extended.

#include <gtest/gtest.h>

#include <caf/all.hpp>
#include <pqxx/pqxx>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "actors/common/id_generator.hpp"
#include "actors/user/user_codec.hpp"
#include "actors/user/user_domain.hpp"
#include "tests/support/test_db.hpp"
#include "tests/support/test_node.hpp"
#include "tests/support/wait.hpp"

using namespace shoutflow;
using namespace shoutflow::testing;
using namespace std::chrono_literals;

namespace {

// -- command builders not in test_node.hpp ------------------------------------

v1::UserCommand unfollow(const std::string& cid, const std::string& user,
                         const std::string& target) {
  v1::UserCommand c;
  auto* r = c.mutable_unfollow();
  r->set_command_id(cid);
  r->set_user_id(user);
  r->set_target_user_id(target);
  return c;
}

v1::UserCommand reply_to(const std::string& cid, const std::string& user,
                         const std::string& text, const std::string& parent) {
  auto c = post_shout(cid, user, text);
  c.mutable_post_shout()->set_reply_to_shout_id(parent);
  return c;
}

v1::UserCommand delete_shout(const std::string& cid, const std::string& user,
                             const std::string& shout) {
  v1::UserCommand c;
  auto* r = c.mutable_delete_shout();
  r->set_command_id(cid);
  r->set_user_id(user);
  r->set_shout_id(shout);
  return c;
}

v1::UserCommand like(const std::string& cid, const std::string& user,
                     const std::string& shout) {
  v1::UserCommand c;
  auto* r = c.mutable_like_shout();
  r->set_command_id(cid);
  r->set_user_id(user);
  r->set_shout_id(shout);
  return c;
}

v1::UserCommand unlike(const std::string& cid, const std::string& user,
                       const std::string& shout) {
  v1::UserCommand c;
  auto* r = c.mutable_unlike_shout();
  r->set_command_id(cid);
  r->set_user_id(user);
  r->set_shout_id(shout);
  return c;
}

v1::UserCommand update_profile(const std::string& cid, const std::string& user,
                               const std::string& display_name,
                               const std::string& bio) {
  v1::UserCommand c;
  auto* r = c.mutable_update_profile();
  r->set_command_id(cid);
  r->set_user_id(user);
  r->set_display_name(display_name);
  r->set_bio(bio);
  return c;
}

v1::UserCommand login(const std::string& cid, const std::string& user,
                      const std::string& password) {
  v1::UserCommand c;
  auto* r = c.mutable_login();
  r->set_command_id(cid);
  r->set_user_id(user);
  r->set_password(password);
  r->set_client_ip("10.0.0.1");
  r->set_user_agent("entity-test");
  return c;
}

const std::string good_password = "correct horse";
const std::string bad_password = "wrong horse!";

// -- reply inspection ---------------------------------------------------------

/// The CommandResult inside a reply (plain or login), or null.
const v1::CommandResult* result_of(const v1::EntityReply& r) {
  if (r.has_result())
    return &r.result();
  if (r.has_login() && r.login().has_result())
    return &r.login().result();
  return nullptr;
}

bool rejected_with(const v1::EntityReply& r, v1::RejectionCode code,
                   const std::string& field) {
  return r.has_rejection() && r.rejection().code() == code
         && r.rejection().field() == field;
}

// -- node and database helpers ------------------------------------------------

auto with_snapshots(int64_t every) {
  return [every](node::node_config& cfg) { cfg.snapshot_every = every; };
}

entity::region_stats region_stats_of(test_node& n) {
  entity::region_stats out;
  caf::scoped_actor self{n.get().system()};
  self->request(n.get().region(), 5s, stats_atom::value)
    .receive([&](entity::region_stats& s) { out = s; },
             [&](caf::error& err) {
               ADD_FAILURE()
                 << "region stats: " << n.get().system().render(err);
             });
  return out;
}

using shoutflow::testing::eventually;

/// Asks the region to passivate `id` and waits until it has stopped.
void passivate_and_wait(test_node& n, const std::string& id) {
  auto before = region_stats_of(n);
  caf::anon_send(n.get().region(), passivate_atom::value, id);
  EXPECT_TRUE(eventually([&] {
    auto s = region_stats_of(n);
    return s.passivated > before.passivated && s.passivating == 0;
  }))
    << "entity " << id << " was not passivated";
}

int64_t event_count(const test_database& db, const std::string& user = {}) {
  if (user.empty())
    return db.scalar<int64_t>("SELECT count(*) FROM events");
  return db.scalar<int64_t>(
    "SELECT count(*) FROM events WHERE persistence_id = 'user|" + user + "'");
}

/// G2: every stream's seq_nrs are exactly 1..n.
void expect_contiguous_histories(const test_database& db) {
  EXPECT_EQ(db.scalar<int64_t>(
              "SELECT count(*) FROM (SELECT persistence_id FROM events"
              " GROUP BY persistence_id"
              " HAVING min(seq_nr) <> 1 OR max(seq_nr) <> count(*)) broken"),
            0)
    << "a user's seq_nrs are not contiguous from 1";
}

struct stored_event {
  int64_t seq_nr;
  std::string type;
  int version;
  std::string payload;
};

std::vector<stored_event> stored_events(const test_database& db,
                                        const std::string& user) {
  pqxx::connection conn{db.url()};
  pqxx::read_transaction tx{conn};
  std::vector<stored_event> out;
  for (const auto& row :
       tx.exec_params("SELECT seq_nr, event_type, event_version, payload"
                      "  FROM events WHERE persistence_id = $1"
                      " ORDER BY seq_nr",
                      "user|" + user))
    out.push_back({row[0].as<int64_t>(), row[1].as<std::string>(),
                   row[2].as<int>(), pqxx::binarystring{row[3]}.str()});
  return out;
}

/// The stored snapshot of `user`, if any: (seq_nr, EntitySnapshot bytes).
std::optional<std::pair<int64_t, std::string>>
stored_snapshot(const test_database& db, const std::string& user) {
  pqxx::connection conn{db.url()};
  pqxx::read_transaction tx{conn};
  auto rows = tx.exec_params(
    "SELECT seq_nr, payload FROM snapshots WHERE persistence_id = $1",
    "user|" + user);
  if (rows.empty())
    return std::nullopt;
  return std::make_pair(rows[0][0].as<int64_t>(),
                        pqxx::binarystring{rows[0][1]}.str());
}

/// Folds the pure evolve() over stored events with seq_nr > after.
user::user_state fold(user::user_state s,
                      const std::vector<stored_event>& events, int64_t after) {
  for (auto& e : events) {
    if (e.seq_nr <= after)
      continue;
    auto decoded = user::decode_event(e.type, e.version, e.payload);
    EXPECT_TRUE(decoded.has_value())
      << "event " << e.seq_nr << " (" << e.type << ") does not decode";
    if (decoded)
      s = user::evolve(std::move(s), *decoded);
  }
  return s;
}

std::string describe(const user::user_state& s) {
  v1::UserState out;
  out.ParseFromString(user::encode_state(s));
  return out.DebugString();
}

// -- a model of one user, driven with random commands -------------------------

/// What the test expects of one user's state; every command's reply is
/// checked against it before it is updated.
struct user_model {
  std::string id;
  int64_t seq = 0;
  std::set<std::string> following;
  std::set<std::string> likes;
  std::string display_name;
  std::string bio;
};

/// Shouts and users the driven user interacts with.
struct world {
  std::vector<std::string> others;
  std::vector<std::string> other_shouts;
  std::vector<std::string> own_live;
  std::vector<std::string> own_deleted;
};

class driver {
public:
  /// `prefix` keeps this driver's command ids apart from any other's.
  driver(test_node& n, user_model& m, world& w, uint32_t seed,
         std::string prefix)
    : n_(&n), m_(m), w_(w), rng_(seed), prefix_(std::move(prefix)) {
  }

  /// Runs `steps` random commands, checking each reply against the model.
  void run(int steps) {
    for (int i = 0; i < steps && !::testing::Test::HasFailure(); ++i)
      step();
  }

  /// Commands that change nothing when the state is what the model says:
  /// each reply is a no-op at the current seq_nr or a fixed rejection. A
  /// state that differs from the model makes one of them append or answer
  /// differently.
  std::vector<v1::UserCommand> probes(const std::string& prefix) const {
    std::vector<v1::UserCommand> out;
    int k = 0;
    auto cid = [&] { return prefix + "-" + std::to_string(++k); };
    for (auto& o : w_.others)
      out.push_back(m_.following.count(o) > 0 ? follow(cid(), m_.id, o)
                                              : unfollow(cid(), m_.id, o));
    std::vector<std::string> shouts = w_.other_shouts;
    shouts.insert(shouts.end(), w_.own_live.begin(), w_.own_live.end());
    shouts.insert(shouts.end(), w_.own_deleted.begin(), w_.own_deleted.end());
    for (auto& s : shouts)
      out.push_back(m_.likes.count(s) > 0 ? like(cid(), m_.id, s)
                                          : unlike(cid(), m_.id, s));
    out.push_back(update_profile(cid(), m_.id, m_.display_name, m_.bio));
    out.push_back(register_user(cid(), m_.id, "other_handle"));
    for (auto& s : w_.own_deleted)
      out.push_back(delete_shout(cid(), m_.id, s));
    return out;
  }

  /// Sends the probes, checks every reply against the model, returns them.
  std::vector<std::string> probe(const std::string& prefix) {
    std::vector<std::string> replies;
    for (auto& c : probes(prefix)) {
      auto r = n_->send(c);
      replies.push_back(r.SerializeAsString());
      SCOPED_TRACE(c.DebugString());
      if (c.has_register_user()) {
        EXPECT_TRUE(
          rejected_with(r, v1::REJECTION_CODE_ALREADY_EXISTS, "user_id"))
          << r.DebugString();
      } else if (c.has_delete_shout()) {
        EXPECT_TRUE(rejected_with(r, v1::REJECTION_CODE_NOT_FOUND, "shout_id"))
          << r.DebugString();
      } else {
        expect_noop(r);
      }
    }
    return replies;
  }

private:
  std::string next_cid() {
    return prefix_ + "-" + m_.id + "-" + std::to_string(++counter_);
  }

  template <class T>
  const T& pick(const std::vector<T>& xs) {
    return xs[std::uniform_int_distribution<std::size_t>(0,
                                                         xs.size() - 1)(rng_)];
  }

  bool chance(int percent) {
    return std::uniform_int_distribution<int>(0, 99)(rng_) < percent;
  }

  const v1::CommandResult* expect_applied(const v1::EntityReply& r) {
    auto* res = result_of(r);
    EXPECT_NE(res, nullptr) << r.DebugString();
    if (res == nullptr)
      return nullptr;
    EXPECT_EQ(res->seq_nr(), m_.seq + 1) << r.DebugString();
    EXPECT_FALSE(res->duplicate());
    EXPECT_EQ(res->user_id(), m_.id);
    EXPECT_GT(res->global_position(), 0);
    ++m_.seq;
    return res;
  }

  void expect_noop(const v1::EntityReply& r) const {
    auto* res = result_of(r);
    ASSERT_NE(res, nullptr) << r.DebugString();
    EXPECT_EQ(res->seq_nr(), m_.seq) << "a no-op must not append";
    EXPECT_FALSE(res->duplicate());
  }

  void step() {
    switch (std::uniform_int_distribution<int>(0, 9)(rng_)) {
      case 0:
      case 1:
        return post();
      case 2:
        return w_.own_live.empty() ? post() : remove();
      case 3:
        return do_follow();
      case 4:
        return do_unfollow();
      case 5:
        return do_like();
      case 6:
        return do_unlike();
      case 7:
        return do_update();
      default:
        return do_login();
    }
  }

  void post() {
    auto text = "shout " + std::to_string(counter_ + 1) + " by " + m_.id;
    std::vector<std::string> parents = w_.other_shouts;
    parents.insert(parents.end(), w_.own_live.begin(), w_.own_live.end());
    if (chance(30) && !w_.own_deleted.empty()) {
      auto r
        = n_->send(reply_to(next_cid(), m_.id, text, pick(w_.own_deleted)));
      EXPECT_TRUE(
        rejected_with(r, v1::REJECTION_CODE_NOT_FOUND, "reply_to_shout_id"))
        << r.DebugString();
      return;
    }
    auto c = chance(30) && !parents.empty()
               ? reply_to(next_cid(), m_.id, text, pick(parents))
               : post_shout(next_cid(), m_.id, text);
    auto r = n_->send(c);
    if (auto* res = expect_applied(r)) {
      EXPECT_TRUE(snowflake_generator::well_formed(res->shout_id()))
        << res->shout_id();
      w_.own_live.push_back(res->shout_id());
    }
  }

  void remove() {
    auto i = std::uniform_int_distribution<std::size_t>(0, w_.own_live.size()
                                                             - 1)(rng_);
    auto shout = w_.own_live[i];
    expect_applied(n_->send(delete_shout(next_cid(), m_.id, shout)));
    w_.own_live.erase(w_.own_live.begin() + static_cast<std::ptrdiff_t>(i));
    w_.own_deleted.push_back(shout);
  }

  void do_follow() {
    auto& t = pick(w_.others);
    auto r = n_->send(follow(next_cid(), m_.id, t));
    if (m_.following.count(t) > 0) {
      expect_noop(r);
    } else {
      expect_applied(r);
      m_.following.insert(t);
    }
  }

  void do_unfollow() {
    auto& t = pick(w_.others);
    auto r = n_->send(unfollow(next_cid(), m_.id, t));
    if (m_.following.count(t) > 0) {
      expect_applied(r);
      m_.following.erase(t);
    } else {
      expect_noop(r);
    }
  }

  std::string any_shout() {
    std::vector<std::string> all = w_.other_shouts;
    all.insert(all.end(), w_.own_live.begin(), w_.own_live.end());
    all.insert(all.end(), w_.own_deleted.begin(), w_.own_deleted.end());
    return pick(all);
  }

  void do_like() {
    auto s = any_shout();
    auto r = n_->send(like(next_cid(), m_.id, s));
    bool deleted = std::find(w_.own_deleted.begin(), w_.own_deleted.end(), s)
                   != w_.own_deleted.end();
    if (m_.likes.count(s) > 0) {
      expect_noop(r);
    } else if (deleted) {
      EXPECT_TRUE(rejected_with(r, v1::REJECTION_CODE_NOT_FOUND, "shout_id"))
        << r.DebugString();
    } else {
      expect_applied(r);
      m_.likes.insert(s);
    }
  }

  void do_unlike() {
    auto s = !m_.likes.empty() && chance(70)
               ? *std::next(m_.likes.begin(),
                            static_cast<std::ptrdiff_t>(
                              std::uniform_int_distribution<std::size_t>(
                                0, m_.likes.size() - 1)(rng_)))
               : any_shout();
    auto r = n_->send(unlike(next_cid(), m_.id, s));
    if (m_.likes.count(s) > 0) {
      expect_applied(r);
      m_.likes.erase(s);
    } else {
      expect_noop(r);
    }
  }

  void do_update() {
    auto name = chance(50) ? m_.display_name
                           : "Name " + std::to_string(rng_() % 5);
    auto bio = chance(50) ? m_.bio : "bio " + std::to_string(rng_() % 5);
    auto r = n_->send(update_profile(next_cid(), m_.id, name, bio));
    if (name == m_.display_name && bio == m_.bio) {
      expect_noop(r);
    } else {
      expect_applied(r);
      m_.display_name = name;
      m_.bio = bio;
    }
  }

  void do_login() {
    // Never five failures in a row: the account must not lock.
    bool ok = failures_ >= 3 || chance(60);
    auto r
      = n_->send(login(next_cid(), m_.id, ok ? good_password : bad_password));
    ASSERT_TRUE(r.has_login()) << r.DebugString();
    EXPECT_EQ(r.login().success(), ok);
    EXPECT_FALSE(r.login().has_locked_until());
    expect_applied(r);
    failures_ = ok ? 0 : failures_ + 1;
  }

  test_node* n_;
  user_model& m_;
  world& w_;
  std::mt19937 rng_;
  std::string prefix_;
  int counter_ = 0;
  int failures_ = 0;
};

/// Registers `main` and `others` (each other user posts two shouts) and
/// returns the model and world for `main`.
std::pair<user_model, world> populate(test_node& n, const std::string& main,
                                      int others) {
  user_model m;
  m.id = main;
  m.display_name = "User " + main; // register_user()'s display name
  world w;
  auto r = n.send(register_user("reg-" + main, main, main));
  EXPECT_TRUE(r.has_result()) << r.DebugString();
  m.seq = 1;
  for (int i = 0; i < others; ++i) {
    auto id = "other" + std::to_string(i);
    auto reg = n.send(register_user("reg-" + id, id, id));
    EXPECT_TRUE(reg.has_result()) << reg.DebugString();
    w.others.push_back(id);
    for (int k = 0; k < 2; ++k) {
      auto p = n.send(post_shout(id + "-p" + std::to_string(k), id, "hi"));
      EXPECT_TRUE(p.has_result()) << p.DebugString();
      w.other_shouts.push_back(p.result().shout_id());
    }
  }
  return {m, w};
}

/// Recovery from the stored snapshot + tail equals a fold of every event.
void expect_snapshot_plus_tail_equals_full_replay(const test_database& db,
                                                  const std::string& user,
                                                  int64_t expected_seq) {
  auto events = stored_events(db, user);
  ASSERT_EQ(static_cast<int64_t>(events.size()), expected_seq);
  auto snap = stored_snapshot(db, user);
  ASSERT_TRUE(snap.has_value()) << "no snapshot stored for " << user;
  v1::EntitySnapshot decoded_snap;
  ASSERT_TRUE(decoded_snap.ParseFromString(snap->second));
  EXPECT_EQ(decoded_snap.seq_nr(), snap->first);
  ASSERT_GT(snap->first, 0);
  ASSERT_LE(snap->first, expected_seq);
  auto from_snapshot = user::decode_state(decoded_snap.state());
  ASSERT_TRUE(from_snapshot.has_value());
  auto recovered = fold(std::move(*from_snapshot), events, snap->first);
  auto replayed = fold(user::user_state{}, events, 0);
  EXPECT_TRUE(recovered == replayed)
    << "snapshot at " << snap->first << " + tail:\n"
    << describe(recovered) << "\nfull replay:\n"
    << describe(replayed);
  // The snapshot's own state equals the replay up to its seq_nr.
  std::vector<stored_event> head(events.begin(), events.begin() + snap->first);
  auto decoded_again = user::decode_state(decoded_snap.state());
  EXPECT_TRUE(*decoded_again == fold(user::user_state{}, head, 0));
  // The snapshot carries the recent-command window, oldest first, bounded.
  EXPECT_GT(decoded_snap.recent_commands_size(), 0);
  EXPECT_LE(decoded_snap.recent_commands_size(), 64);
}

// -- recovery -----------------------------------------------------------------

TEST(persistent_entity, recovery_from_snapshot_and_tail_equals_full_replay) {
  test_database db;
  const std::string main = "main_user";
  std::vector<std::string> snapshot_node_answers;
  user_model m;
  world w;
  {
    test_node n{db.url(), with_snapshots(10)};
    std::tie(m, w) = populate(n, main, 5);
    ASSERT_FALSE(HasFailure());
    driver d{n, m, w, 20240611, "live"};
    for (int round = 0; round < 4; ++round) {
      d.run(80);
      ASSERT_FALSE(HasFailure()) << "round " << round;
      // Passivate, then recover from snapshot + tail: only the tail (fewer
      // than snapshot_every events) is replayed.
      passivate_and_wait(n, main);
      auto spawned = region_stats_of(n).spawned;
      auto replayed = metric_value(n,
                                   "shoutflow_entity_recovered_events_total");
      d.probe("probe" + std::to_string(round));
      ASSERT_FALSE(HasFailure()) << "after recovery in round " << round;
      EXPECT_EQ(region_stats_of(n).spawned, spawned + 1);
      EXPECT_LT(metric_value(n, "shoutflow_entity_recovered_events_total")
                  - replayed,
                10)
        << "recovery replayed more than the tail after the snapshot";
    }
    EXPECT_GT(m.seq, 200) << "the drive appended too little to be meaningful";
    // Make the history end between two snapshots, so there is a tail.
    while (m.seq % 10 == 0 || m.seq % 10 > 7) {
      auto r = n.send(post_shout("tail-" + std::to_string(m.seq), main, "t"));
      ASSERT_TRUE(r.has_result()) << r.DebugString();
      ASSERT_EQ(r.result().seq_nr(), m.seq + 1);
      ++m.seq;
      w.own_live.push_back(r.result().shout_id());
    }
    auto last_snapshot = m.seq / 10 * 10;
    EXPECT_TRUE(eventually([&] {
      auto s = stored_snapshot(db, main);
      return s && s->first == last_snapshot;
    }))
      << "no snapshot at seq_nr " << last_snapshot;
    passivate_and_wait(n, main);
    snapshot_node_answers = d.probe("final");
    ASSERT_FALSE(HasFailure());
  }
  expect_snapshot_plus_tail_equals_full_replay(db, main, m.seq);

  // Recovery always starts from a stored snapshot, so wipe them: the node
  // with snapshot_every = 0 then replays every event from seq_nr 1.
  db.exec("DELETE FROM snapshots");
  {
    test_node n{db.url(), with_snapshots(0)};
    driver d{n, m, w, 1, "replay"};
    auto replayed = metric_value(n, "shoutflow_entity_recovered_events_total");
    auto answers = d.probe("final-replay");
    ASSERT_EQ(answers.size(), snapshot_node_answers.size());
    for (std::size_t i = 0; i < answers.size(); ++i) {
      v1::EntityReply a, b;
      a.ParseFromString(answers[i]);
      b.ParseFromString(snapshot_node_answers[i]);
      EXPECT_EQ(answers[i], snapshot_node_answers[i])
        << "probe " << i << ": full replay answered\n"
        << a.DebugString() << "snapshot recovery answered\n"
        << b.DebugString();
    }
    EXPECT_EQ(metric_value(n, "shoutflow_entity_recovered_events_total")
                - replayed,
              static_cast<double>(m.seq))
      << "the full-replay node did not replay the whole history";
    // Keep going on the full-replay node: same behaviour as live.
    d.run(40);
    EXPECT_EQ(db.scalar<int64_t>("SELECT count(*) FROM snapshots"), 0)
      << "snapshot_every = 0 must never snapshot";
  }
  expect_contiguous_histories(db);
}

// -- G4 idempotency -----------------------------------------------------------

struct tracked_command {
  std::string what;
  v1::UserCommand command;
  v1::EntityReply first;
};

/// Runs `c` expecting success and remembers its first reply.
void track(test_node& n, std::vector<tracked_command>& out,
           const std::string& what, const v1::UserCommand& c) {
  auto r = n.send(c);
  auto* res = result_of(r);
  ASSERT_NE(res, nullptr) << what << ": " << r.DebugString();
  ASSERT_FALSE(res->duplicate()) << what;
  out.push_back({what, c, r});
}

/// Every tracked command retried with its command_id answers its first
/// result with duplicate = true and appends nothing.
void expect_retries_return_first_result(test_node& n, const test_database& db,
                                        const std::vector<tracked_command>& cs,
                                        const std::string& when) {
  SCOPED_TRACE(when);
  auto before = event_count(db);
  for (auto& t : cs) {
    auto r = n.send(t.command);
    auto* res = result_of(r);
    auto* first = result_of(t.first);
    ASSERT_NE(res, nullptr)
      << t.what << " retried " << when << " answered: " << r.DebugString();
    EXPECT_TRUE(res->duplicate()) << t.what << " " << r.DebugString();
    EXPECT_EQ(res->user_id(), first->user_id()) << t.what;
    EXPECT_EQ(res->seq_nr(), first->seq_nr()) << t.what;
    EXPECT_EQ(res->global_position(), first->global_position()) << t.what;
    EXPECT_EQ(res->shout_id(), first->shout_id()) << t.what;
    EXPECT_EQ(r.has_login(), t.first.has_login()) << t.what;
    if (r.has_login() && t.first.has_login()) {
      EXPECT_EQ(r.login().success(), t.first.login().success()) << t.what;
    }
  }
  EXPECT_EQ(event_count(db), before) << "a retry appended events";
}

void idempotency_on_every_path(int64_t snapshot_every) {
  test_database db;
  std::vector<tracked_command> cs;
  std::string doomed;
  {
    test_node n{db.url(), with_snapshots(snapshot_every)};
    track(n, cs, "RegisterUser",
          register_user("g-reg-alice", "alice", "alice"));
    ASSERT_TRUE(n.send(register_user("g-reg-bob", "bob", "bob")).has_result());
    auto bob_post = n.send(post_shout("g-bob-post", "bob", "from bob"));
    ASSERT_TRUE(bob_post.has_result());
    track(n, cs, "PostShout", post_shout("g-post", "alice", "first words"));
    track(n, cs, "Follow", follow("g-follow", "alice", "bob"));
    auto to_delete = n.send(post_shout("g-post-2", "alice", "regrettable"));
    ASSERT_TRUE(to_delete.has_result());
    doomed = to_delete.result().shout_id();
    track(n, cs, "DeleteShout", delete_shout("g-delete", "alice", doomed));
    track(n, cs, "LikeShout",
          like("g-like", "alice", bob_post.result().shout_id()));
    track(n, cs, "Login", login("g-login", "alice", good_password));
    track(n, cs, "failed Login", login("g-login-bad", "alice", bad_password));
    track(n, cs, "reply PostShout",
          reply_to("g-reply", "alice", "re", bob_post.result().shout_id()));
    ASSERT_FALSE(::testing::Test::HasFailure());

    // (a) immediately: the in-memory recent-command window.
    expect_retries_return_first_result(n, db, cs, "immediately");

    // (b) after passivation: the window rebuilt by recovery.
    passivate_and_wait(n, "alice");
    expect_retries_return_first_result(n, db, cs, "after passivation");

    // The same through gRPC: duplicate surfaces in the CommandResult.
    auto stub = n.command_stub();
    v1::CommandResult out;
    auto ctx = context_with_deadline();
    auto status = stub->PostShout(ctx.get(), cs[1].command.post_shout(), &out);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_TRUE(out.duplicate());
    EXPECT_EQ(out.shout_id(), cs[1].first.result().shout_id());
  }
  {
    // (c) after a full node restart.
    test_node n{db.url(), with_snapshots(snapshot_every)};
    expect_retries_return_first_result(n, db, cs, "after a node restart");

    // (d) more than recent_commands (64) later commands push them out of
    // the in-memory window: the journal (dedupe in the write's transaction,
    // or a lookup before a rejection/no-op) must answer.
    for (int i = 0; i < 70; ++i) {
      auto r = n.send(post_shout("g-later-" + std::to_string(i), "alice", "x"));
      ASSERT_TRUE(r.has_result()) << r.DebugString();
    }
    expect_retries_return_first_result(n, db, cs,
                                       "after 70 later commands, in memory");
    // ... and again after a recovery whose window no longer holds them.
    passivate_and_wait(n, "alice");
    expect_retries_return_first_result(n, db, cs,
                                       "after 70 later commands, recovered");
  }
  {
    test_node n{db.url(), with_snapshots(snapshot_every)};
    expect_retries_return_first_result(n, db, cs,
                                       "after 70 later commands and a restart");
  }
  // Nothing was appended by any retry: alice has exactly the events of her
  // first executions and the 70 later posts.
  EXPECT_EQ(event_count(db, "alice"), 9 + 70);
  EXPECT_EQ(db.scalar<int64_t>("SELECT count(*) FROM events"
                               " WHERE command_id = 'g-post'"),
            1);
  EXPECT_EQ(db.scalar<int64_t>("SELECT count(*) FROM claims"
                               " WHERE namespace = 'shout'"
                               "   AND owner_id = 'alice'"),
            1 + 1 + 70) // g-post, g-reply, the later posts (g-post-2 deleted)
    << "a retried PostShout must not claim a second shout id";
  expect_contiguous_histories(db);
}

TEST(persistent_entity, idempotency_with_snapshots) {
  idempotency_on_every_path(10);
}

TEST(persistent_entity, idempotency_without_snapshots) {
  idempotency_on_every_path(0);
}

// -- G2 under concurrency -----------------------------------------------------

TEST(persistent_entity, concurrent_senders_to_one_user_lose_nothing) {
  test_database db;
  test_node n{db.url(), with_snapshots(10)};
  ASSERT_TRUE(n.send(register_user("reg-hot", "hot", "hot")).has_result());
  ASSERT_TRUE(n.send(register_user("reg-peer", "peer", "peer")).has_result());
  constexpr int threads = 8;
  constexpr int per_thread = 30;
  std::vector<std::vector<v1::EntityReply>> replies(threads);
  std::atomic<bool> go{false};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      while (!go.load())
        std::this_thread::yield();
      auto stub = n.command_stub();
      for (int i = 0; i < per_thread; ++i) {
        auto cid = "t" + std::to_string(t) + "-" + std::to_string(i);
        if (t % 2 == 0) {
          replies[t].push_back(n.send(post_shout(cid, "hot", cid)));
        } else {
          // Half of the senders go through gRPC.
          v1::PostShoutRequest req;
          req.set_command_id(cid);
          req.set_user_id("hot");
          req.set_text(cid);
          v1::CommandResult out;
          auto ctx = context_with_deadline();
          auto status = stub->PostShout(ctx.get(), req, &out);
          v1::EntityReply r;
          if (status.ok())
            *r.mutable_result() = out;
          else
            r.mutable_rejection()->set_message(status.error_message());
          replies[t].push_back(r);
        }
      }
    });
  go = true;
  for (auto& t : ts)
    t.join();
  std::set<int64_t> seqs;
  for (auto& rs : replies)
    for (auto& r : rs) {
      ASSERT_TRUE(r.has_result()) << r.DebugString();
      EXPECT_FALSE(r.result().duplicate());
      seqs.insert(r.result().seq_nr());
    }
  EXPECT_EQ(seqs.size(), static_cast<std::size_t>(threads * per_thread));
  EXPECT_EQ(*seqs.begin(), 2);
  EXPECT_EQ(*seqs.rbegin(), 1 + threads * per_thread);
  EXPECT_EQ(event_count(db, "hot"), 1 + threads * per_thread);
  EXPECT_EQ(db.scalar<int64_t>("SELECT count(DISTINCT command_id) FROM events"
                               " WHERE persistence_id = 'user|hot'"),
            1 + threads * per_thread);
  expect_contiguous_histories(db);
}

// -- precondition retries -----------------------------------------------------

/// Releases `parties` threads together, round after round.
class round_barrier {
public:
  explicit round_barrier(int parties) : parties_(parties) {
  }

  void arrive_and_wait() {
    std::unique_lock<std::mutex> lock{mx_};
    auto round = round_;
    if (++waiting_ == parties_) {
      waiting_ = 0;
      ++round_;
      cv_.notify_all();
      return;
    }
    cv_.wait(lock, [&] { return round_ != round; });
  }

private:
  std::mutex mx_;
  std::condition_variable cv_;
  int parties_;
  int waiting_ = 0;
  uint64_t round_ = 0;
};

/// Likes and replies race with the deletion of their shouts. A fact read
/// before the delete committed is restated as a guard; the journal refuses
/// the stale write, the entity re-reads the fact and answers NOT_FOUND. So a
/// like or reply either committed before the delete, or is NOT_FOUND —
/// never applied to a deleted shout, never a "contention" failure.
TEST(persistent_entity, likes_and_replies_racing_a_delete_stay_consistent) {
  test_database db;
  test_node n{db.url()};
  constexpr int shouts = 20;
  constexpr int likers = 6;
  ASSERT_TRUE(n.send(register_user("r-auth", "auth", "auth")).has_result());
  for (int l = 0; l < likers; ++l) {
    auto id = "liker" + std::to_string(l);
    ASSERT_TRUE(n.send(register_user("r-" + id, id, id)).has_result());
  }
  std::vector<std::string> ids;
  for (int i = 0; i < shouts; ++i) {
    auto r = n.send(post_shout("p" + std::to_string(i), "auth", "doomed"));
    ASSERT_TRUE(r.has_result());
    ids.push_back(r.result().shout_id());
  }
  // Each round, the author deletes shout i while every liker likes it or
  // replies to it: all released together by a barrier.
  round_barrier barrier{likers + 1};
  std::atomic<int> applied{0};
  std::atomic<int> not_found{0};
  std::vector<std::thread> ts;
  ts.emplace_back([&] {
    for (int i = 0; i < shouts; ++i) {
      barrier.arrive_and_wait();
      auto r = n.send(delete_shout("d" + std::to_string(i), "auth", ids[i]));
      EXPECT_TRUE(r.has_result()) << r.DebugString();
    }
  });
  for (int l = 0; l < likers; ++l)
    ts.emplace_back([&, l] {
      auto id = "liker" + std::to_string(l);
      for (int i = 0; i < shouts; ++i) {
        barrier.arrive_and_wait();
        auto cid = id + "-" + std::to_string(i);
        bool reply = (i + l) % 2 == 0;
        auto r = n.send(reply ? reply_to(cid, id, "re", ids[i])
                              : like(cid, id, ids[i]));
        if (r.has_result()) {
          ++applied;
        } else if (rejected_with(r, v1::REJECTION_CODE_NOT_FOUND,
                                 reply ? "reply_to_shout_id" : "shout_id")) {
          ++not_found;
        } else {
          ADD_FAILURE() << cid << ": " << r.DebugString();
        }
      }
    });
  for (auto& t : ts)
    t.join();
  EXPECT_EQ(applied + not_found, likers * shouts);

  // In the journal: every like or reply of a shout precedes its deletion.
  std::map<std::string, int64_t> deleted_at;
  std::vector<std::pair<std::string, int64_t>> uses;
  {
    pqxx::connection conn{db.url()};
    pqxx::read_transaction tx{conn};
    for (const auto& row :
         tx.exec("SELECT event_type, event_version, payload, global_position"
                 "  FROM events WHERE event_type IN"
                 "  ('ShoutDeleted', 'ShoutLiked', 'ShoutPosted')")) {
      auto e = user::decode_event(row[0].as<std::string>(), row[1].as<int>(),
                                  pqxx::binarystring{row[2]}.str());
      ASSERT_TRUE(e.has_value());
      auto pos = row[3].as<int64_t>();
      if (e->has_shout_deleted())
        deleted_at[e->shout_deleted().shout_id()] = pos;
      else if (e->has_shout_liked())
        uses.emplace_back(e->shout_liked().shout_id(), pos);
      else if (!e->shout_posted().reply_to_shout_id().empty())
        uses.emplace_back(e->shout_posted().reply_to_shout_id(), pos);
    }
  }
  EXPECT_EQ(deleted_at.size(), static_cast<std::size_t>(shouts));
  EXPECT_EQ(uses.size(), static_cast<std::size_t>(applied.load()));
  for (auto& [shout, pos] : uses) {
    ASSERT_EQ(deleted_at.count(shout), 1u);
    EXPECT_LT(pos, deleted_at[shout])
      << "a like or reply of " << shout << " was written after its deletion";
  }
  expect_contiguous_histories(db);
}

// -- writes whose outcome is unknown ------------------------------------------

/// A write that outlives the entity's I/O timeout is in doubt: the entity
/// answers UNAVAILABLE and stops, and the next incarnation trusts only the
/// journal. Here the events table is locked so writes hang until the lock
/// goes; then every command retried with its command id applies exactly
/// once and the history stays single.
TEST(persistent_entity, in_doubt_writes_stop_the_entity_and_apply_once) {
  test_database db;
  test_node n{db.url(), [](node::node_config& cfg) {
                cfg.request_timeout = 300ms; // entity I/O timeout: 600 ms
              }};
  ASSERT_TRUE(n.send(register_user("r", "doubt", "doubt")).has_result());
  ASSERT_TRUE(n.send(post_shout("p0", "doubt", "before")).has_result());
  auto a = post_shout("A", "doubt", "in doubt");
  auto b = post_shout("B", "doubt", "queued behind");
  {
    pqxx::connection locker{db.url()};
    pqxx::work lock{locker};
    lock.exec("LOCK TABLE events IN EXCLUSIVE MODE");
    for (auto* c : {&a, &a, &b}) {
      auto started = std::chrono::steady_clock::now();
      auto r = n.send(*c);
      EXPECT_TRUE(r.has_rejection()
                  && r.rejection().code() == v1::REJECTION_CODE_UNAVAILABLE)
        << r.DebugString();
      EXPECT_LT(std::chrono::steady_clock::now() - started, 2s);
    }
    lock.commit();
  }
  v1::EntityReply ra;
  ASSERT_TRUE(eventually(
    [&] {
      ra = n.send(a);
      return ra.has_result();
    },
    10s))
    << ra.DebugString();
  // B may meet an incarnation that recovered before A's late commit; it
  // must then answer UNAVAILABLE (a conflict), and a retry applies it.
  v1::EntityReply rb;
  ASSERT_TRUE(eventually(
    [&] {
      rb = n.send(b);
      return rb.has_result();
    },
    10s))
    << rb.DebugString();
  EXPECT_EQ(ra.result().seq_nr(), 3);
  EXPECT_EQ(rb.result().seq_nr(), 4);
  EXPECT_EQ(event_count(db, "doubt"), 4);
  EXPECT_EQ(db.scalar<int64_t>("SELECT count(*) FROM events"
                               " WHERE command_id IN ('A', 'B')"),
            2);
  // Exactly one shout claim per applied PostShout: the losing attempts'
  // claims were rolled back with their transactions.
  EXPECT_EQ(db.scalar<int64_t>("SELECT count(*) FROM claims"
                               " WHERE namespace = 'shout'"),
            3);
  auto again = n.send(a);
  ASSERT_TRUE(again.has_result());
  EXPECT_TRUE(again.result().duplicate());
  EXPECT_EQ(again.result().shout_id(), ra.result().shout_id());
  expect_contiguous_histories(db);
}

/// An in-doubt write that commits late must not leave a live incarnation
/// deciding on a state without it. Here a Follow's write hangs (events
/// locked) past the entity's I/O timeout; the next incarnation recovers
/// while it is still pending; then the Follow commits. An Unfollow
/// acknowledged after that must really unfollow (or answer UNAVAILABLE so
/// the client retries) — a success that leaves the user following in the
/// journal is a lost command.
TEST(persistent_entity, late_commit_of_in_doubt_write_is_not_ignored) {
  test_database db;
  test_node n{db.url(), [](node::node_config& cfg) {
                cfg.request_timeout = 300ms; // entity I/O timeout: 600 ms
              }};
  ASSERT_TRUE(n.send(register_user("r-u", "lateu", "lateu")).has_result());
  ASSERT_TRUE(n.send(register_user("r-v", "latev", "latev")).has_result());
  {
    pqxx::connection locker{db.url()};
    pqxx::work lock{locker};
    lock.exec("LOCK TABLE events IN EXCLUSIVE MODE");
    auto f = n.send(follow("F1", "lateu", "latev"));
    ASSERT_TRUE(f.has_rejection()
                && f.rejection().code() == v1::REJECTION_CODE_UNAVAILABLE)
      << "the follow's write should be in doubt: " << f.DebugString();
    // A fresh incarnation must not recover while F1 may still commit: its
    // recovery is fenced behind the journal, so U0 times out (UNAVAILABLE)
    // instead of being decided on a history without F1.
    auto u0 = n.send(unfollow("U0", "lateu", "latev"));
    EXPECT_TRUE(u0.has_rejection()
                && u0.rejection().code() == v1::REJECTION_CODE_UNAVAILABLE)
      << "an incarnation answered while an earlier write was in doubt: "
      << u0.DebugString();
    lock.commit();
  }
  // The in-doubt write commits after all.
  ASSERT_TRUE(eventually([&] {
    return db.scalar<int64_t>("SELECT count(*) FROM events"
                              " WHERE command_id = 'F1'")
           == 1;
  }))
    << "the in-doubt follow never committed";

  auto u1 = n.send(unfollow("U1", "lateu", "latev"));
  if (u1.has_rejection()) {
    // UNAVAILABLE is a correct answer: the client retries with U1.
    EXPECT_EQ(u1.rejection().code(), v1::REJECTION_CODE_UNAVAILABLE)
      << u1.DebugString();
    ASSERT_TRUE(eventually([&] {
      u1 = n.send(unfollow("U1", "lateu", "latev"));
      return u1.has_result();
    }))
      << u1.DebugString();
  }
  auto journal_state = fold(user::user_state{}, stored_events(db, "lateu"), 0);
  EXPECT_EQ(journal_state.following.count("latev"), 0u)
    << "Unfollow U1 was acknowledged (" << u1.ShortDebugString()
    << ") but the journal still has lateu following latev: the live entity "
       "decided on a state that misses the late commit of F1";
  expect_contiguous_histories(db);
}

// -- a broken history is refused, never extended ------------------------------

TEST(persistent_entity, broken_history_is_refused_not_extended) {
  test_database db;
  {
    test_node n{db.url(), with_snapshots(2)};
    for (auto u : {"gap", "garbled", "badsnap"}) {
      ASSERT_TRUE(
        n.send(register_user(std::string{"r-"} + u, u, u)).has_result());
      for (int i = 0; i < 4; ++i)
        ASSERT_TRUE(
          n.send(post_shout(std::string{u} + std::to_string(i), u, "x"))
            .has_result());
    }
    EXPECT_TRUE(eventually([&] {
      return db.scalar<int64_t>("SELECT count(*) FROM snapshots"
                                " WHERE seq_nr = 4")
             == 3;
    }));
  }
  // Snapshots would hide the damage below them: keep one only for badsnap.
  db.exec("DELETE FROM snapshots WHERE persistence_id <> 'user|badsnap'");
  db.exec("DELETE FROM events WHERE persistence_id = 'user|gap'"
          " AND seq_nr = 3");
  db.exec("UPDATE events SET payload = '\\x0aff'"
          " WHERE persistence_id = 'user|garbled' AND seq_nr = 2");
  db.exec("UPDATE snapshots SET payload = '\\x0aff'"
          " WHERE persistence_id = 'user|badsnap'");
  auto before = event_count(db);
  test_node n{db.url(), with_snapshots(2)};
  for (auto u : {"gap", "garbled", "badsnap"}) {
    SCOPED_TRACE(u);
    for (int attempt = 0; attempt < 2; ++attempt) {
      auto r = n.send(post_shout(std::string{"after-"} + u, u, "x"));
      EXPECT_TRUE(r.has_rejection()
                  && r.rejection().code() == v1::REJECTION_CODE_INTERNAL)
        << r.DebugString();
    }
  }
  EXPECT_EQ(event_count(db), before);
}

// -- G4 for commands that appended nothing ------------------------------------

/// A no-op (following someone already followed) is a success. Retried with
/// its command_id, G4 and the entity's contract ("a retry returns the first
/// result however old it is, and appends nothing") require its first result
/// with duplicate = true — and no event, even after the state changed.
TEST(persistent_entity, retried_noop_returns_first_result_and_appends_nothing) {
  test_database db;
  test_node n{db.url()};
  ASSERT_TRUE(n.send(register_user("r-a", "nia", "nia")).has_result());
  ASSERT_TRUE(n.send(register_user("r-b", "nib", "nib")).has_result());
  ASSERT_TRUE(n.send(follow("f1", "nia", "nib")).has_result());
  auto first = n.send(follow("f2", "nia", "nib"));
  ASSERT_TRUE(first.has_result()) << first.DebugString();
  ASSERT_EQ(first.result().seq_nr(), 2) << "f2 is a no-op";

  ASSERT_TRUE(n.send(post_shout("p1", "nia", "later")).has_result());
  auto retry = n.send(follow("f2", "nia", "nib"));
  ASSERT_TRUE(retry.has_result()) << retry.DebugString();
  EXPECT_TRUE(retry.result().duplicate())
    << "a retried no-op is not reported as a duplicate";
  EXPECT_EQ(retry.result().seq_nr(), first.result().seq_nr())
    << "a retried no-op does not return its first result";

  // The user unfollows; a late retry of f2 must not follow again.
  ASSERT_TRUE(n.send(unfollow("u1", "nia", "nib")).has_result());
  auto events = event_count(db, "nia");
  auto late = n.send(follow("f2", "nia", "nib"));
  ASSERT_TRUE(late.has_result()) << late.DebugString();
  EXPECT_EQ(event_count(db, "nia"), events)
    << "retrying an already answered command (f2) appended an event";
  EXPECT_EQ(late.result().seq_nr(), first.result().seq_nr());
}

// -- cross-entity facts -------------------------------------------------------

TEST(persistent_entity, cross_entity_facts) {
  test_database db;
  test_node n{db.url()};
  ASSERT_TRUE(n.send(register_user("r1", "ann", "Ann_Handle")).has_result());
  ASSERT_TRUE(n.send(register_user("r2", "ben", "ben")).has_result());

  auto r = n.send(follow("f1", "ann", "nobody"));
  EXPECT_TRUE(rejected_with(r, v1::REJECTION_CODE_NOT_FOUND, "target_user_id"))
    << r.DebugString();

  auto ben_post = n.send(post_shout("p1", "ben", "ben's"));
  ASSERT_TRUE(ben_post.has_result());
  auto shout = ben_post.result().shout_id();

  r = n.send(delete_shout("d1", "ann", shout));
  EXPECT_TRUE(
    rejected_with(r, v1::REJECTION_CODE_PERMISSION_DENIED, "shout_id"))
    << r.DebugString();

  ASSERT_TRUE(n.send(like("l0", "ann", shout)).has_result());
  ASSERT_TRUE(n.send(unlike("u0", "ann", shout)).has_result());
  ASSERT_TRUE(n.send(delete_shout("d2", "ben", shout)).has_result());
  r = n.send(like("l1", "ann", shout));
  EXPECT_TRUE(rejected_with(r, v1::REJECTION_CODE_NOT_FOUND, "shout_id"))
    << r.DebugString();
  r = n.send(delete_shout("d3", "ben", shout));
  EXPECT_TRUE(rejected_with(r, v1::REJECTION_CODE_NOT_FOUND, "shout_id"))
    << r.DebugString();
  r = n.send(reply_to("rp1", "ann", "re", shout));
  EXPECT_TRUE(
    rejected_with(r, v1::REJECTION_CODE_NOT_FOUND, "reply_to_shout_id"))
    << r.DebugString();
  r = n.send(reply_to("rp2", "ann", "re", snowflake_generator::encode(424242)));
  EXPECT_TRUE(
    rejected_with(r, v1::REJECTION_CODE_NOT_FOUND, "reply_to_shout_id"))
    << r.DebugString();
  r = n.send(like("l2", "ann", snowflake_generator::encode(424243)));
  EXPECT_TRUE(rejected_with(r, v1::REJECTION_CODE_NOT_FOUND, "shout_id"))
    << r.DebugString();

  // A reply to a live shout records its author.
  auto live = n.send(post_shout("p2", "ben", "still here"));
  ASSERT_TRUE(live.has_result());
  r = n.send(reply_to("rp3", "ann", "re", live.result().shout_id()));
  EXPECT_TRUE(r.has_result()) << r.DebugString();

  // Login by handle, in any letter case, reaches the handle's owner.
  auto stub = n.command_stub();
  for (auto handle : {"Ann_Handle", "ann_handle", "ANN_HANDLE"}) {
    v1::LoginRequest req;
    req.set_command_id(std::string{"lh-"} + handle);
    req.set_handle(handle);
    req.set_password(good_password);
    v1::LoginResult out;
    auto ctx = context_with_deadline();
    auto status = stub->Login(ctx.get(), req, &out);
    ASSERT_TRUE(status.ok()) << handle << ": " << status.error_message();
    EXPECT_TRUE(out.success()) << handle;
    EXPECT_EQ(out.result().user_id(), "ann") << handle;
  }
  v1::LoginRequest wrong;
  wrong.set_command_id("lh-wrong");
  wrong.set_handle("ANN_handle");
  wrong.set_password(bad_password);
  v1::LoginResult wrong_out;
  auto wrong_ctx = context_with_deadline();
  auto wrong_status = stub->Login(wrong_ctx.get(), wrong, &wrong_out);
  ASSERT_TRUE(wrong_status.ok()) << wrong_status.error_message();
  EXPECT_FALSE(wrong_out.success());

  v1::LoginRequest unknown;
  unknown.set_command_id("lh-unknown");
  unknown.set_handle("no_such_handle");
  unknown.set_password(good_password);
  v1::LoginResult unknown_out;
  auto unknown_ctx = context_with_deadline();
  auto unknown_status = stub->Login(unknown_ctx.get(), unknown, &unknown_out);
  EXPECT_EQ(unknown_status.error_code(), grpc::StatusCode::NOT_FOUND)
    << unknown_status.error_message();
  EXPECT_NE(unknown_status.error_message().find("handle"), std::string::npos)
    << unknown_status.error_message();

  // 3 successful logins + 1 failed one by handle, all on ann's stream.
  EXPECT_EQ(db.scalar<int64_t>("SELECT count(*) FROM events"
                               " WHERE persistence_id = 'user|ann'"
                               "   AND event_type IN ('UserLoggedIn',"
                               "                      'LoginFailed')"),
            4);
  expect_contiguous_histories(db);
}

} // namespace
