#include "actors/journal/journal_metrics.hpp"

namespace shoutflow::journal {

namespace {

prometheus::Counter& counter(prometheus::Registry& r, const std::string& name,
                             const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(r).Add({});
}

prometheus::Histogram&
histogram(prometheus::Registry& r, const std::string& name,
          const std::string& help, prometheus::Histogram::BucketBoundaries b) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(r).Add(
    {}, std::move(b));
}

prometheus::Family<prometheus::Counter>& failures(prometheus::Registry& r) {
  return prometheus::BuildCounter()
    .Name("shoutflow_journal_write_failures_total")
    .Help("Entity writes not committed, by reason")
    .Register(r);
}

prometheus::Family<prometheus::Counter>& paths(prometheus::Registry& r) {
  return prometheus::BuildCounter()
    .Name("shoutflow_journal_append_paths_total")
    .Help("Batches by how they were written: one_statement (one round trip), "
          "refused (not the common case: the step-by-step transaction)")
    .Register(r);
}

} // namespace

journal_metrics::journal_metrics(prometheus::Registry& r,
                                 const std::vector<std::string>& event_types)
  : batches(counter(r, "shoutflow_journal_batches_total",
                    "Transactions committed by the journal")),
    writes(
      counter(r, "shoutflow_journal_writes_total", "Entity writes committed")),
    events(counter(r, "shoutflow_journal_events_total", "Events committed")),
    batch_writes(histogram(r, "shoutflow_journal_batch_writes",
                           "Entity writes per committed transaction",
                           {1, 2, 4, 8, 16, 32, 64, 128, 256, 512})),
    commit_seconds(
      histogram(r, "shoutflow_journal_commit_seconds",
                "Seconds from BEGIN to COMMIT of one batch",
                {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1})),
    duplicates(failures(r).Add({{"reason", "duplicate"}})),
    precondition_failures(failures(r).Add({{"reason", "precondition"}})),
    conflicts(failures(r).Add({{"reason", "conflict"}})),
    unavailable(failures(r).Add({{"reason", "unavailable"}})),
    fenced(failures(r).Add({{"reason", "fenced"}})),
    one_statement_batches(paths(r).Add({{"path", "one_statement"}})),
    refused_appends(paths(r).Add({{"path", "refused"}})),
    in_doubt(counter(r, "shoutflow_journal_writes_in_doubt_total",
                     "Entity writes answered as in doubt: still queued or "
                     "being written when their write timeout came")) {
  auto& by_type = prometheus::BuildCounter()
                    .Name("shoutflow_journal_events_appended_total")
                    .Help("Events committed, by event type")
                    .Register(r);
  other_type_ = &by_type.Add({{"type", "other"}});
  for (auto& t : event_types)
    by_type_.emplace(t, &by_type.Add({{"type", t}}));
}

prometheus::Counter& journal_metrics::appended(const std::string& type) const {
  auto it = by_type_.find(type);
  return it == by_type_.end() ? *other_type_ : *it->second;
}

} // namespace shoutflow::journal
