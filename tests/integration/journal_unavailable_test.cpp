// The entity runtime while its database refuses connections: every command
// answers UNAVAILABLE promptly (no hang behind timeouts), the same node
// serves again once the database is back (no restart), and nothing that was
// acknowledged is lost; commands retried with their command ids after the
// outage apply exactly once.
//
// The outage is real: an admin connection sets ALLOW_CONNECTIONS false on
// the test database and terminates its backends (the node's journal and
// store connections among them).

#include <gtest/gtest.h>

#include <pqxx/pqxx>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "actors/user/user_validation.hpp"
#include "tests/support/test_db.hpp"
#include "tests/support/test_node.hpp"
#include "tests/support/wait.hpp"

using namespace shoutflow;
using namespace shoutflow::testing;
using namespace std::chrono_literals;

namespace {

using steady = std::chrono::steady_clock;

/// An outage of one database: connections refused, existing ones killed.
/// Connections are allowed again by `end()` or the destructor.
class outage {
public:
  explicit outage(const test_database& db) : name_(db.name()) {
  }
  ~outage() {
    try {
      end();
    } catch (...) {
      // The database is dropped by test_database anyway.
    }
  }

  void begin() {
    admin("ALTER DATABASE " + name_ + " ALLOW_CONNECTIONS false");
    admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
          " WHERE datname = '"
          + name_ + "' AND pid <> pg_backend_pid()");
    active_ = true;
  }

  /// Terminates the database's backends without refusing new connections.
  void kill_connections() {
    admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
          " WHERE datname = '"
          + name_ + "' AND pid <> pg_backend_pid()");
  }

  int64_t backends() {
    pqxx::connection conn{admin_url()};
    pqxx::read_transaction tx{conn};
    return tx
      .exec1("SELECT count(*) FROM pg_stat_activity WHERE datname = '" + name_
             + "'")[0]
      .as<int64_t>();
  }

  void end() {
    if (!active_)
      return;
    admin("ALTER DATABASE " + name_ + " ALLOW_CONNECTIONS true");
    active_ = false;
  }

private:
  void admin(const std::string& sql) {
    pqxx::connection conn{admin_url()};
    pqxx::nontransaction tx{conn};
    tx.exec(sql);
  }

  std::string name_;
  bool active_ = false;
};

using shoutflow::testing::eventually;

v1::UserCommand login(const std::string& cid, const std::string& user,
                      const std::string& password) {
  v1::UserCommand c;
  auto* r = c.mutable_login();
  r->set_command_id(cid);
  r->set_user_id(user);
  r->set_password(password);
  return c;
}

const v1::CommandResult* result_of(const v1::EntityReply& r) {
  if (r.has_result())
    return &r.result();
  if (r.has_login() && r.login().has_result())
    return &r.login().result();
  return nullptr;
}

/// Acknowledged results, to be found in the journal afterwards.
struct ack_log {
  std::mutex mx;
  std::vector<std::pair<std::string, v1::CommandResult>> acks;

  void add(const std::string& command_id, const v1::CommandResult& r) {
    std::lock_guard<std::mutex> lock{mx};
    acks.emplace_back(command_id, r);
  }

  void expect_all_durable(const test_database& db) {
    std::lock_guard<std::mutex> lock{mx};
    pqxx::connection conn{db.url()};
    pqxx::read_transaction tx{conn};
    for (auto& [cid, r] : acks) {
      auto rows
        = tx.exec_params("SELECT seq_nr, global_position FROM events"
                         " WHERE persistence_id = $1 AND command_id = $2",
                         "user|" + r.user_id(), cid);
      ASSERT_EQ(rows.size(), 1u)
        << "acknowledged " << cid << " (" << r.ShortDebugString()
        << ") is not in the journal exactly once";
      EXPECT_EQ(rows[0][0].as<int64_t>(), r.seq_nr()) << cid;
      EXPECT_EQ(rows[0][1].as<int64_t>(), r.global_position()) << cid;
    }
  }
};

