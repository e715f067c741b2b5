#pragma once

// A real Prometheus server (Debian's `prometheus`, installed by the
// scripts; $PROMETHEUS overrides the binary) for tests: started on a free
// loopback port with a generated configuration that scrapes `targets`
// every second, and a storage directory of its own, both removed — with the
// process, SIGTERMed and reaped — on destruction. Its log is kept in that
// directory and returned by log() for failure messages.
//
// Queries go through the HTTP API (/api/v1/query). The helpers below read
// the few things tests need from its compact JSON answer.

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <set>
#include <string>
#include <vector>

#include "tests/support/http_get.hpp"

namespace shoutflow::testing {

struct prometheus_options {
  /// "host:port" of every metrics endpoint, scraped as job "shoutflow".
  std::vector<std::string> targets;
  /// Rule files to load (recording and alerting rules).
  std::vector<std::string> rule_files;
  std::chrono::milliseconds scrape_interval{1000};
};

class prometheus_server {
public:
  explicit prometheus_server(prometheus_options options);
  ~prometheus_server();

  prometheus_server(const prometheus_server&) = delete;
  prometheus_server& operator=(const prometheus_server&) = delete;

  /// Empty once the server answers /-/ready; else why it did not start.
  const std::string& error() const {
    return error_;
  }
  int port() const {
    return port_;
  }

  /// An instant query; the reply's body is the API's JSON.
  http_reply query(const std::string& expr) const;

  /// The server's output so far.
  std::string log() const;

private:
  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;
  std::string error_;
};

/// "status":"success" in an API answer.
bool query_succeeded(const std::string& json);
/// The API's "error" message, if any.
std::string query_error(const std::string& json);
/// Series in a vector/matrix answer (a scalar or string answer counts 1).
std::size_t result_count(const std::string& json);
/// The values of label `name` over the answer's series.
std::set<std::string> label_values(const std::string& json,
                                   const std::string& name);

} // namespace shoutflow::testing
