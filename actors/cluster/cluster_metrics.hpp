#pragma once

// Prometheus metrics of the cluster membership and leases on one node,
// declared together and injected into the keeper (cluster_actors.hpp):
//   shoutflow_cluster_members{state}            members by state, as this
//                                               node saw them last round
//   shoutflow_cluster_shards_owned              shard leases held here
//   shoutflow_cluster_partitions_owned{projection}
//   shoutflow_cluster_lease_renewals_total      leases renewed by rounds
//   shoutflow_cluster_lease_renewal_failures_total  rounds that failed
//   shoutflow_cluster_leases_lost_total         leases revoked because they
//                                               were not renewed in time
//   shoutflow_cluster_handoff_seconds           histogram: graceful hand-off
//                                               of one lease, asked -> released
//   shoutflow_cluster_handoff_failures_total
//   shoutflow_cluster_failover_seconds          histogram: a lease taken from
//                                               a node that did not release
//                                               it, from that node's last
//                                               renewal to the take-over

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <map>
#include <string>
#include <vector>

#include "actors/cluster/cluster_types.hpp"

namespace shoutflow::cluster {

struct cluster_metrics {
  explicit cluster_metrics(prometheus::Registry& registry);

  /// Members by state; index by member_state.
  std::vector<prometheus::Gauge*> members;
  prometheus::Gauge& shards_owned;
  /// The gauge of a partition resource ("projection/users"), created on
  /// first use; the keeper alone calls it, once per membership round.
  prometheus::Gauge& partitions_owned(const std::string& resource);
  prometheus::Counter& renewals;
  prometheus::Counter& renewal_failures;
  prometheus::Counter& leases_lost;
  prometheus::Histogram& handoff_seconds;
  prometheus::Counter& handoff_failures;
  prometheus::Histogram& failover_seconds;

private:
  prometheus::Family<prometheus::Gauge>& partitions_family_;
  std::map<std::string, prometheus::Gauge*> partitions_;
};

} // namespace shoutflow::cluster
