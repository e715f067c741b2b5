#pragma once

// gRPC requests in flight per service, counted by a server interceptor:
//   shoutflow_grpc_requests_in_flight{service="command"|"query"|"admin"|"watch"}
//
// gRPC creates one interceptor per RPC and destroys it with the call's
// context, after the reply (or the stream's end) has gone out: the gauge
// goes up in its constructor and down in its destructor, so every RPC of
// a server is counted — health checks and reflection included — however
// its handler finishes. Watch streams live for minutes; they have their own
// label so they do not drown the unary requests of the QueryService.

#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <grpcpp/support/server_interceptor.h>

#include <memory>
#include <string>
#include <vector>

namespace shoutflow::services {

struct in_flight_metrics {
  explicit in_flight_metrics(prometheus::Registry& registry);

  prometheus::Family<prometheus::Gauge>& family;
  prometheus::Gauge& command;
  prometheus::Gauge& query;
  prometheus::Gauge& admin;
  prometheus::Gauge& watch;

  /// Interceptor creators for a server whose RPCs count under `unary`;
  /// server-streaming RPCs (Watch) count under `streams` (may be the same).
  std::vector<
    std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
  interceptors(prometheus::Gauge& unary, prometheus::Gauge& streams) const;
};

} // namespace shoutflow::services
