// The cluster harness itself, against one real shoutflowd: the process
// life cycle (start, SIGSTOP/SIGCONT, SIGTERM with exit status 0, SIGKILL,
// restart on the same ports), what it offers clients as targets, how it
// reports a node that dies by itself, its ports, and the retrying client's
// failure classification.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <chrono>
#include <fstream>
#include <set>

#include "tests/support/cluster_harness.hpp"
#include "tests/support/test_db.hpp"

using namespace shoutflow;
using namespace shoutflow::testing;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

namespace {

cluster_options one_node_options(const std::string& db_url) {
  cluster_options o;
  o.db_url = db_url;
  o.cluster_flags = binary_has_cluster_flags(shoutflowd_binary());
  return o;
}

TEST(harness_self_test, ports_are_distinct_and_below_the_ephemeral_range) {
  std::set<int> seen;
  for (int k = 0; k < 40; ++k) {
    auto p = reserve_port();
    ASSERT_GT(p, 0);
    EXPECT_TRUE(seen.insert(p).second) << "port " << p << " handed out twice";
    EXPECT_LT(p, 32768) << "inside the default ephemeral range";
  }
}

TEST(harness_self_test, transport_failures_are_retried_business_answers_not) {
  EXPECT_TRUE(transport_failure({grpc::StatusCode::UNAVAILABLE, "x"}));
  EXPECT_TRUE(transport_failure({grpc::StatusCode::DEADLINE_EXCEEDED, "x"}));
  EXPECT_TRUE(transport_failure({grpc::StatusCode::CANCELLED, "x"}));
  EXPECT_TRUE(transport_failure({grpc::StatusCode::UNKNOWN, "Stream removed"}));
  EXPECT_TRUE(transport_failure(
    {grpc::StatusCode::INTERNAL, "Received RST_STREAM with error code 2"}));
  EXPECT_FALSE(transport_failure(
    {grpc::StatusCode::INTERNAL, "internal: stored event does not decode"}));
  for (auto code :
       {grpc::StatusCode::NOT_FOUND, grpc::StatusCode::ALREADY_EXISTS,
        grpc::StatusCode::FAILED_PRECONDITION,
        grpc::StatusCode::PERMISSION_DENIED, grpc::StatusCode::INVALID_ARGUMENT,
        grpc::StatusCode::RESOURCE_EXHAUSTED})
    EXPECT_FALSE(transport_failure({code, "x"})) << status_code_name(code);
}

TEST(harness_self_test, a_command_without_a_live_node_fails_after_its_budget) {
  command_log log;
  retry_policy policy;
  policy.budget = 400ms;
  policy.attempt_timeout = 100ms;
  // A port nobody listens on, and at times no target at all.
  auto dead = "127.0.0.1:" + std::to_string(reserve_port());
  int calls = 0;
  command_client client{[&] {
                          return ++calls % 2 == 0
                                   ? std::vector<std::string>{dead}
                                   : std::vector<std::string>{};
                        },
                        policy, &log};
  v1::PostShoutRequest req;
  req.set_command_id("c1");
  req.set_user_id("u");
  req.set_text("t");
  std::mt19937_64 rng{1};
  auto started = std::chrono::steady_clock::now();
  auto r = client.execute(command_client::make("PostShout", "u", req), rng);
  auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(r.outcome, command_outcome::failed);
  // The last attempt fails to connect, or runs into the end of the budget.
  EXPECT_THAT(r.code, ::testing::AnyOf(grpc::StatusCode::UNAVAILABLE,
                                       grpc::StatusCode::DEADLINE_EXCEEDED))
    << r.message;
  EXPECT_GE(r.attempts, 1);
  EXPECT_GE(took, 400ms);
  EXPECT_LT(took, 2s);
  EXPECT_EQ(log.failed(), 1);
  EXPECT_EQ(log.records().size(), 1u);
  EXPECT_EQ(log.records()[0].request, req.SerializeAsString());
}

TEST(harness_self_test, a_node_that_dies_by_itself_is_reported_with_its_log) {
  test_database db;
  auto o = one_node_options(db.url());
  o.extra_flags = {"--no-such-setting", "1"};
  cluster_harness cluster{o, 1};
  ASSERT_TRUE(cluster.start(0));
  auto ready = cluster.wait_ready(0, 20s);
  EXPECT_FALSE(ready);
  EXPECT_THAT(ready.message(), HasSubstr("no-such-setting"));
  auto exits = cluster.unexpected_exits();
  ASSERT_EQ(exits.size(), 1u);
  EXPECT_THAT(exits[0], HasSubstr("exit status 2"));
  EXPECT_FALSE(cluster.running(0));
  EXPECT_THAT(cluster.command_targets(), IsEmpty());
}

TEST(harness_self_test, start_pause_resume_stop_kill_restart) {
  test_database db;
  cluster_harness cluster{one_node_options(db.url()), 1};
  auto ports = cluster.ports(0);
  ASSERT_TRUE(cluster.start(0));
  EXPECT_THAT(cluster.command_targets(), IsEmpty()) << "not ready yet";
  ASSERT_TRUE(cluster.wait_ready(0));
  ASSERT_TRUE(cluster.wait_cluster_settled(60s));
  EXPECT_EQ(cluster.command_targets(),
            std::vector<std::string>{cluster.command_address(0)});
  EXPECT_EQ(cluster.live_nodes(), std::vector<int>{0});

  cluster.pause(0);
  EXPECT_TRUE(cluster.paused(0));
  EXPECT_TRUE(cluster.running(0));
  EXPECT_FALSE(cluster.live(0));
  EXPECT_FALSE(health_serving(cluster.command_address(0), 300ms))
    << "a frozen node answers nothing";
  EXPECT_EQ(cluster.command_targets().size(), 1u)
    << "clients cannot know a node is frozen";
  cluster.resume(0);
  EXPECT_FALSE(cluster.paused(0));
  EXPECT_TRUE(cluster.live(0));
  ASSERT_TRUE(cluster.wait_ready(0));

  auto status = cluster.stop(0);
  EXPECT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
    << "wait status " << status;
  EXPECT_FALSE(cluster.running(0));
  EXPECT_THAT(cluster.command_targets(), IsEmpty());

  // Same ports after a restart.
  ASSERT_TRUE(cluster.start(0));
  ASSERT_TRUE(cluster.wait_ready(0));
  EXPECT_EQ(cluster.ports(0).command, ports.command);
  EXPECT_EQ(cluster.ports(0).admin, ports.admin);
  ASSERT_TRUE(cluster.wait_cluster_settled(60s));
  cluster.kill(0);
  EXPECT_FALSE(cluster.running(0));
  EXPECT_EQ(cluster.stop(0), -1) << "nothing to stop";
  EXPECT_THAT(cluster.unexpected_exits(), IsEmpty());
  auto log = cluster.log(0);
  EXPECT_THAT(log, HasSubstr("node 0: "));
  EXPECT_NE(log.find("node 0: "), log.rfind("node 0: "))
    << "the log covers both starts";
}

} // namespace

