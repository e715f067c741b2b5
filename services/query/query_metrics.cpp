#include "services/query/query_metrics.hpp"

namespace shoutflow::services {

namespace {

prometheus::Family<prometheus::Counter>& page_reads(prometheus::Registry& r) {
  return prometheus::BuildCounter()
    .Name("shoutflow_query_timeline_pages_total")
    .Help("First pages of home timelines asked for, by where they were "
          "answered from: memory (hit) or the database (miss)")
    .Register(r);
}

prometheus::Family<prometheus::Counter>& dropped(prometheus::Registry& r) {
  return prometheus::BuildCounter()
    .Name("shoutflow_watch_dropped_total")
    .Help("Watch streams ended with RESOURCE_EXHAUSTED because the consumer "
          "fell behind, by reason")
    .Register(r);
}

} // namespace

query_metrics::query_metrics(prometheus::Registry& r)
  : requests(r, "shoutflow_query", "QueryService (unary reads)",
             {"GetUser", "GetShout", "GetTimeline", "GetUserShouts",
              "ListFollowers", "ListFollowing", "GetLoginHistory",
              "SearchUsers"}),
    watch_changes_sent(prometheus::BuildCounter()
                         .Name("shoutflow_watch_changes_sent_total")
                         .Help("DocumentChanges written to Watch streams")
                         .Register(r)
                         .Add({})),
    watch_dropped_slow_client(dropped(r).Add({{"reason", "slow_client"}})),
    watch_dropped_backlog(dropped(r).Add({{"reason", "backlog"}})),
    page_hits(page_reads(r).Add({{"from", "memory"}})),
    page_misses(page_reads(r).Add({{"from", "database"}})) {
}

} // namespace shoutflow::services
