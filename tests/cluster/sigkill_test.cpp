// Scenario (a): SIGKILL of a random node under load, then restart it,
// cycle after cycle. G1 durability and G2 single history across crashes
// and fail-over; each kill's fail-over time is measured (from the SIGKILL
// until every lease is again owned by a live node and unexpired) and
// printed. Ends with the invariant checker.
//
//   three_nodes:  3 nodes, 5 cycles (20 with SHOUTFLOW_SOAK=1); the Watch
//                 probe reads from a node that is never killed.
//   single_node:  the same against one node, with the cluster flags only
//                 if the binary has them (runs before the cluster exists);
//                 the probe reopens its stream after each restart.

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <vector>

#include "tests/support/invariants.hpp"

using namespace shoutflow::testing;
using namespace std::chrono_literals;

namespace {

class sigkill_test : public cluster_scenario {
protected:
  void run(int nodes, bool cluster_flags, int cycles) {
    // The probe's node is never a victim (with one node there is none).
    std::vector<int> all;
    int watch_node = -1;
    ASSERT_NO_FATAL_FAILURE(
      start_watched_load(nodes, cluster_flags, &all, &watch_node));
    auto ttl = cluster_->options().lease_ttl;
    std::vector<std::chrono::milliseconds> failovers;
    for (int cycle = 0; cycle < cycles; ++cycle) {
      SCOPED_TRACE("cycle " + std::to_string(cycle));
      std::vector<int> victims;
      for (auto i : all)
        if (i != watch_node)
          victims.push_back(i);
      auto victim = pick(victims);
      cluster_->kill(victim);
      if (cluster_flags && !cluster_->live_nodes().empty()) {
        std::string why;
        auto took = cluster_->wait_leases_settled(ttl + 20s, &why);
        EXPECT_TRUE(took.has_value())
          << "no fail-over of node " << victim << "'s leases: " << why;
        if (took) {
          failovers.push_back(*took);
          std::cerr << "[ failover ] cycle " << cycle << ": node " << victim
                    << " SIGKILLed, leases owned again after " << took->count()
                    << " ms\n";
        }
        // The survivors keep serving meanwhile.
        ASSERT_NO_FATAL_FAILURE(expect_progress(30));
      }
      ASSERT_NO_FATAL_FAILURE(restart(victim));
      ASSERT_TRUE(cluster_->wait_cluster_settled(60s));
      ASSERT_NO_FATAL_FAILURE(expect_progress(50));
    }
    if (!failovers.empty()) {
      auto worst = *std::max_element(failovers.begin(), failovers.end());
      std::cerr << "[ failover ] " << failovers.size()
                << " fail-overs, slowest " << worst.count() << " ms (lease TTL "
                << ttl.count() << " ms)\n";
    }
    finish_and_verify();
  }
};

TEST_F(sigkill_test, three_nodes) {
  run(3, true, soak() ? 20 : 5);
}

TEST_F(sigkill_test, single_node) {
  run(1, binary_has_cluster_flags(shoutflowd_binary()), soak() ? 10 : 3);
}

} // namespace
