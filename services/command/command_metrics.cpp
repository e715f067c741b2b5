#include "services/command/command_metrics.hpp"

namespace shoutflow::services {

command_metrics::command_metrics(prometheus::Registry& r)
  : requests(prometheus::BuildCounter()
               .Name("shoutflow_command_requests_total")
               .Help("CommandService requests by method and status code")
               .Register(r)),
    duration(prometheus::BuildHistogram()
               .Name("shoutflow_command_duration_seconds")
               .Help("CommandService request latency by method")
               .Register(r)) {
}

void command_metrics::record(const std::string& method,
                             const std::string& code, double seconds) {
  requests.Add({{"method", method}, {"code", code}}).Increment();
  duration
    .Add({{"method", method}},
         prometheus::Histogram::BucketBoundaries{0.0005, 0.001, 0.002, 0.005,
                                                 0.01, 0.02, 0.05, 0.1, 0.25,
                                                 0.5, 1, 5})
    .Observe(seconds);
}

} // namespace shoutflow::services
