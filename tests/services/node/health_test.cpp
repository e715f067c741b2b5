// Health checking and JSON logs of a shoutflowd process (services/node/
// health.hpp, actors/common/log.hpp), every transition of readiness:
//
//   NOT_SERVING before the node has joined  — node B reuses live node A's id,
//                                             so it cannot join while A lives
//   SERVING once it joined and holds its share (A stopped)
//   NOT_SERVING while the database is out of reach (a scratch server of
//                                             this test, stopped), SERVING
//                                             again once it is back
//   NOT_SERVING while it drains after SIGTERM (--drain-delay), still
//                                             answering commands meanwhile
//
// "liveness" stays SERVING through all of it. Node B logs JSON; its lines
// parse, name the node and carry the correlation id of the request they
// are about.

#include <gtest/gtest.h>

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <sstream>
#include <thread>

#include "shoutflow/v1/commands.grpc.pb.h"
#include "tests/support/cluster_harness.hpp"

using namespace shoutflow;
using namespace shoutflow::testing;
using namespace std::chrono_literals;

namespace {

using steady = std::chrono::steady_clock;

const std::vector<std::string> services = {"", "shoutflow.v1.CommandService",
                                           "shoutflow.v1.QueryService",
                                           "shoutflow.v1.AdminService"};

/// Polls node i's admin port until `service` answers `want`.
::testing::AssertionResult
wait_health(cluster_harness& c, int i, const std::string& service,
            health_answer want, std::chrono::milliseconds within) {
  auto until = steady::now() + within;
  auto last = health_answer::no_answer;
  do {
    last = health_check(c.admin_address(i), service, 500ms);
    if (last == want)
      return ::testing::AssertionSuccess();
    std::this_thread::sleep_for(20ms);
  } while (steady::now() < until);
  return ::testing::AssertionFailure()
         << "node " << i << " service '" << service << "' answered "
         << to_string(last) << ", not " << to_string(want) << " within "
         << within.count() << " ms";
}

/// Every service of node i on every port it serves answers `want`.
void expect_all(cluster_harness& c, int i, health_answer want) {
  for (auto& address :
       {c.command_address(i), c.query_address(i), c.admin_address(i)}) {
    for (auto& s : {std::string{}, std::string{"shoutflow.v1.AdminService"}}) {
      if (address == c.admin_address(i) || s.empty()) {
        EXPECT_EQ(health_check(address, s, 2s), want)
          << address << " '" << s << "'";
      }
    }
    EXPECT_EQ(health_check(address, "liveness", 2s), health_answer::serving)
      << address << " liveness";
  }
}

grpc::Status post_shout(const std::string& address, const std::string& id,
                        const std::string& correlation,
                        std::chrono::milliseconds deadline) {
  auto stub = v1::CommandService::NewStub(channel_to(address));
  v1::PostShoutRequest r;
  r.set_command_id(id);
  r.set_user_id("nobody-" + id);
  r.set_text("hello");
  v1::CommandResult out;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + deadline);
  if (!correlation.empty())
    ctx.AddMetadata("x-correlation-id", correlation);
  return stub->PostShout(&ctx, r, &out);
}

TEST(health_test, readiness_follows_join_database_and_drain) {
  scratch_postgres pg;
  ASSERT_TRUE(pg.error().empty()) << pg.error();
  auto url = pg.create_database("sf_health");
  cluster_options o;
  o.db_url = url;
  // Node 1 takes node 0's id: it cannot join while node 0 lives.
  // (Another host name: the same id on the same host would be taken for a
  // restart of node 0 and take over at once.) Its longer lease TTL lets it
  // wait up to three TTLs for the id.
  o.node_flags[1]
    = {"--node-id",         "0",    "--advertise-host", "localhost",
       "--lease-ttl",       "6s",   "--drain-delay",    "4s",
       "--log-format",      "json", "--log-level",      "debug",
       "--request-timeout", "1s"};
  cluster_harness c{o, 2};
  ASSERT_TRUE(c.start(0));
  ASSERT_TRUE(c.wait_ready(0, 60s));
  ASSERT_TRUE(c.start(1));

  // Before the join: its ports answer, NOT_SERVING; liveness SERVING.
  ASSERT_TRUE(wait_health(c, 1, "liveness", health_answer::serving, 30s));
  expect_all(c, 1, health_answer::not_serving);
  // A command sent meanwhile is refused or routed; either way it is logged
  // with its correlation id (checked below, in the JSON log).
  auto early = post_shout(c.command_address(1), "early-1", "corr-early-1", 3s);
  EXPECT_FALSE(early.ok());
  EXPECT_EQ(health_check(c.admin_address(1), "", 2s),
            health_answer::not_serving);

  // Node 0 leaves: node 1 joins under the id and becomes ready.
  ASSERT_EQ(c.stop(0), 0);
  ASSERT_TRUE(wait_health(c, 1, "", health_answer::serving, 30s));
  expect_all(c, 1, health_answer::serving);
  EXPECT_EQ(health_check(c.admin_address(1), "no.such.Service", 2s),
            health_answer::unknown_service);

  // The database goes: NOT_SERVING within about a lease TTL; back after.
  ASSERT_EQ(pg.pg("stop"), "");
  ASSERT_TRUE(wait_health(c, 1, "", health_answer::not_serving, 20s));
  EXPECT_EQ(health_check(c.admin_address(1), "liveness", 2s),
            health_answer::serving);
  ASSERT_EQ(pg.pg("start"), "");
  ASSERT_TRUE(wait_health(c, 1, "", health_answer::serving, 60s));

  // SIGTERM: NOT_SERVING during the drain delay, still answering.
  std::thread stopper([&] { EXPECT_EQ(c.stop(1), 0); });
  auto drained = wait_health(c, 1, "", health_answer::not_serving, 4s);
  EXPECT_TRUE(drained);
  if (drained) {
    EXPECT_EQ(health_check(c.admin_address(1), "liveness", 1s),
              health_answer::serving);
    // Still serving commands while it drains (user unknown: NOT_FOUND is a
    // business answer, proof the command went through).
    auto during = post_shout(c.command_address(1), "during-1", "", 3s);
    EXPECT_EQ(during.error_code(), grpc::StatusCode::NOT_FOUND)
      << during.error_message();
  }
  stopper.join();

  // Every line of node 1's log is a JSON object with the fields SREs'
  // shippers expect; the early command's lines carry its correlation id.
  std::istringstream lines{c.log(1)};
  std::string line;
  int parsed = 0;
  bool correlated = false;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#') // the harness's header line
      continue;
    google::protobuf::Struct obj;
    auto st = google::protobuf::util::JsonStringToMessage(line, &obj);
    ASSERT_TRUE(st.ok()) << "not JSON: " << line;
    auto& f = obj.fields();
    for (auto* key : {"time", "level", "node", "component", "message"})
      ASSERT_TRUE(f.count(key) == 1) << "no " << key << ": " << line;
    EXPECT_EQ(f.at("node").string_value(), "node-0") << line;
    if (f.count("correlation_id") == 1
        && f.at("correlation_id").string_value() == "corr-early-1")
      correlated = true;
    ++parsed;
  }
  EXPECT_GT(parsed, 10);
  EXPECT_TRUE(correlated) << "no line carries correlation_id corr-early-1";
}

} // namespace
