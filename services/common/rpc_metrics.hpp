#pragma once

// Requests of one gRPC service by method and status code, and their latency
// by method: `<prefix>_requests_total{method, code}` and
// `<prefix>_duration_seconds{method}`.
//
// Every label child is resolved when the service is built: a request only
// reads an immutable map and bumps an atomic (the histogram takes its own
// per-series lock). Family::Add, which locks the family and hashes the
// labels, never runs on the request path.

#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <grpcpp/support/status_code_enum.h>

#include <array>
#include <string>
#include <unordered_map>
#include <vector>

namespace shoutflow::services {

class rpc_metrics {
public:
  /// One method's series.
  struct method_series {
    /// Indexed by grpc::StatusCode (0 .. 16); codes that share a label
    /// (services/common/grpc_status.hpp, code_label) share a counter.
    std::array<prometheus::Counter*, 17> by_code{};
    prometheus::Histogram* duration = nullptr;

    void record(grpc::StatusCode code, double seconds) const;
  };

  rpc_metrics(prometheus::Registry& registry, const std::string& prefix,
              const std::string& service,
              const std::vector<std::string>& methods);

  /// The series of `method`; unknown methods are a programming error.
  const method_series& method(const std::string& name) const;

private:
  std::unordered_map<std::string, method_series> methods_;
};

} // namespace shoutflow::services
