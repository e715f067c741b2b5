#pragma once

// Prometheus metrics of the CommandService, declared together and injected:
//   shoutflow_command_requests_total{method, code}
//   shoutflow_command_duration_seconds{method}  (gRPC in -> reply)

#include "services/common/rpc_metrics.hpp"

namespace shoutflow::services {

struct command_metrics {
  explicit command_metrics(prometheus::Registry& registry);

  rpc_metrics requests;
};

} // namespace shoutflow::services
