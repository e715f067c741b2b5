// Many users race to register one handle (in different letter cases): the
// claim written in the event's transaction lets exactly one win; every other
// registration is ALREADY_EXISTS naming `handle` — never a second owner,
// never a lost or extra UserRegistered event.

#include <gtest/gtest.h>

#include <caf/all.hpp>

#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <pqxx/pqxx>

#include "tests/support/test_db.hpp"
#include "tests/support/test_node.hpp"
#include "tests/support/wait.hpp"

using namespace shoutflow;
using namespace shoutflow::testing;
using namespace std::chrono_literals;

namespace {

/// Releases every waiting thread at once, so requests really overlap.
class start_gate {
public:
  void wait() {
    std::unique_lock<std::mutex> lock{mx_};
    cv_.wait(lock, [&] { return open_; });
  }
  void open() {
    {
      std::lock_guard<std::mutex> lock{mx_};
      open_ = true;
    }
    cv_.notify_all();
  }

private:
  std::mutex mx_;
  std::condition_variable cv_;
  bool open_ = false;
};

/// `handle` with each letter's case chosen at random.
std::string random_case(const std::string& handle, std::mt19937& rng) {
  std::string out = handle;
  for (auto& c : out)
    if (std::isalpha(static_cast<unsigned char>(c)))
      c = (rng() % 2) != 0
            ? static_cast<char>(std::toupper(static_cast<unsigned char>(c)))
            : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string lower(std::string s) {
  for (auto& c : s)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

struct outcome {
  std::string user_id;
  grpc::StatusCode code = grpc::StatusCode::UNKNOWN;
  std::string message;
  std::string field; // known only on the router path
};

constexpr int racers = 50;
constexpr int threads = 5;

/// Registers `racers` users with `handle` (random case) from `threads`
/// threads, through gRPC or through the router.
std::vector<outcome> race(test_node& n, const std::string& round,
                          const std::string& handle, bool via_grpc,
                          uint32_t seed) {
  std::vector<outcome> out(racers);
  start_gate gate;
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      std::mt19937 rng{seed + static_cast<uint32_t>(t)};
      std::vector<v1::UserCommand> mine;
      for (int i = t; i < racers; i += threads)
        mine.push_back(register_user("reg-" + round + "-" + std::to_string(i),
                                     round + "_" + std::to_string(i),
                                     random_case(handle, rng)));
      auto stub = n.command_stub();
      gate.wait();
      // Each thread fires its registrations concurrently with the others'.
      std::vector<std::thread> inner;
      for (std::size_t k = 0; k < mine.size(); ++k)
        inner.emplace_back([&, k] {
          auto& c = mine[k];
          auto i = static_cast<std::size_t>(t) + k * threads;
          out[i].user_id = c.register_user().user_id();
          if (via_grpc) {
            v1::CommandResult res;
            auto ctx = context_with_deadline(20s);
            auto status = stub->RegisterUser(ctx.get(), c.register_user(),
                                             &res);
            out[i].code = status.error_code();
            out[i].message = status.error_message();
          } else {
            auto r = n.send(c, 20s);
            if (r.has_result()) {
              out[i].code = grpc::StatusCode::OK;
            } else {
              out[i].code = r.rejection().code()
                                == v1::REJECTION_CODE_ALREADY_EXISTS
                              ? grpc::StatusCode::ALREADY_EXISTS
                              : grpc::StatusCode::INTERNAL;
              out[i].message = r.rejection().message();
              out[i].field = r.rejection().field();
            }
          }
        });
      for (auto& th : inner)
        th.join();
    });
  gate.open();
  for (auto& th : ts)
    th.join();
  return out;
}

void expect_exactly_one_winner(const test_database& db,
                               const std::vector<outcome>& results,
                               const std::string& round,
                               const std::string& handle, bool via_grpc) {
  SCOPED_TRACE(round);
  std::string winner;
  int wins = 0;
  for (auto& o : results) {
    if (o.code == grpc::StatusCode::OK) {
      ++wins;
      winner = o.user_id;
      continue;
    }
    EXPECT_EQ(o.code, grpc::StatusCode::ALREADY_EXISTS)
      << o.user_id << ": " << o.message;
    EXPECT_NE(o.message.find("handle"), std::string::npos)
      << o.user_id << ": the message must name the field: " << o.message;
    if (!via_grpc) {
      EXPECT_EQ(o.field, "handle") << o.user_id << ": " << o.message;
    }
  }
  ASSERT_EQ(wins, 1) << "exactly one registration of '" << handle
                     << "' must win";
  auto key = lower(handle);
  EXPECT_EQ(db.scalar<int64_t>("SELECT count(*) FROM claims"
                               " WHERE namespace = 'handle' AND key = '"
                               + key + "'"),
            1);
  EXPECT_EQ(db.scalar<std::string>("SELECT owner_id FROM claims"
                                   " WHERE namespace = 'handle' AND key = '"
                                   + key + "'"),
            winner);
  // Only the winner registered: one event, one user claim, in this round.
  EXPECT_EQ(db.scalar<int64_t>("SELECT count(*) FROM events"
                               " WHERE persistence_id LIKE 'user|"
                               + round
                               + "\\_%' AND event_type = 'UserRegistered'"),
            1);
  EXPECT_EQ(db.scalar<int64_t>("SELECT count(*) FROM events"
                               " WHERE persistence_id LIKE 'user|"
                               + round + "\\_%'"),
            1);
  EXPECT_EQ(db.scalar<int64_t>("SELECT count(*) FROM claims"
                               " WHERE namespace = 'user' AND key LIKE '"
                               + round + "\\_%'"),
            1);
  EXPECT_EQ(db.scalar<std::string>("SELECT persistence_id FROM events"
                                   " WHERE persistence_id LIKE 'user|"
                                   + round + "\\_%'"),
            "user|" + winner);
}

TEST(handle_race, exactly_one_registration_wins_each_round) {
  test_database db;
  test_node n{db.url()};
  std::string loser;
  for (int round = 0; round < 4; ++round) {
    bool via_grpc = round % 2 == 0;
    auto name = "round" + std::to_string(round);
    auto handle = "RaceHandle" + std::to_string(round);
    auto results = race(n, name, handle, via_grpc,
                        static_cast<uint32_t>(1000 * round + 7));
    expect_exactly_one_winner(db, results, name, handle, via_grpc);
    if (HasFailure())
      return;
    for (auto& o : results)
      if (o.code != grpc::StatusCode::OK)
        loser = o.user_id;
  }
  // A loser can still register under a handle of its own.
  auto r = n.send(register_user("late", loser, "loser_own"));
  ASSERT_TRUE(r.has_result()) << r.DebugString();
  EXPECT_EQ(r.result().seq_nr(), 1);
  EXPECT_EQ(db.scalar<int64_t>(
              "SELECT count(*) FROM (SELECT persistence_id FROM events"
              " GROUP BY persistence_id"
              " HAVING min(seq_nr) <> 1 OR max(seq_nr) <> count(*)) broken"),
            0);
}

double hashes(test_node& n) {
  return metric_value(n, "shoutflow_password_operations_total", "operation",
                      "hash");
}

// Issue 14's hot key: contenders for one handle on one node queue behind the
// first (the resolver's exclusive claim lookups), so exactly one password is
// hashed — the winner's — and each loser is refused on the owner alone.
// Counted, not timed: with the production cost every hash is ~100 ms of CPU.
TEST(handle_race, a_hot_handle_hashes_one_password) {
  test_database db;
  test_node n{db.url()};
  auto before = hashes(n);
  auto results = race(n, "hot", "HotHandle", true, 4242);
  expect_exactly_one_winner(db, results, "hot", "HotHandle", true);
  EXPECT_EQ(hashes(n) - before, 1) << "only the winner's password is hashed";
  EXPECT_GE(metric_value(n, "shoutflow_entity_claim_waits_total"), 1)
    << "the racers must have queued behind each other";

  // A registration of a handle already taken is refused before hashing.
  auto late = n.send(register_user("late-hot", "late_hot", "hothandle"));
  ASSERT_TRUE(late.has_rejection()) << late.DebugString();
  EXPECT_EQ(late.rejection().code(), v1::REJECTION_CODE_ALREADY_EXISTS);
  EXPECT_EQ(hashes(n) - before, 1);
}

// A claim that appears between the lookup and the write (another node's
// registration, here an uncommitted row of the test's own transaction that
// commits while the journal waits on it) fails the write; the command is
// decided again and refused on the owner, without a second hash.
TEST(handle_race, a_stale_owner_lookup_is_retried_without_hashing_again) {
  test_database db;
  test_node n{db.url()};
  pqxx::connection other{db.url()};
  pqxx::work tx{other};
  tx.exec("INSERT INTO claims (namespace, key, owner_id, value)"
          " VALUES ('handle', 'contested', 'elsewhere', 'elsewhere')");
  auto before = hashes(n);
  auto retries = metric_value(n, "shoutflow_entity_fact_retries_total");
  std::thread committer([&] {
    // Commit once the journal's INSERT waits on our row's lock.
    EXPECT_TRUE(wait_until(
      [&] {
        return db.scalar<int64_t>(
                 "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a"
                 "    ON a.pid = l.pid"
                 " WHERE NOT l.granted AND a.datname = current_database()")
               > 0;
      },
      10s))
      << "the registration never waited on the uncommitted claim";
    tx.commit();
  });
  auto r = n.send(register_user("c-contested", "contender", "Contested"), 20s);
  committer.join();
  ASSERT_TRUE(r.has_rejection()) << r.DebugString();
  EXPECT_EQ(r.rejection().code(), v1::REJECTION_CODE_ALREADY_EXISTS);
  EXPECT_EQ(r.rejection().field(), "handle");
  EXPECT_EQ(metric_value(n, "shoutflow_entity_fact_retries_total") - retries,
            1);
  EXPECT_EQ(hashes(n) - before, 1) << "the retry must not hash again";
  EXPECT_EQ(db.scalar<int64_t>("SELECT count(*) FROM events"), 0);
}

TEST(handle_race, the_winner_may_retry_and_losers_stay_out) {
  test_database db;
  test_node n{db.url()};
  auto results = race(n, "retry", "SameHandle", true, 99);
  expect_exactly_one_winner(db, results, "retry", "SameHandle", true);
  ASSERT_FALSE(HasFailure());
  // Everyone retries with the same command id: the winner gets its first
  // result back as a duplicate, the losers are still ALREADY_EXISTS.
  auto again = race(n, "retry", "SameHandle", true, 99);
  int dup_wins = 0;
  for (auto& o : again) {
    if (o.code == grpc::StatusCode::OK)
      ++dup_wins;
    else
      EXPECT_EQ(o.code, grpc::StatusCode::ALREADY_EXISTS) << o.message;
  }
  EXPECT_EQ(dup_wins, 1);
  EXPECT_EQ(db.scalar<int64_t>("SELECT count(*) FROM events"), 1);
}

} // namespace
