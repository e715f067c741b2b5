#include "actors/entity/entity_metrics.hpp"

namespace shoutflow::entity {

namespace {

prometheus::Counter& counter(prometheus::Registry& r, const std::string& name,
                             const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(r).Add({});
}

prometheus::Family<prometheus::Counter>& passwords(prometheus::Registry& r) {
  return prometheus::BuildCounter()
    .Name("shoutflow_password_operations_total")
    .Help("argon2id password hashes and verifications (CPU-heavy), by "
          "operation")
    .Register(r);
}

prometheus::Family<prometheus::Counter>& commands(prometheus::Registry& r) {
  return prometheus::BuildCounter()
    .Name("shoutflow_entity_commands_total")
    .Help("Commands handled by entities, by outcome")
    .Register(r);
}

} // namespace

entity_metrics::entity_metrics(prometheus::Registry& r)
  : recoveries(counter(r, "shoutflow_entity_recoveries_total",
                       "Entity recoveries (snapshot + tail replay)")),
    recovery_seconds(
      prometheus::BuildHistogram()
        .Name("shoutflow_entity_recovery_seconds")
        .Help("Seconds to recover one entity")
        .Register(r)
        .Add({}, prometheus::Histogram::BucketBoundaries{0.0005, 0.001, 0.002,
                                                         0.005, 0.01, 0.02,
                                                         0.05, 0.1, 0.5})),
    recovered_events(counter(r, "shoutflow_entity_recovered_events_total",
                             "Events replayed during recoveries")),
    applied(commands(r).Add({{"outcome", "applied"}})),
    rejected(commands(r).Add({{"outcome", "rejected"}})),
    noop(commands(r).Add({{"outcome", "noop"}})),
    duplicate(commands(r).Add({{"outcome", "duplicate"}})),
    snapshots(counter(r, "shoutflow_entity_snapshots_total",
                      "Snapshots requested by entities")),
    fact_retries(counter(r, "shoutflow_entity_fact_retries_total",
                         "Commands decided again because a fact changed "
                         "before the write")),
    write_failures(counter(r, "shoutflow_entity_write_failures_total",
                           "Entities stopped after a failed or in-doubt "
                           "write")),
    active(prometheus::BuildGauge()
             .Name("shoutflow_entity_active")
             .Help("Entities in memory on this node")
             .Register(r)
             .Add({})),
    spawned(counter(r, "shoutflow_entity_spawned_total",
                    "Entities started (each recovers)")),
    passivated(counter(r, "shoutflow_entity_passivated_total",
                       "Entities passivated (idle or over the cap)")),
    password_hashes(passwords(r).Add({{"operation", "hash"}})),
    password_verifies(passwords(r).Add({{"operation", "verify"}})),
    claim_waits(counter(r, "shoutflow_entity_claim_waits_total",
                        "Commands that waited for another command on this "
                        "node to finish with a claim key they both want")) {
}

} // namespace shoutflow::entity
