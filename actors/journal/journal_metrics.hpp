#pragma once

// Prometheus metrics of the journal, declared together and injected.

#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace shoutflow::journal {

struct journal_metrics {
  explicit journal_metrics(prometheus::Registry& registry);

  prometheus::Counter& batches;
  prometheus::Counter& writes;
  prometheus::Counter& events;
  /// Writes per committed transaction.
  prometheus::Histogram& batch_writes;
  /// Seconds from BEGIN to COMMIT of a batch.
  prometheus::Histogram& commit_seconds;
  prometheus::Counter& duplicates;
  prometheus::Counter& precondition_failures;
  prometheus::Counter& conflicts;
  prometheus::Counter& unavailable;
  /// Refused because the shard lease moved on (docs/cluster.md).
  prometheus::Counter& fenced;
};

} // namespace shoutflow::journal
