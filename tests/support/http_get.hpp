#pragma once

// A minimal HTTP/1.0 GET for tests: the metrics endpoint and Prometheus's
// HTTP API on loopback. No keep-alive, no chunked encoding (HTTP/1.0
// replies end with the connection).

#include <chrono>
#include <string>

namespace shoutflow::testing {

struct http_reply {
  /// 0: no answer (refused, timed out, malformed).
  int status = 0;
  std::string body;
  /// Why status is 0.
  std::string error;
};

/// GET http://host:port/target within `timeout`.
http_reply
http_get(const std::string& host, int port, const std::string& target,
         std::chrono::milliseconds timeout = std::chrono::seconds(10));

/// Percent-encodes everything but RFC 3986's unreserved characters.
std::string url_encode(const std::string& s);

} // namespace shoutflow::testing
