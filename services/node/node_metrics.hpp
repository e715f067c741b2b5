#pragma once

// Every metrics struct of a node, built on one registry at start and
// injected into the components (each keeps a plain pointer; this outlives
// them all). docs/metrics.md lists every family.

#include <prometheus/registry.h>

#include <memory>

#include "actors/cluster/cluster_metrics.hpp"
#include "actors/entity/entity_metrics.hpp"
#include "actors/journal/journal_metrics.hpp"
#include "actors/projection/projection_metrics.hpp"
#include "services/command/command_metrics.hpp"
#include "services/common/in_flight.hpp"
#include "services/query/query_metrics.hpp"

namespace shoutflow::node {

struct node_metrics {
  node_metrics();

  std::shared_ptr<prometheus::Registry> registry;
  journal::journal_metrics journal;
  entity::entity_metrics entity;
  services::command_metrics command;
  services::query_metrics query;
  services::in_flight_metrics in_flight;
  projection::projection_metrics projections;
  cluster::cluster_metrics cluster;
};

} // namespace shoutflow::node
