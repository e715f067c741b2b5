#pragma once

// Prometheus metrics of the CommandService, declared together and injected.

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <string>

namespace shoutflow::services {

struct command_metrics {
  explicit command_metrics(prometheus::Registry& registry);

  /// shoutflow_command_requests_total{method, code}
  prometheus::Family<prometheus::Counter>& requests;
  /// shoutflow_command_duration_seconds{method}
  prometheus::Family<prometheus::Histogram>& duration;

  void record(const std::string& method, const std::string& code,
              double seconds);
};

} // namespace shoutflow::services
