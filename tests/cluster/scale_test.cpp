// Scenario (e): 3 -> 5 -> 2 nodes under load. Two nodes join (they take a
// fair share of the shards by graceful hand-off), then three of the five
// leave with SIGTERM, one after another (each exits 0 within the grace).
// Joins and graceful leaves must cost the retrying client nothing: zero
// commands fail within their 10 s budget. The Watch probe reads from a
// node that stays. Ends with the invariant checker.

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <iostream>

#include "tests/support/invariants.hpp"

using namespace shoutflow::testing;
using namespace std::chrono_literals;

namespace {

class scale_test : public cluster_scenario {};

TEST_F(scale_test, three_to_five_to_two_nodes_without_a_failed_command) {
  ASSERT_NO_FATAL_FAILURE(start_cluster(3));
  ASSERT_NO_FATAL_FAILURE(start_load([](load_options& o) {
    if (soak())
      o.clients = 6;
  }));
  // The survivors: two of the five, the probe's node among them.
  std::vector<int> five = {0, 1, 2, 3, 4};
  std::shuffle(five.begin(), five.end(), rng_);
  std::vector<int> leaving(five.begin(), five.begin() + 3);
  std::vector<int> staying(five.begin() + 3, five.end());
  // The probe starts before nodes 3 and 4 exist: it stays on one of 0..2.
  auto watch_node = std::min(staying[0], staying[1]);
  if (watch_node > 2) {
    // Both survivors are new nodes: swap one of them with an old leaver.
    auto old = std::find_if(leaving.begin(), leaving.end(),
                            [](int i) { return i <= 2; });
    std::swap(*old, staying[0]);
    watch_node = staying[0];
  }
  std::cerr << "[ scale    ] leaving: " << leaving[0] << ", " << leaving[1]
            << ", " << leaving[2] << "; staying: " << staying[0] << ", "
            << staying[1] << "; watch on " << watch_node << "\n";
  ASSERT_NO_FATAL_FAILURE(start_watch(watch_node));
  ASSERT_NO_FATAL_FAILURE(expect_progress(100));

  for (int k = 0; k < 2; ++k) {
    auto i = cluster_->add_node();
    ASSERT_NO_FATAL_FAILURE(restart(i));
  }
  ASSERT_TRUE(cluster_->wait_cluster_settled(60s));
  std::cerr << "[ scale    ] 5 nodes settled\n";
  ASSERT_NO_FATAL_FAILURE(expect_progress(100));

  auto grace = cluster_->options().shutdown_grace + 1s;
  for (auto i : leaving) {
    auto status = cluster_->stop(i, grace);
    EXPECT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "node " << i << ": wait status " << status
      << " (-1: not exited within " << grace.count() << " ms of SIGTERM)";
    ASSERT_NO_FATAL_FAILURE(expect_progress(30));
  }
  ASSERT_TRUE(cluster_->wait_cluster_settled(60s));
  std::cerr << "[ scale    ] 2 nodes settled\n";
  ASSERT_NO_FATAL_FAILURE(expect_progress(100));

  finish_and_verify();
  EXPECT_EQ(load_->log().failed(), 0)
    << "commands failed for good across joins and graceful leaves";
  int listed = 0;
  for (auto& r : load_->log().records())
    if (r.outcome == command_outcome::failed && listed++ < 20)
      ADD_FAILURE() << "failed: " << r.method << " " << r.command_id
                    << " after " << r.attempts << " attempts in "
                    << r.took.count() << " ms: " << r.message;
}

} // namespace
