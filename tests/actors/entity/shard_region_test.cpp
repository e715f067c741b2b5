// Integration tests of the shard region hosting user entities on an
// in-process node with real PostgreSQL: passivation after idle time, the cap
// on active entities, and commands that arrive while an entity passivates
// (buffered, then delivered to a fresh incarnation — none lost, none applied
// twice).

#include <gtest/gtest.h>

#include <caf/all.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/test_db.hpp"
#include "tests/support/test_node.hpp"
#include "tests/support/wait.hpp"

using namespace shoutflow;
using namespace shoutflow::testing;
using namespace std::chrono_literals;

namespace {

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

v1::EntityReply parse_reply(const std::string& bytes) {
  v1::EntityReply r;
  if (!r.ParseFromString(bytes))
    r.mutable_rejection()->set_message("malformed reply");
  return r;
}

std::string envelope(const v1::UserCommand& c, const std::string& id) {
  v1::EntityCommand e;
  e.set_entity_id(id);
  *e.mutable_user() = c;
  return e.SerializeAsString();
}

int64_t events_of(const test_database& db, const std::string& user) {
  return db.scalar<int64_t>(
    "SELECT count(*) FROM events WHERE persistence_id = 'user|" + user + "'");
}

void expect_contiguous_histories(const test_database& db) {
  EXPECT_EQ(db.scalar<int64_t>(
              "SELECT count(*) FROM (SELECT persistence_id FROM events"
              " GROUP BY persistence_id"
              " HAVING min(seq_nr) <> 1 OR max(seq_nr) <> count(*)) broken"),
            0)
    << "a user's seq_nrs are not contiguous from 1";
}

std::string user_name(int i) {
  return "u" + std::to_string(i);
}

// -- passivation after idle time ----------------------------------------------

TEST(shard_region, idle_entities_passivate_and_come_back_intact) {
  test_database db;
  test_node n{db.url(), [](node::node_config& cfg) {
                cfg.passivate_after = 50ms;
                cfg.snapshot_every = 3;
              }};
  ASSERT_TRUE(n.send(register_user("r-a", "ida", "ida")).has_result());
  ASSERT_TRUE(n.send(register_user("r-b", "idb", "idb")).has_result());
  int64_t seq = 1;
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    // Taken before the command: under load the entity may passivate again
    // (50 ms) before the reply has even been read.
    auto before = region_stats_of(n);
    auto r = n.send(
      round == 0 ? follow("f", "ida", "idb")
                 : post_shout("p" + std::to_string(round), "ida", "hello"));
    ASSERT_TRUE(r.has_result()) << r.DebugString();
    EXPECT_EQ(r.result().seq_nr(), ++seq);

    ASSERT_TRUE(eventually([&] { return region_stats_of(n).active == 0; }, 5s))
      << "idle entities were not passivated within 5 s (passivate_after "
         "50 ms)";
    auto after = region_stats_of(n);
    EXPECT_GE(after.passivated, before.passivated + 1);
    EXPECT_EQ(after.passivating, 0u);

    // State intact: following idb is a no-op at the same seq_nr, the
    // registration is remembered, and the next command continues the
    // history.
    auto again
      = n.send(follow("f-again-" + std::to_string(round), "ida", "idb"));
    ASSERT_TRUE(again.has_result()) << again.DebugString();
    EXPECT_EQ(again.result().seq_nr(), seq);
    auto dup = n.send(register_user("r-a", "ida", "ida"));
    ASSERT_TRUE(dup.has_result()) << dup.DebugString();
    EXPECT_TRUE(dup.result().duplicate());
    EXPECT_EQ(dup.result().seq_nr(), 1);
    EXPECT_GT(region_stats_of(n).spawned, after.spawned);
  }
  EXPECT_EQ(events_of(db, "ida"), seq);
  expect_contiguous_histories(db);
}

// -- the cap on active entities -----------------------------------------------

