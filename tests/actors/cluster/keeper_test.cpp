// The keeper's lease lifecycle against a slow (not a lost) database.
//
// A node counts a lease as held only until the start of its last renewal
// plus the TTL minus a safety margin; past that it stops serving it. When
// the round that was running then renews the lease all the same (the
// database was slow, not gone), the revoked holder may still be finishing
// a transaction under that epoch — a partition's batch, a journal write —
// and a new holder at the same epoch would pass the same fence and write
// beside it (G2, G3). The lease must come back only at a new epoch.
//
// The stall is real: the test locks the node's membership row, on which the
// round's heartbeat waits, until the node reports the leases lost, then
// lets the round finish inside the database's TTL.

#include <gtest/gtest.h>

#include <pqxx/pqxx>

#include <chrono>
#include <map>
#include <string>
#include <utility>

#include "tests/support/test_db.hpp"
#include "tests/support/test_node.hpp"
#include "tests/support/wait.hpp"

using namespace shoutflow;
using namespace shoutflow::testing;
using namespace std::chrono_literals;

namespace {

using lease_epochs = std::map<std::pair<std::string, int>, int64_t>;

/// Every lease's epoch, when all of them are held and unexpired (else empty).
lease_epochs held_epochs(const std::string& url) {
  pqxx::connection conn{url};
  pqxx::read_transaction tx{conn};
  lease_epochs out;
  for (const auto& row : tx.exec("SELECT resource, part, epoch,"
                                 "       owner_node IS NOT NULL"
                                 "         AND expires_at > clock_timestamp()"
                                 "  FROM leases")) {
    if (!row[3].as<bool>())
      return {};
    out[{row[0].as<std::string>(), row[1].as<int>()}] = row[2].as<int64_t>();
  }
  return out;
}

} // namespace

TEST(keeper_test, a_lease_stopped_as_overdue_comes_back_only_at_a_new_epoch) {
  test_database db;
  // A safety margin of one interval (1 s): the window in which the node
  // has stopped serving while the database still counts the lease as its.
  test_node node{db.url(), [](node::node_config& c) {
                   with_read_side(c);
                   c.heartbeat_interval = 1000ms;
                   c.lease_ttl = 6000ms;
                 }};
  lease_epochs before;
  ASSERT_TRUE(wait_until(
    [&] {
      before = held_epochs(db.url());
      return !before.empty();
    },
    30s));
  auto lost = metric_value(node, "shoutflow_cluster_leases_lost_total");

  {
    pqxx::connection conn{db.url()};
    pqxx::work stall{conn};
    stall.exec("SELECT 1 FROM cluster_members FOR UPDATE");
    ASSERT_TRUE(wait_until(
      [&] {
        return metric_value(node, "shoutflow_cluster_leases_lost_total") > lost;
      },
      20s, 10ms))
      << "the node never stopped serving its overdue leases";
    // The stalled round goes on now and renews what the database still
    // counts as this node's.
    stall.commit();
  }

  lease_epochs after;
  bool all_new = wait_until(
    [&] {
      after = held_epochs(db.url());
      if (after.size() != before.size())
        return false;
      for (auto& [key, epoch] : after)
        if (epoch <= before[key])
          return false;
      return true;
    },
    30s);
  std::size_t same = 0;
  for (auto& [key, epoch] : after)
    same += epoch == before[key];
  EXPECT_TRUE(all_new) << same << " of " << after.size()
                       << " leases are held again at the epoch they were "
                          "stopped at";

  // Served again: a command goes through its shard's new lease.
  auto r = node.send(register_user("keeper-1", "alice", "alice"), 20s);
  EXPECT_TRUE(r.has_result()) << r.DebugString();
}