void expect_contiguous_histories(const test_database& db) {
  EXPECT_EQ(db.scalar<int64_t>(
              "SELECT count(*) FROM (SELECT persistence_id FROM events"
              " GROUP BY persistence_id"
              " HAVING min(seq_nr) <> 1 OR max(seq_nr) <> count(*)) broken"),
            0)
    << "a user's seq_nrs are not contiguous from 1";
}

/// Sends `c` and checks it is answered UNAVAILABLE within `limit`.
void expect_prompt_unavailable(test_node& n, const v1::UserCommand& c,
                               std::chrono::milliseconds limit = 2000ms) {
  auto started = steady::now();
  auto r = n.send(c, 10s);
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
    steady::now() - started);
  EXPECT_TRUE(r.has_rejection()
              && r.rejection().code() == v1::REJECTION_CODE_UNAVAILABLE)
    << c.ShortDebugString() << " answered " << r.DebugString();
  EXPECT_LT(took, limit) << c.ShortDebugString() << " took " << took.count()
                         << " ms to answer";
}

TEST(journal_unavailable, commands_fail_fast_then_recover_without_restart) {
  test_database db;
  test_node n{db.url()};
  ack_log acked;
  auto ack = [&](const v1::UserCommand& c) {
    auto r = n.send(c);
    auto* res = result_of(r);
    ASSERT_NE(res, nullptr) << c.ShortDebugString() << ": " << r.DebugString();
    acked.add(user::command_id_of(c), *res);
  };
  for (auto u : {"ua", "ub", "uc", "ud"})
    ack(register_user(std::string{"reg-"} + u, u, u));
  ack(post_shout("ua-1", "ua", "before the outage"));
  ack(follow("ua-2", "ua", "ub"));
  ack(login("ub-1", "ub", "correct horse"));
  ASSERT_FALSE(HasFailure());

  outage down{db};
  down.begin();
  ASSERT_TRUE(eventually([&] { return down.backends() == 0; }))
    << "the node's connections were not terminated";

  // Every path to the database: the journal (active entity, no facts), a
  // claim lookup (follow), password verification then the journal (login),
  // recovery of an entity not in memory (uc, ud, a new user), and each
  // twice, the second time while connects back off.
  std::vector<v1::UserCommand> during = {
    post_shout("ua-3", "ua", "during the outage"),
    follow("ub-2", "ub", "uc"),
    login("ub-3", "ub", "correct horse"),
    post_shout("uc-1", "uc", "during the outage"),
    register_user("reg-ue", "ue", "ue"),
    post_shout("ua-4", "ua", "still down"),
    follow("ud-1", "ud", "ua"),
  };
  for (auto& c : during)
    expect_prompt_unavailable(n, c);
  for (auto& c : during)
    expect_prompt_unavailable(n, c);

  // The gRPC edge maps it to UNAVAILABLE, also promptly.
  auto stub = n.command_stub();
  {
    v1::PostShoutRequest req;
    req.set_command_id("ua-grpc");
    req.set_user_id("ua");
    req.set_text("via grpc");
    v1::CommandResult out;
    auto ctx = context_with_deadline(10s);
    auto started = steady::now();
    auto status = stub->PostShout(ctx.get(), req, &out);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << status.error_message();
    EXPECT_LT(steady::now() - started, 2s);
  }
  {
    v1::LoginRequest req;
    req.set_command_id("ub-handle");
    req.set_handle("UB");
    req.set_password("correct horse");
    v1::LoginResult out;
    auto ctx = context_with_deadline(10s);
    auto started = steady::now();
    auto status = stub->Login(ctx.get(), req, &out);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << status.error_message();
    EXPECT_LT(steady::now() - started, 2s);
  }

  down.end();
  // The same node serves again once it has reconnected.
  ASSERT_TRUE(eventually(
    [&] { return result_of(n.send(during.front())) != nullptr; }, 15s))
    << "the node did not recover after the database came back";
  // Every command refused during the outage now applies, exactly once.
  for (auto& c : during)
    ack(c);
  ASSERT_FALSE(HasFailure());
  for (auto& c : during) {
    auto r = n.send(c);
    auto* res = result_of(r);
    ASSERT_NE(res, nullptr) << r.DebugString();
    EXPECT_TRUE(res->duplicate()) << c.ShortDebugString();
  }
  acked.expect_all_durable(db);
  EXPECT_EQ(db.scalar<int64_t>("SELECT count(*) FROM events"),
            db.scalar<int64_t>("SELECT count(DISTINCT command_id) FROM events"))
    << "a command applied twice";
  EXPECT_EQ(db.scalar<int64_t>("SELECT count(*) FROM events"),
            static_cast<int64_t>(7 + during.size()));
  expect_contiguous_histories(db);
}