TEST(shard_region, active_entities_stay_within_the_cap) {
  constexpr std::size_t cap = 10;
  constexpr int users = 100;
  test_database db;
  test_node n{db.url(),
              [](node::node_config& cfg) { cfg.max_active_entities = cap; }};
  auto within_cap = [&] {
    auto s = region_stats_of(n);
    // Entities not yet asked to passivate never exceed the cap; those
    // passivating are finishing their queue.
    EXPECT_LE(s.active - s.passivating, cap)
      << "active " << s.active << ", passivating " << s.passivating;
  };
  for (int i = 0; i < users; ++i) {
    auto r = n.send(
      register_user("r" + std::to_string(i), user_name(i), user_name(i)));
    ASSERT_TRUE(r.has_result()) << r.DebugString();
    within_cap();
  }
  // Touch every user again, from several threads at once: each follows the
  // next user.
  std::vector<std::thread> ts;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&, t] {
      for (int i = t; i < users; i += 4) {
        auto r = n.send(follow("f" + std::to_string(i), user_name(i),
                               user_name((i + 1) % users)));
        if (!r.has_result() || r.result().seq_nr() != 2) {
          ADD_FAILURE() << user_name(i) << ": " << r.DebugString();
          ++failures;
        }
      }
    });
  for (auto& t : ts)
    t.join();
  ASSERT_EQ(failures.load(), 0);
  ASSERT_TRUE(eventually([&] { return region_stats_of(n).passivating == 0; }));
  auto settled = region_stats_of(n);
  EXPECT_LE(settled.active, cap);
  EXPECT_GE(settled.passivated, static_cast<uint64_t>(2 * users - cap));
  EXPECT_GE(settled.spawned, static_cast<uint64_t>(2 * users));

  // Every user's state survived its passivations.
  for (int i = 0; i < users; ++i) {
    SCOPED_TRACE(user_name(i));
    auto r = n.send(follow("f-again" + std::to_string(i), user_name(i),
                           user_name((i + 1) % users)));
    ASSERT_TRUE(r.has_result()) << r.DebugString();
    EXPECT_EQ(r.result().seq_nr(), 2) << "following must be remembered";
    EXPECT_FALSE(r.result().duplicate());
    auto dup = n.send(follow("f" + std::to_string(i), user_name(i),
                             user_name((i + 1) % users)));
    ASSERT_TRUE(dup.has_result()) << dup.DebugString();
    EXPECT_TRUE(dup.result().duplicate());
    within_cap();
  }
  EXPECT_EQ(db.scalar<int64_t>("SELECT count(*) FROM events"), 2 * users);
  expect_contiguous_histories(db);
}

// -- commands arriving during passivation -------------------------------------

/// Sends PostShouts for `user` straight to the region from one actor, in
/// `rounds` rounds: `half` commands, a request to passivate the entity (which
/// is still busy with them), `half` more (which the region must buffer),
/// then waits for every reply of the round. Returns the replies in sending
/// order.
std::vector<v1::EntityReply>
fire_with_passivations(test_node& n, const std::string& user, int rounds,
                       int half, const std::string& prefix) {
  auto region = n.get().region();
  caf::scoped_actor self{n.get().system()};
  std::vector<v1::EntityReply> replies;
  int next = 0;
  for (int round = 0; round < rounds; ++round) {
    using handle = decltype(self->request(region, 30s, cmd_atom::value,
                                          std::string{}, std::string{}));
    std::vector<handle> pending;
    auto fire = [&] {
      auto cid = prefix + std::to_string(next++);
      pending.push_back(
        self->request(region, 30s, cmd_atom::value, user,
                      envelope(post_shout(cid, user, cid), user)));
    };
    for (int i = 0; i < half; ++i)
      fire();
    self->send(region, passivate_atom::value, user);
    for (int i = 0; i < half; ++i)
      fire();
    for (auto& h : pending)
      h.receive(
        [&](std::string& bytes) { replies.push_back(parse_reply(bytes)); },
        [&](caf::error& err) {
          v1::EntityReply r;
          r.mutable_rejection()->set_message(n.get().system().render(err));
          replies.push_back(r);
        });
  }
  return replies;
}

