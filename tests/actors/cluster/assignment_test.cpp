// The lease assignment (actors/cluster/assignment.hpp): every node computes
// the same fair share from the same member list, and a join or a leave moves
// about one share of parts, not the whole map.

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>

#include "actors/cluster/assignment.hpp"

using shoutflow::cluster::assign;

namespace {

std::map<int32_t, int> loads(const std::vector<int32_t>& owners) {
  std::map<int32_t, int> out;
  for (auto o : owners)
    ++out[o];
  return out;
}

int moved(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  int n = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    n += a[i] != b[i] ? 1 : 0;
  return n;
}

} // namespace

TEST(assignment, no_candidate_leaves_every_part_unowned) {
  auto owners = assign("shard", 8, {});
  EXPECT_EQ(owners, std::vector<int32_t>(8, -1));
  EXPECT_TRUE(assign("shard", 0, {1, 2}).empty());
}

TEST(assignment, every_part_gets_one_owner_within_the_cap) {
  for (int nodes = 1; nodes <= 7; ++nodes) {
    std::vector<int32_t> members;
    for (int i = 0; i < nodes; ++i)
      members.push_back(i * 3 + 1);
    auto owners = assign("shard", 256, members);
    auto cap = (256 + nodes - 1) / nodes;
    for (auto o : owners)
      ASSERT_NE(std::find(members.begin(), members.end(), o), members.end());
    for (auto& [node, n] : loads(owners)) {
      EXPECT_LE(n, cap) << "node " << node << " of " << nodes;
      // Fair: nobody is far below the average either.
      EXPECT_GE(n, 256 / nodes - nodes) << "node " << node << " of " << nodes;
    }
  }
}

TEST(assignment, order_and_duplicates_of_candidates_do_not_matter) {
  std::vector<int32_t> members{5, 1, 9, 3};
  auto a = assign("projection/users", 16, members);
  std::mt19937 rng{42};
  for (int i = 0; i < 10; ++i) {
    auto shuffled = members;
    shuffled.push_back(members[static_cast<std::size_t>(i) % 4]);
    std::shuffle(shuffled.begin(), shuffled.end(), rng);
    EXPECT_EQ(assign("projection/users", 16, shuffled), a);
  }
}

TEST(assignment, a_join_or_a_leave_moves_about_one_share) {
  auto three = assign("shard", 256, {0, 1, 2});
  auto four = assign("shard", 256, {0, 1, 2, 3});
  auto two = assign("shard", 256, {0, 2});
  // Ideal: 64 parts move to the new node; 86 from the one that left.
  EXPECT_LE(moved(three, four), 64 + 32);
  EXPECT_GE(moved(three, four), 64);
  EXPECT_LE(moved(three, two), 86 + 43);
  // Parts of the leaving node's peers mostly stay where they were.
  int kept = 0;
  for (std::size_t i = 0; i < three.size(); ++i)
    kept += three[i] != 1 && two[i] == three[i] ? 1 : 0;
  EXPECT_GE(kept, 150);
}

TEST(assignment, resources_are_spread_independently) {
  auto users = assign("projection/users", 2, {0, 1});
  auto shouts = assign("projection/shouts", 2, {0, 1});
  EXPECT_EQ(loads(users).size(), 2u);
  EXPECT_EQ(loads(shouts).size(), 2u);
}
