// Scenario (b): a rolling restart under load. Every node in turn gets
// SIGTERM, must exit with status 0 within the shutdown grace (graceful
// hand-off: stop taking commands, finish, flush, snapshot, release), and
// is started again; the cluster settles before the next one goes. Every
// node is restarted, so the Watch probe follows its stream from node to
// node. Ends with the invariant checker.

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <chrono>
#include <iostream>

#include "tests/support/invariants.hpp"

using namespace shoutflow::testing;
using namespace std::chrono_literals;

namespace {

class rolling_restart_test : public cluster_scenario {
protected:
  void run(int nodes, bool cluster_flags, int rounds) {
    ASSERT_NO_FATAL_FAILURE(start_cluster(nodes, [&](cluster_options& o) {
      o.cluster_flags = cluster_flags;
    }));
    ASSERT_NO_FATAL_FAILURE(start_load());
    ASSERT_NO_FATAL_FAILURE(start_watch(-1));
    ASSERT_NO_FATAL_FAILURE(expect_progress(100));
    // A little slack beyond the grace for the process to be reaped.
    auto grace = cluster_->options().shutdown_grace + 1s;
    for (int round = 0; round < rounds; ++round)
      for (int i = 0; i < nodes; ++i) {
        SCOPED_TRACE("round " + std::to_string(round) + ", node "
                     + std::to_string(i));
        auto started = std::chrono::steady_clock::now();
        auto status = cluster_->stop(i, grace);
        auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::steady_clock::now() - started);
        EXPECT_NE(status, -1) << "node " << i << " did not exit within "
                              << grace.count() << " ms of SIGTERM";
        EXPECT_TRUE(status != -1 && WIFEXITED(status)
                    && WEXITSTATUS(status) == 0)
          << "node " << i << " exited with wait status " << status;
        std::cerr << "[ restart  ] node " << i << " exited "
                  << (status != -1 && WIFEXITED(status)
                        ? "with status " + std::to_string(WEXITSTATUS(status))
                        : std::string{"abnormally"})
                  << " " << took.count() << " ms after SIGTERM\n";
        if (nodes > 1) {
          ASSERT_NO_FATAL_FAILURE(expect_progress(30));
        }
        ASSERT_NO_FATAL_FAILURE(restart(i));
        ASSERT_TRUE(cluster_->wait_cluster_settled(60s));
        ASSERT_NO_FATAL_FAILURE(expect_progress(50));
      }
    std::cerr << "[ restart  ] failed commands: " << load_->log().failed()
              << "\n";
    finish_and_verify();
  }
};

TEST_F(rolling_restart_test, three_nodes) {
  run(3, true, soak() ? 4 : 1);
}

TEST_F(rolling_restart_test, single_node) {
  run(1, binary_has_cluster_flags(shoutflowd_binary()), soak() ? 4 : 2);
}

} // namespace
