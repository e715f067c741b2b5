#pragma once

// shoutflowd configuration: every setting is a flag (--name=value or
// --name value) and a SHOUTFLOW_* environment variable; flags win. Values
// are validated at start and any error names the setting. `--help` lists
// them all with defaults (docs/configuration.md mirrors that list).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "actors/common/password_hasher.hpp"

namespace shoutflow::node {

struct node_config {
  std::string db_url = "postgresql://shoutflow@127.0.0.1:5544/shoutflow";
  std::vector<std::string> roles = {"command", "query", "entities",
                                    "projections"};
  int node_id = 0;
  std::string bind = "127.0.0.1";
  /// 0 picks a free port (tests).
  int command_port = 50051;
  int query_port = 50052;
  int admin_port = 50053;
  /// -1 disables the metrics endpoint.
  int metrics_port = 9464;
  /// CAF port other nodes connect to (0: any free port).
  int caf_port = 50054;
  /// Host other nodes reach this one at; empty: the bind address.
  std::string advertise_host;
  /// Membership round: heartbeat, lease renewal and allocation.
  std::chrono::milliseconds heartbeat_interval{500};
  /// Lease lifetime; a member silent this long is declared down.
  std::chrono::milliseconds lease_ttl{3000};
  /// SIGTERM: longest the node takes to hand everything off and stop.
  std::chrono::milliseconds shutdown_grace{std::chrono::seconds(20)};
  /// SIGTERM: how long the node reports NOT_SERVING while still serving
  /// everything, before it hands off, so load balancers stop sending first.
  std::chrono::milliseconds drain_delay{0};
  uint32_t shards = 256;
  std::chrono::microseconds journal_batch_window{500};
  std::size_t journal_max_batch = 256;
  std::size_t journal_writers = 2;
  std::size_t store_readers = 4;
  int64_t snapshot_every = 100;
  std::chrono::milliseconds passivate_after{std::chrono::minutes(2)};
  std::size_t max_active_entities = 100000;
  int login_max_failures = 5;
  std::chrono::milliseconds login_failure_window{std::chrono::minutes(15)};
  std::chrono::milliseconds login_lock{std::chrono::minutes(15)};
  pwhash_params pwhash = pwhash_params::interactive();
  std::size_t hashers = 2;
  std::chrono::milliseconds request_timeout{std::chrono::seconds(5)};
  int max_message_bytes = 64 * 1024;
  std::size_t scheduler_threads = 0; // 0: one per core
  int32_t projection_partitions = 2;
  int64_t projection_batch = 2000;
  int64_t projection_rebuild_batch = 50000;
  std::chrono::milliseconds projection_poll{200};
  std::chrono::milliseconds projection_linger{25};
  int64_t celebrity_threshold = 10000;
  int64_t timeline_cap = 800;
  std::size_t query_workers = 4;
  std::size_t timeline_pages = 10000;
  std::chrono::milliseconds query_max_wait{std::chrono::seconds(5)};
  std::size_t watch_buffer = 256;
  std::string log_level = "info";
  /// "text" or "json" (one object per line).
  std::string log_format = "text";
  /// Apply migrations and exit.
  bool migrate_only = false;

  bool has_role(const std::string& role) const;
};

struct parse_result {
  std::optional<node_config> config;
  /// Set on error (naming the setting) or for --help (the usage text).
  std::string message;
  bool help = false;
};

/// Parses flags over environment variables over defaults. `env` looks a
/// variable up (getenv in production; a map in tests).
using env_lookup
  = std::function<std::optional<std::string>(const std::string&)>;

parse_result parse_config(const std::vector<std::string>& args,
                          const env_lookup& env);

std::optional<std::string> process_env(const std::string& name);

/// "500us", "20ms", "5s", "2m", "1h"; a bare number means milliseconds.
std::optional<std::chrono::microseconds> parse_duration(const std::string& s);

std::string usage();

} // namespace shoutflow::node
