// Scenario (c): a node frozen (SIGSTOP) for longer than the lease TTL under
// load, then thawed (SIGCONT). While it is frozen the others take its
// leases over and keep serving; once thawed it must notice that it lost
// them (fencing: every write it had in flight fails, G2), register again
// and take its share back: the cluster settles with every node up, and the
// frozen process never exits. Ends with the invariant checker.

#include <gtest/gtest.h>

#include <chrono>
#include <iostream>
#include <thread>

#include "tests/support/invariants.hpp"

using namespace shoutflow::testing;
using namespace std::chrono_literals;

namespace {

class sigstop_test : public cluster_scenario {
protected:
  void run(int nodes, bool cluster_flags, int rounds) {
    // The probe's node is never frozen. With one node there is no such
    // node: the probe reopens its stream if the frozen node ends it (a
    // node that lost its leases may tell watchers to resubscribe).
    std::vector<int> all;
    int watch_node = -1;
    ASSERT_NO_FATAL_FAILURE(
      start_watched_load(nodes, cluster_flags, &all, &watch_node));
    auto ttl = cluster_->options().lease_ttl;
    // Without leases (today's single node) a short freeze shows only that
    // the harness and the node survive it.
    auto frozen_for = cluster_flags ? 2 * ttl : std::chrono::milliseconds(1500);
    for (int round = 0; round < rounds; ++round) {
      SCOPED_TRACE("round " + std::to_string(round));
      std::vector<int> victims;
      for (auto i : all)
        if (i != watch_node)
          victims.push_back(i);
      auto victim = pick(victims);
      auto frozen_at = std::chrono::steady_clock::now();
      cluster_->pause(victim);
      ASSERT_TRUE(cluster_->paused(victim));
      if (cluster_flags && nodes > 1) {
        std::string why;
        auto took = cluster_->wait_leases_settled(ttl + 20s, &why);
        EXPECT_TRUE(took.has_value()) << "the leases of frozen node " << victim
                                      << " were not taken over: " << why;
        if (took)
          std::cerr << "[ failover ] node " << victim
                    << " frozen, leases owned by live nodes after "
                    << took->count() << " ms\n";
        ASSERT_NO_FATAL_FAILURE(expect_progress(30));
      }
      // Frozen for `frozen_for` in all: a deliberate span, not a wait for
      // something to happen.
      std::this_thread::sleep_until(frozen_at + frozen_for);
      cluster_->resume(victim);
      EXPECT_TRUE(cluster_->running(victim))
        << "node " << victim << " exited after SIGCONT";
      ASSERT_TRUE(cluster_->wait_cluster_settled(60s));
      ASSERT_NO_FATAL_FAILURE(expect_progress(50));
    }
    finish_and_verify();
  }
};

TEST_F(sigstop_test, three_nodes) {
  run(3, true, soak() ? 6 : 1);
}

TEST_F(sigstop_test, single_node) {
  run(1, binary_has_cluster_flags(shoutflowd_binary()), 1);
}

} // namespace
