// Scenario (d): PostgreSQL restarted under the cluster's feet, under load.
// The server is a throwaway instance of this test (scripts/pg with its own
// data directory and port, through $SHOUTFLOW_PG_SCRIPT) so that tests
// running beside it on the shared server are not disturbed. Every node
// rides it out: writes fail as UNAVAILABLE during the outage (the client
// retries them), leases may lapse and are taken again, and the cluster
// settles; the Watch stream on a node (none is killed) keeps delivering.
// Ends with the invariant checker.

#include <gtest/gtest.h>

#include <chrono>
#include <iostream>

#include "tests/support/invariants.hpp"

using namespace shoutflow::testing;
using namespace std::chrono_literals;

namespace {

class pg_restart_test : public cluster_scenario {
protected:
  void run(int nodes, bool cluster_flags, int restarts) {
    scratch_postgres pg;
    ASSERT_TRUE(pg.error().empty()) << pg.error();
    auto url = pg.create_database("sf_cluster");
    ASSERT_NO_FATAL_FAILURE(start_cluster(
      nodes, [&](cluster_options& o) { o.cluster_flags = cluster_flags; },
      url));
    ASSERT_NO_FATAL_FAILURE(start_load());
    std::vector<int> all;
    for (int i = 0; i < nodes; ++i)
      all.push_back(i);
    ASSERT_NO_FATAL_FAILURE(start_watch(pick(all)));
    ASSERT_NO_FATAL_FAILURE(expect_progress(100));
    for (int k = 0; k < restarts; ++k) {
      SCOPED_TRACE("restart " + std::to_string(k));
      auto started = std::chrono::steady_clock::now();
      auto failure = pg.pg("restart");
      ASSERT_TRUE(failure.empty()) << failure;
      std::cerr << "[ pg       ] PostgreSQL restarted in "
                << std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::steady_clock::now() - started)
                     .count()
                << " ms\n";
      ASSERT_TRUE(cluster_->wait_cluster_settled(60s));
      ASSERT_NO_FATAL_FAILURE(expect_progress(100, 60s));
    }
    finish_and_verify();
    // The nodes go before their server does.
    watch_.reset();
    load_.reset();
    cluster_.reset();
  }
};

TEST_F(pg_restart_test, three_nodes) {
  run(3, true, soak() ? 5 : 1);
}

TEST_F(pg_restart_test, single_node) {
  run(1, binary_has_cluster_flags(shoutflowd_binary()), 1);
}

} // namespace
