#include "services/common/rpc_metrics.hpp"

#include <stdexcept>

#include "services/common/grpc_status.hpp"

namespace shoutflow::services {

namespace {

// From half a millisecond (a cached read) to the longest request deadline.
const prometheus::Histogram::BucketBoundaries latency_buckets{
  0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};

} // namespace

void rpc_metrics::method_series::record(grpc::StatusCode code,
                                        double seconds) const {
  auto i = static_cast<std::size_t>(code);
  if (i >= by_code.size())
    i = static_cast<std::size_t>(grpc::StatusCode::INTERNAL);
  by_code[i]->Increment();
  duration->Observe(seconds);
}

rpc_metrics::rpc_metrics(prometheus::Registry& r, const std::string& prefix,
                         const std::string& service,
                         const std::vector<std::string>& methods) {
  auto& requests = prometheus::BuildCounter()
                     .Name(prefix + "_requests_total")
                     .Help(service + " requests by method and status code")
                     .Register(r);
  auto& duration = prometheus::BuildHistogram()
                     .Name(prefix + "_duration_seconds")
                     .Help(service
                           + " request latency by method, from the request's "
                             "arrival to its reply")
                     .Register(r);
  for (auto& m : methods) {
    method_series s;
    for (std::size_t c = 0; c < s.by_code.size(); ++c)
      s.by_code[c] = &requests.Add(
        {{"method", m},
         {"code", code_label(static_cast<grpc::StatusCode>(c))}});
    s.duration = &duration.Add({{"method", m}}, latency_buckets);
    methods_.emplace(m, s);
  }
}

const rpc_metrics::method_series&
rpc_metrics::method(const std::string& name) const {
  auto it = methods_.find(name);
  if (it == methods_.end())
    throw std::logic_error("rpc_metrics: unknown method " + name);
  return it->second;
}

} // namespace shoutflow::services
