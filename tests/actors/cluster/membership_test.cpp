// The membership round's lease acquisition against real PostgreSQL.
//
// A shard's lease may change owner only once no journal batch of the old
// owner is in flight under it (docs/cluster.md, "Fencing lives in the
// database"): the batch locks the lease row FOR KEY SHARE until it ends,
// and the round's acquisition skips a row it cannot lock (FOR UPDATE SKIP
// LOCKED), to take it in a later round at a new epoch.

#include <gtest/gtest.h>

#include <pqxx/pqxx>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "actors/cluster/cluster_types.hpp"
#include "actors/cluster/membership.hpp"
#include "tests/support/test_db.hpp"

using namespace shoutflow;
using namespace std::chrono_literals;
using shoutflow::testing::test_database;

namespace {

constexpr int32_t shards = 4;

cluster::membership_config node_config(const std::string& url) {
  cluster::membership_config c;
  c.db_url = url;
  c.self.node_id = 1;
  c.self.incarnation = "inc-a";
  c.self.host = "127.0.0.1";
  c.self.roles = {"entities"};
  c.resources = {{cluster::shard_resource, shards, "entities"}};
  c.shards = shards;
  c.lease_ttl = 60s;
  return c;
}

/// The epoch at which the round left this node holding `part`, or -1.
int64_t held_epoch(const cluster::round_result& r, int32_t part) {
  auto it = std::find_if(r.held.begin(), r.held.end(), [&](const auto& g) {
    return g.resource == cluster::shard_resource && g.part == part;
  });
  return it == r.held.end() ? -1 : it->epoch;
}

} // namespace

TEST(membership_test, a_takeover_skips_a_shard_a_batch_still_fences) {
  test_database db;
  cluster::membership_table table{node_config(db.url())};
  table.join(0ms);
  cluster::round_result first;
  ASSERT_TRUE(table.round(false, {}, first));
  auto epoch = held_epoch(first, 2);
  ASSERT_GT(epoch, 0) << "the first round did not take shard 2";

  // A batch of this incarnation in flight on shard 2 (its fence, as
  // pg_journal.cpp takes it), and the lease then past its expiry (its
  // holder frozen): free to take, but not yet.
  pqxx::connection writer{db.url()};
  pqxx::work batch{writer};
  ASSERT_EQ(batch
              .exec("SELECT part FROM leases WHERE resource = 'shard'"
                    " AND part = 2 AND epoch = "
                    + std::to_string(epoch)
                    + " AND owner_incarnation = 'inc-a' FOR KEY SHARE")
              .size(),
            1u);
  db.exec("UPDATE leases SET expires_at = clock_timestamp()"
          " - interval '1 second' WHERE resource = 'shard' AND part = 2");

  cluster::round_result blocked;
  ASSERT_TRUE(table.round(false, {}, blocked));
  EXPECT_EQ(held_epoch(blocked, 2), -1)
    << "shard 2 was taken over under a batch in flight";
  EXPECT_EQ(db.scalar<int64_t>("SELECT epoch FROM leases"
                               " WHERE resource = 'shard' AND part = 2"),
            epoch);
  EXPECT_EQ(held_epoch(blocked, 1), held_epoch(first, 1))
    << "the other shards are renewed as usual";

  batch.commit();
  cluster::round_result after;
  ASSERT_TRUE(table.round(false, {}, after));
  EXPECT_EQ(held_epoch(after, 2), epoch + 1)
    << "once the batch ended, the next round takes the shard at a new epoch";
}