TEST(shard_region, commands_during_passivation_are_buffered_not_lost) {
  test_database db;
  test_node n{db.url(), [](node::node_config& cfg) { cfg.snapshot_every = 7; }};
  ASSERT_TRUE(n.send(register_user("r", "busy", "busy")).has_result());
  constexpr int rounds = 5;
  constexpr int half = 20;
  constexpr int count = rounds * 2 * half;
  auto before = region_stats_of(n);
  auto replies = fire_with_passivations(n, "busy", rounds, half, "c");
  ASSERT_EQ(replies.size(), static_cast<std::size_t>(count));
  std::set<int64_t> seqs;
  for (std::size_t i = 0; i < replies.size(); ++i) {
    ASSERT_TRUE(replies[i].has_result())
      << "command " << i << ": " << replies[i].DebugString();
    EXPECT_FALSE(replies[i].result().duplicate()) << "command " << i;
    seqs.insert(replies[i].result().seq_nr());
  }
  // One actor's messages to the region keep their order, and the region
  // hands them to the entity (or buffers them) in that order.
  for (std::size_t i = 1; i < replies.size(); ++i)
    EXPECT_EQ(replies[i].result().seq_nr(),
              replies[i - 1].result().seq_nr() + 1)
      << "command " << i << " applied out of order";
  EXPECT_EQ(seqs.size(), static_cast<std::size_t>(count));
  EXPECT_EQ(*seqs.begin(), 2);
  EXPECT_EQ(*seqs.rbegin(), count + 1);
  ASSERT_TRUE(eventually([&] { return region_stats_of(n).passivating == 0; }));
  auto after = region_stats_of(n);
  EXPECT_EQ(after.passivated - before.passivated, static_cast<uint64_t>(rounds))
    << "the test did not passivate the entity in every round";
  EXPECT_EQ(after.spawned - before.spawned, static_cast<uint64_t>(rounds));

  EXPECT_EQ(events_of(db, "busy"), count + 1);
  EXPECT_EQ(db.scalar<int64_t>("SELECT count(DISTINCT command_id) FROM events"
                               " WHERE persistence_id = 'user|busy'"),
            count + 1);
  expect_contiguous_histories(db);

  // Retrying the whole burst (again with passivations) applies nothing.
  auto retries = fire_with_passivations(n, "busy", rounds, half, "c");
  for (std::size_t i = 0; i < retries.size(); ++i) {
    ASSERT_TRUE(retries[i].has_result()) << retries[i].DebugString();
    EXPECT_TRUE(retries[i].result().duplicate());
    EXPECT_EQ(retries[i].result().seq_nr(), replies[i].result().seq_nr());
  }
  EXPECT_EQ(events_of(db, "busy"), count + 1);
}

TEST(shard_region, passivation_races_with_many_senders) {
  test_database db;
  test_node n{db.url(), [](node::node_config& cfg) {
                cfg.snapshot_every = 5;
                cfg.passivate_after = 20ms;
              }};
  constexpr int users = 4;
  constexpr int senders = 4;
  constexpr int per_sender = 40;
  for (int u = 0; u < users; ++u)
    ASSERT_TRUE(
      n.send(register_user("r" + std::to_string(u), user_name(u), user_name(u)))
        .has_result());
  std::atomic<bool> stop{false};
  // A thread that keeps passivating every entity while senders work.
  std::thread passivator([&] {
    while (!stop.load()) {
      for (int u = 0; u < users; ++u)
        caf::anon_send(n.get().region(), passivate_atom::value, user_name(u));
      std::this_thread::sleep_for(2ms);
    }
  });
  std::vector<std::thread> ts;
  std::vector<std::vector<v1::EntityReply>> replies(senders);
  for (int s = 0; s < senders; ++s)
    ts.emplace_back([&, s] {
      for (int i = 0; i < per_sender; ++i) {
        auto user = user_name(i % users);
        auto cid = "s" + std::to_string(s) + "-" + std::to_string(i);
        replies[s].push_back(n.send(post_shout(cid, user, cid)));
      }
    });
  for (auto& t : ts)
    t.join();
  stop = true;
  passivator.join();
  for (auto& rs : replies)
    for (auto& r : rs)
      EXPECT_TRUE(r.has_result()) << r.DebugString();
  EXPECT_EQ(db.scalar<int64_t>("SELECT count(*) FROM events"),
            users + senders * per_sender);
  EXPECT_EQ(db.scalar<int64_t>("SELECT count(DISTINCT command_id) FROM events"),
            users + senders * per_sender);
  expect_contiguous_histories(db);
  EXPECT_GT(region_stats_of(n).passivated, 0u);
}

} // namespace
