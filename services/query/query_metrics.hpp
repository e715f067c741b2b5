#pragma once

// Prometheus metrics of the QueryService, declared together and injected:
//   shoutflow_query_requests_total{method, code}
//   shoutflow_query_duration_seconds{method}   (gRPC in -> reply, including
//                                                a min_position wait)
//   shoutflow_watch_changes_sent_total         DocumentChanges written
//   shoutflow_watch_dropped_total{reason}      streams ended because the
//                                              client fell behind
//   shoutflow_query_timeline_pages_total{from} first timeline pages answered
//                                              from memory or the database
// Open Watch streams are shoutflow_grpc_requests_in_flight{service="watch"}
// (services/common/in_flight.hpp).

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include "services/common/rpc_metrics.hpp"

namespace shoutflow::services {

struct query_metrics {
  explicit query_metrics(prometheus::Registry& registry);

  rpc_metrics requests;
  prometheus::Counter& watch_changes_sent;
  /// The gRPC outbox overflowed: the client reads too slowly.
  prometheus::Counter& watch_dropped_slow_client;
  /// Changes piled up faster than their documents could be read.
  prometheus::Counter& watch_dropped_backlog;
  /// First timeline pages answered from memory, and those that were not
  /// (page_cache.hpp).
  prometheus::Counter& page_hits;
  prometheus::Counter& page_misses;
};

} // namespace shoutflow::services
