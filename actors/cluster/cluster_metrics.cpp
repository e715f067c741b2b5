#include "actors/cluster/cluster_metrics.hpp"

namespace shoutflow::cluster {

namespace {

prometheus::Counter& counter(prometheus::Registry& r, const std::string& name,
                             const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(r).Add({});
}

prometheus::Histogram& histogram(prometheus::Registry& r,
                                 const std::string& name,
                                 const std::string& help) {
  // A hand-off flushes and snapshots (tens of ms to seconds); a fail-over
  // waits out the lease TTL (seconds).
  return prometheus::BuildHistogram().Name(name).Help(help).Register(r).Add(
    {}, prometheus::Histogram::BucketBoundaries{0.01, 0.05, 0.1, 0.25, 0.5, 1,
                                                2, 5, 10, 20, 30, 60});
}

} // namespace

cluster_metrics::cluster_metrics(prometheus::Registry& r)
  : shards_owned(prometheus::BuildGauge()
                   .Name("shoutflow_cluster_shards_owned")
                   .Help("Entity shards whose lease this node holds")
                   .Register(r)
                   .Add({})),
    renewals(counter(r, "shoutflow_cluster_lease_renewals_total",
                     "Leases renewed by this node's membership rounds")),
    renewal_failures(counter(r,
                             "shoutflow_cluster_lease_renewal_failures_total",
                             "Membership rounds (heartbeat and lease "
                             "renewal) that failed")),
    leases_lost(counter(r, "shoutflow_cluster_leases_lost_total",
                        "Leases this node stopped serving because it could "
                        "not renew them in time")),
    handoff_seconds(histogram(r, "shoutflow_cluster_handoff_seconds",
                              "Graceful hand-off of one lease, from asking "
                              "its holder to stop to the lease's release")),
    handoff_failures(counter(r, "shoutflow_cluster_handoff_failures_total",
                             "Hand-offs that failed or timed out (the lease "
                             "was revoked instead)")),
    failover_seconds(histogram(r, "shoutflow_cluster_failover_seconds",
                               "Lease taken over from a node that did not "
                               "release it: seconds since that node's last "
                               "renewal")),
    partitions_family_(prometheus::BuildGauge()
                         .Name("shoutflow_cluster_partitions_owned")
                         .Help("Projection partitions whose lease this node "
                               "holds, by projection")
                         .Register(r)) {
  auto& by_state = prometheus::BuildGauge()
                     .Name("shoutflow_cluster_members")
                     .Help("Cluster members by state, as this node saw "
                           "them in its last membership round")
                     .Register(r);
  for (auto s : {member_state::joining, member_state::up, member_state::leaving,
                 member_state::down})
    members.push_back(&by_state.Add({{"state", to_string(s)}}));
}

prometheus::Gauge&
cluster_metrics::partitions_owned(const std::string& resource) {
  auto it = partitions_.find(resource);
  if (it == partitions_.end())
    it = partitions_
           .emplace(resource, &partitions_family_.Add(
                                {{"projection", projection_of(resource)}}))
           .first;
  return *it->second;
}

} // namespace shoutflow::cluster