// What "settled" means with the cluster flags, on hand-written cluster
// tables: the nodes are stand-in processes (a script that just waits), so
// that the lease and membership rules are checked before the cluster code
// writes those tables itself.
TEST(harness_self_test, settled_means_live_owners_fresh_leases_and_members_up) {
  test_database db;
  auto script = ::testing::TempDir() + "shoutflow-standin-node.sh";
  {
    std::ofstream out{script};
    out << "#!/bin/sh\nexec sleep 600\n";
  }
  ASSERT_EQ(::chmod(script.c_str(), 0755), 0);
  cluster_options o;
  o.db_url = db.url();
  o.binary = script;
  o.exclusive = false;
  cluster_harness cluster{o, 2};
  ASSERT_TRUE(cluster.start(0));
  ASSERT_TRUE(cluster.running(0));
  auto leases = [&](const std::string& rows) {
    db.exec("DELETE FROM leases; INSERT INTO leases (resource, part,"
            " owner_node, owner_incarnation, epoch, expires_at) VALUES "
            + rows);
  };
  auto fresh = "clock_timestamp() + interval '1 minute'";
  db.exec("INSERT INTO cluster_settings VALUES ('shards', '2')");
  EXPECT_THAT(cluster.leases_settled().message(),
              HasSubstr("0 of 2 shards have a lease row"));

  db.exec("INSERT INTO cluster_members (node_id, incarnation, host, caf_port,"
          " roles, state) VALUES (0, 'i1', 'h', 1, '{entities}', 'up')");
  leases(std::string{"('shard', 0, 0, 'i1', 1, "} + fresh
         + "), ('shard', 1, 0,"
           " 'i1', 1, "
         + fresh + "), ('projection/users', 0, 0, 'i1', 1, " + fresh + ")");
  EXPECT_TRUE(cluster.leases_settled());
  EXPECT_TRUE(cluster.cluster_settled());
  EXPECT_TRUE(cluster.wait_leases_settled(1s).has_value());

  leases(std::string{"('shard', 0, 0, 'i1', 1, "} + fresh
         + "), ('shard', 1, 0,"
           " 'i1', 1, clock_timestamp() - interval '1 second')");
  EXPECT_THAT(cluster.leases_settled().message(), HasSubstr("shard/1"));
  EXPECT_THAT(cluster.leases_settled().message(), HasSubstr("expired"));
  std::string why;
  EXPECT_FALSE(cluster.wait_leases_settled(200ms, &why).has_value());
  EXPECT_THAT(why, HasSubstr("expired"));

  leases(std::string{"('shard', 0, 0, 'i1', 1, "} + fresh
         + "), ('shard', 1, 1,"
           " 'i9', 1, "
         + fresh + ")");
  EXPECT_THAT(cluster.leases_settled().message(),
              HasSubstr("owned by node 1, which is not live"));

  leases(std::string{"('shard', 0, 0, 'i1', 1, "} + fresh
         + "), ('shard', 1, 0,"
           " 'old', 1, "
         + fresh + ")");
  EXPECT_THAT(cluster.leases_settled().message(),
              HasSubstr("cluster_members does not list"));

  leases("('shard', 0, NULL, NULL, 1, '-infinity'), ('shard', 1, 0, 'i1', 1, "
         + std::string{fresh} + ")");
  EXPECT_THAT(cluster.leases_settled().message(), HasSubstr("has no owner"));

  // A frozen node is not live: its leases are not "owned".
  leases(std::string{"('shard', 0, 0, 'i1', 1, "} + fresh
         + "), ('shard', 1, 0,"
           " 'i1', 1, "
         + fresh + ")");
  cluster.pause(0);
  EXPECT_FALSE(cluster.leases_settled());
  cluster.resume(0);
  EXPECT_TRUE(cluster.leases_settled());

  // A live node must be up, in a row written by its current process.
  db.exec("UPDATE cluster_members SET state = 'joining'");
  EXPECT_THAT(cluster.cluster_settled().message(), HasSubstr("'joining'"));
  db.exec("UPDATE cluster_members SET state = 'up'");
  cluster.kill(0);
  ASSERT_TRUE(cluster.start(0)); // the row still names the killed process
  EXPECT_THAT(cluster.cluster_settled().message(),
              HasSubstr("still names an earlier process"));
  db.exec("UPDATE cluster_members SET incarnation = 'i2';"
          " UPDATE leases SET owner_incarnation = 'i2'");
  EXPECT_TRUE(cluster.wait_cluster_settled(5s));
  ASSERT_TRUE(cluster.start(1));
  EXPECT_THAT(cluster.cluster_settled().message(),
              HasSubstr("node 1 has no cluster_members row"));
  EXPECT_THAT(cluster.unexpected_exits(), IsEmpty());
}
