#pragma once

// Prometheus metrics of the journal, declared together and injected.

#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <string>
#include <unordered_map>
#include <vector>

namespace shoutflow::journal {

struct journal_metrics {
  /// `event_types`: the event types the journal will see (the aggregate's
  /// closed set); their series of shoutflow_journal_events_appended_total
  /// are resolved here, any other type counts as "other".
  explicit journal_metrics(prometheus::Registry& registry,
                           const std::vector<std::string>& event_types = {});

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
  /// Batches committed by the one-statement append, and batches it refused
  /// (they went through the step-by-step transaction).
  prometheus::Counter& one_statement_batches;
  prometheus::Counter& refused_appends;
  /// Writes answered in doubt (write_timeout) before their outcome was known.
  prometheus::Counter& in_doubt;

  /// shoutflow_journal_events_appended_total{type}: a read of an immutable
  /// map, no registry lock (the commit path calls it per event).
  prometheus::Counter& appended(const std::string& type) const;

private:
  prometheus::Counter* other_type_ = nullptr;
  std::unordered_map<std::string, prometheus::Counter*> by_type_;
};

} // namespace shoutflow::journal