TEST(journal_unavailable, acknowledged_writes_survive_outages_under_load) {
  test_database db;
  test_node n{db.url()};
  constexpr int writers = 4;
  for (int w = 0; w < writers; ++w) {
    auto id = "w" + std::to_string(w);
    ASSERT_TRUE(n.send(register_user("reg-" + id, id, id)).has_result());
  }
  ack_log acked;
  std::atomic<bool> stop{false};
  std::atomic<int> unavailable{0};
  std::atomic<int64_t> slowest_ms{0};
  // Commands each writer has sent (acknowledged or not), by command id.
  std::vector<std::vector<v1::UserCommand>> sent(writers);
  std::vector<std::thread> ts;
  for (int w = 0; w < writers; ++w)
    ts.emplace_back([&, w] {
      auto id = "w" + std::to_string(w);
      for (int i = 0; !stop.load(); ++i) {
        auto c = post_shout(id + "-" + std::to_string(i), id, "load");
        sent[w].push_back(c);
        auto started = steady::now();
        auto r = n.send(c, 10s);
        auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
                      steady::now() - started)
                      .count();
        auto prev = slowest_ms.load();
        while (took > prev && !slowest_ms.compare_exchange_weak(prev, took)) {
        }
        if (auto* res = result_of(r)) {
          acked.add(user::command_id_of(c), *res);
        } else {
          EXPECT_EQ(r.rejection().code(), v1::REJECTION_CODE_UNAVAILABLE)
            << r.DebugString();
          ++unavailable;
          std::this_thread::sleep_for(50ms); // a client backing off
        }
      }
    });

  outage down{db};
  auto acked_count = [&] {
    std::lock_guard<std::mutex> lock{acked.mx};
    return acked.acks.size();
  };
  // Two outages (refusing connections), then two bare connection kills
  // (reconnects are allowed at once), each while writes are in flight.
  for (int round = 0; round < 4; ++round) {
    auto before = acked_count();
    ASSERT_TRUE(eventually([&] { return acked_count() >= before + 20; }, 15s))
      << "no progress before round " << round;
    if (round < 2) {
      auto refused = unavailable.load();
      down.begin();
      EXPECT_TRUE(eventually([&] { return unavailable.load() >= refused + 8; }))
        << "writers did not notice the outage";
      down.end();
    } else {
      down.kill_connections();
    }
  }
  auto before = acked_count();
  EXPECT_TRUE(eventually([&] { return acked_count() >= before + 20; }, 15s))
    << "no progress after the outages";
  stop = true;
  for (auto& t : ts)
    t.join();

  EXPECT_GT(unavailable.load(), 0) << "the outages were never observed";
  EXPECT_LT(slowest_ms.load(), 2000) << "a command hung during an outage";
  acked.expect_all_durable(db);

  // Retrying everything with the same command ids applies what was refused
  // (or left in doubt) exactly once. A connection killed while idle fails
  // its first use after the kill, so clients retry UNAVAILABLE (bounded).
  ts.clear();
  for (int w = 0; w < writers; ++w)
    ts.emplace_back([&, w] {
      for (auto& c : sent[w]) {
        v1::EntityReply r;
        EXPECT_TRUE(eventually([&] {
          r = n.send(c);
          return result_of(r) != nullptr;
        }))
          << r.DebugString();
      }
    });
  for (auto& t : ts)
    t.join();
  std::size_t total = writers;
  for (auto& s : sent)
    total += s.size();
  EXPECT_EQ(db.scalar<int64_t>("SELECT count(*) FROM events"),
            static_cast<int64_t>(total));
  EXPECT_EQ(db.scalar<int64_t>("SELECT count(DISTINCT command_id) FROM events"),
            static_cast<int64_t>(total));
  expect_contiguous_histories(db);
}

} // namespace
