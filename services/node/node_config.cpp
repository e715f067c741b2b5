#include "services/node/node_config.hpp"

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <sstream>

#include "actors/common/id_generator.hpp"
#include "actors/common/log.hpp"
#include "actors/user/user_domain.hpp"

namespace shoutflow::node {

namespace {

using setter
  = std::function<std::optional<std::string>(node_config&, const std::string&)>;

struct option {
  std::string name; // flag without "--"
  std::string help;
  std::string fallback; // default, as text
  setter set;
  bool is_switch = false;

  std::string env() const {
    std::string out = "SHOUTFLOW_";
    for (auto c : name)
      out += c == '-' ? '_' : static_cast<char>(std::toupper(c));
    return out;
  }
};

std::optional<long long> parse_int(const std::string& s) {
  if (s.empty())
    return std::nullopt;
  char* end = nullptr;
  errno = 0;
  auto v = std::strtoll(s.c_str(), &end, 10);
  if (errno != 0 || *end != '\0')
    return std::nullopt;
  return v;
}

template <class T>
setter int_setter(T node_config::*field, long long min, long long max) {
  return
    [=](node_config& c, const std::string& v) -> std::optional<std::string> {
      auto n = parse_int(v);
      if (!n || *n < min || *n > max)
        return "must be an integer from " + std::to_string(min) + " to "
               + std::to_string(max);
      c.*field = static_cast<T>(*n);
      return std::nullopt;
    };
}

template <class D>
setter duration_setter(D node_config::*field, std::chrono::microseconds min,
                       std::chrono::microseconds max) {
  return
    [=](node_config& c, const std::string& v) -> std::optional<std::string> {
      auto d = parse_duration(v);
      if (!d || *d < min || *d > max)
        return "must be a duration like 500us, 20ms, 5s, 2m (from "
               + std::to_string(min.count()) + "us to "
               + std::to_string(max.count()) + "us)";
      c.*field = std::chrono::duration_cast<D>(*d);
      return std::nullopt;
    };
}

setter port_setter(int node_config::*field, int min) {
  return int_setter(field, min, 65535);
}

const std::vector<option>& options() {
  using namespace std::chrono;
  static const std::vector<option> all = {
    {"db-url", "PostgreSQL connection URL", node_config{}.db_url,
     [](node_config& c, const std::string& v) -> std::optional<std::string> {
       if (v.empty())
         return "must not be empty";
       c.db_url = v;
       return std::nullopt;
     }},
    {"roles", "comma-separated roles: command, query, entities, projections",
     "command,query,entities,projections",
     [](node_config& c, const std::string& v) -> std::optional<std::string> {
       static const std::vector<std::string> known
         = {"command", "query", "entities", "projections"};
       std::vector<std::string> roles;
       std::stringstream in{v};
       std::string role;
       while (std::getline(in, role, ',')) {
         if (std::find(known.begin(), known.end(), role) == known.end())
           return "unknown role '" + role
                  + "' (known: command, query, entities, projections)";
         roles.push_back(role);
       }
       if (roles.empty())
         return "must name at least one role";
       c.roles = roles;
       return std::nullopt;
     }},
    {"node-id", "node number, unique in the cluster (0-1023)", "0",
     int_setter(&node_config::node_id, 0, snowflake_generator::max_node_id)},
    {"bind", "address the gRPC and metrics ports listen on", "127.0.0.1",
     [](node_config& c, const std::string& v) -> std::optional<std::string> {
       if (v.empty())
         return "must not be empty";
       c.bind = v;
       return std::nullopt;
     }},
    {"command-port", "CommandService gRPC port (0: any free port)", "50051",
     port_setter(&node_config::command_port, 0)},
    {"query-port", "QueryService gRPC port", "50052",
     port_setter(&node_config::query_port, 0)},
    {"admin-port", "AdminService gRPC port", "50053",
     port_setter(&node_config::admin_port, 0)},
    {"metrics-port", "Prometheus /metrics HTTP port (-1: off)", "9464",
     port_setter(&node_config::metrics_port, -1)},
    {"caf-port", "CAF port other nodes connect to (0: any free port)", "50054",
     port_setter(&node_config::caf_port, 0)},
    {"advertise-host",
     "host other nodes reach this one at (default: the bind address; in a "
     "pod, its DNS name)",
     "",
     [](node_config& c, const std::string& v) -> std::optional<std::string> {
       c.advertise_host = v;
       return std::nullopt;
     }},
    {"heartbeat-interval",
     "membership round: heartbeat, lease renewal and allocation", "500ms",
     duration_setter(&node_config::heartbeat_interval, milliseconds(10),
                     minutes(1))},
    {"lease-ttl",
     "lease lifetime; a member silent this long is declared down (at least "
     "three heartbeat intervals)",
     "3s",
     duration_setter(&node_config::lease_ttl, milliseconds(100), minutes(10))},
    {"shutdown-grace",
     "SIGTERM: longest the node takes to hand everything off and stop", "20s",
     duration_setter(&node_config::shutdown_grace, milliseconds(100),
                     minutes(30))},
    {"drain-delay",
     "SIGTERM: time the node reports NOT_SERVING while still serving, "
     "before it hands off (lets load balancers and Kubernetes endpoints "
     "catch up)",
     "0s",
     duration_setter(&node_config::drain_delay, milliseconds(0), minutes(5))},
    {"shards", "number of user shards (fixed for the cluster's life)", "256",
     int_setter(&node_config::shards, 1, 65536)},
    {"journal-batch-window", "longest wait to gather a group commit", "500us",
     duration_setter(&node_config::journal_batch_window, microseconds(0),
                     seconds(1))},
    {"journal-max-batch", "most entity writes in one transaction", "256",
     int_setter(&node_config::journal_max_batch, 1, 10000)},
    {"journal-writers", "journal connections writing batches in parallel", "2",
     int_setter(&node_config::journal_writers, 1, 64)},
    {"store-readers", "connections serving entity reads", "4",
     int_setter(&node_config::store_readers, 1, 256)},
    {"snapshot-every", "events between snapshots of an entity (0: never)",
     "100", int_setter(&node_config::snapshot_every, 0, 1000000)},
    {"passivate-after", "idle time before an entity leaves memory", "2m",
     duration_setter(&node_config::passivate_after, milliseconds(10),
                     hours(24))},
    {"max-active-entities", "entities in memory at most", "100000",
     int_setter(&node_config::max_active_entities, 1, 100000000)},
    {"login-max-failures", "failed logins within the window that lock", "5",
     int_setter(&node_config::login_max_failures, 1,
                static_cast<long long>(user::max_login_failures_limit))},
    {"login-failure-window", "window for counting failed logins", "15m",
     duration_setter(&node_config::login_failure_window, seconds(1),
                     hours(24 * 30))},
    {"login-lock", "how long an account stays locked", "15m",
     duration_setter(&node_config::login_lock, seconds(1), hours(24 * 30))},
    {"pwhash-opslimit",
     "argon2id passes (production: libsodium interactive = 2)",
     std::to_string(pwhash_params::interactive().opslimit),
     [](node_config& c, const std::string& v) -> std::optional<std::string> {
       auto n = parse_int(v);
       if (!n || *n < 1)
         return "must be a positive integer";
       c.pwhash.opslimit = static_cast<unsigned long long>(*n);
       return c.pwhash.check();
     }},
    {"pwhash-memlimit",
     "argon2id memory in bytes (production: libsodium interactive = 64 MiB)",
     std::to_string(pwhash_params::interactive().memlimit),
     [](node_config& c, const std::string& v) -> std::optional<std::string> {
       auto n = parse_int(v);
       if (!n || *n < 1)
         return "must be a positive integer";
       c.pwhash.memlimit = static_cast<std::size_t>(*n);
       return c.pwhash.check();
     }},
    {"hashers", "threads hashing passwords", "2",
     int_setter(&node_config::hashers, 1, 64)},
    {"request-timeout", "upper bound for one request inside the node", "5s",
     duration_setter(&node_config::request_timeout, milliseconds(10),
                     minutes(10))},
    {"max-message-bytes", "largest gRPC request accepted", "65536",
     int_setter(&node_config::max_message_bytes, 1024, 64 * 1024 * 1024)},
    {"scheduler-threads", "CAF scheduler threads (0: one per core)", "0",
     int_setter(&node_config::scheduler_threads, 0, 256)},
    {"projection-partitions",
     "partitions per projection (changing it needs a rebuild)", "2",
     int_setter(&node_config::projection_partitions, 1, 64)},
    {"projection-batch", "events a live projection reader fetches at once",
     "2000", int_setter(&node_config::projection_batch, 1, 100000)},
    {"projection-rebuild-batch",
     "events a rebuild reads and applies at once (larger: fewer writes of "
     "each read-model row, more memory)",
     "50000", int_setter(&node_config::projection_rebuild_batch, 1, 200000)},
    {"projection-poll", "projection polling interval when idle", "200ms",
     duration_setter(&node_config::projection_poll, milliseconds(1),
                     minutes(1))},
    {"projection-linger",
     "a live projection reader fetches at most once per this interval: "
     "under load, larger batches for less CPU per event (0: at every "
     "wake-up)",
     "25ms",
     duration_setter(&node_config::projection_linger, milliseconds(0),
                     seconds(1))},
    {"celebrity-threshold",
     "followers from which an author's shouts are merged at read time "
     "instead of fanned out",
     "10000", int_setter(&node_config::celebrity_threshold, 1, 1000000000)},
    {"timeline-cap", "entries a home timeline keeps", "800",
     int_setter(&node_config::timeline_cap, 1, 100000)},
    {"query-workers", "connections serving QueryService reads", "4",
     int_setter(&node_config::query_workers, 1, 256)},
    {"timeline-pages",
     "first pages of home timelines GetTimeline answers from memory, kept "
     "exact by the watch hub (0: none)",
     "10000", int_setter(&node_config::timeline_pages, 0, 10000000)},
    {"query-max-wait",
     "longest a read waits for min_position (a client deadline can shorten "
     "it)",
     "5s",
     duration_setter(&node_config::query_max_wait, milliseconds(1),
                     minutes(10))},
    {"watch-buffer", "changes a Watch stream may have unsent", "256",
     int_setter(&node_config::watch_buffer, 1, 1000000)},
    {"log-level", "debug, info, warn or error", "info",
     [](node_config& c, const std::string& v) -> std::optional<std::string> {
       if (v != "debug" && v != "info" && v != "warn" && v != "error")
         return "must be debug, info, warn or error";
       c.log_level = v;
       return std::nullopt;
     }},
    {"log-format", "text (one line per entry) or json (one object per line)",
     "text",
     [](node_config& c, const std::string& v) -> std::optional<std::string> {
       if (v != "text" && v != "json")
         return "must be text or json";
       c.log_format = v;
       return std::nullopt;
     }},
    {"migrate-only", "apply database migrations, then exit", "false",
     [](node_config& c, const std::string& v) -> std::optional<std::string> {
       if (v != "true" && v != "false" && v != "1" && v != "0")
         return "must be true or false";
       c.migrate_only = v == "true" || v == "1";
       return std::nullopt;
     },
     true},
  };
  return all;
}

} // namespace

bool node_config::has_role(const std::string& role) const {
  return std::find(roles.begin(), roles.end(), role) != roles.end();
}

std::optional<std::chrono::microseconds> parse_duration(const std::string& s) {
  using namespace std::chrono;
  std::size_t digits = 0;
  while (digits < s.size()
         && std::isdigit(static_cast<unsigned char>(s[digits])))
    ++digits;
  if (digits == 0 || digits > 12)
    return std::nullopt;
  auto n = std::stoll(s.substr(0, digits));
  auto unit = s.substr(digits);
  int64_t micros_per_unit = 0;
  if (unit == "us")
    micros_per_unit = 1;
  else if (unit == "ms" || unit.empty())
    micros_per_unit = 1000;
  else if (unit == "s")
    micros_per_unit = 1000 * 1000;
  else if (unit == "m")
    micros_per_unit = 60LL * 1000 * 1000;
  else if (unit == "h")
    micros_per_unit = 3600LL * 1000 * 1000;
  else
    return std::nullopt;
  if (n > microseconds::max().count() / micros_per_unit)
    return std::nullopt; // would overflow
  return microseconds(n * micros_per_unit);
}

std::optional<std::string> process_env(const std::string& name) {
  if (auto* v = std::getenv(name.c_str()))
    return std::string{v};
  return std::nullopt;
}

std::string usage() {
  std::string out = "usage: shoutflowd [--setting=value ...]\n\n"
                    "Every setting is also read from the environment variable "
                    "shown; a flag wins.\n\n";
  for (auto& o : options()) {
    out += "  --" + o.name + (o.is_switch ? "" : "=VALUE");
    out += "\n      " + o.help + " (" + o.env() + ", default " + o.fallback
           + ")\n";
  }
  return out;
}

parse_result parse_config(const std::vector<std::string>& args,
                          const env_lookup& env) {
  parse_result result;
  node_config cfg;
  auto apply = [&](const option& o, const std::string& value,
                   const std::string& source) -> bool {
    if (auto err = o.set(cfg, value)) {
      result.message = source + ": " + *err + " (got '" + value + "')";
      return false;
    }
    return true;
  };
  for (auto& arg : args)
    if (arg == "--help" || arg == "-h") {
      result.help = true;
      result.message = usage();
      return result;
    }
  for (auto& o : options())
    if (auto v = env(o.env()); v && !apply(o, *v, o.env()))
      return result;
  for (std::size_t i = 0; i < args.size(); ++i) {
    auto& arg = args[i];
    if (arg == "--help" || arg == "-h") {
      result.help = true;
      result.message = usage();
      return result;
    }
    if (arg.rfind("--", 0) != 0) {
      result.message = "unexpected argument '" + arg + "' (see --help)";
      return result;
    }
    auto eq = arg.find('=');
    auto name = arg.substr(2, eq == std::string::npos ? std::string::npos
                                                      : eq - 2);
    auto o = std::find_if(options().begin(), options().end(),
                          [&](auto& opt) { return opt.name == name; });
    if (o == options().end()) {
      result.message = "unknown setting --" + name + " (see --help)";
      return result;
    }
    std::string value;
    if (eq != std::string::npos) {
      value = arg.substr(eq + 1);
    } else if (o->is_switch) {
      value = "true";
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      result.message = "--" + name + " needs a value";
      return result;
    }
    if (!apply(*o, value, "--" + name))
      return result;
  }
  if (cfg.lease_ttl < cfg.heartbeat_interval * 3) {
    result.message = "--lease-ttl (" + std::to_string(cfg.lease_ttl.count())
                     + "ms) must be at least three --heartbeat-interval ("
                     + std::to_string(cfg.heartbeat_interval.count())
                     + "ms): a lease must survive a missed round";
    return result;
  }
  if (cfg.drain_delay >= cfg.shutdown_grace) {
    result.message = "--drain-delay (" + std::to_string(cfg.drain_delay.count())
                     + "ms) must be shorter than --shutdown-grace ("
                     + std::to_string(cfg.shutdown_grace.count())
                     + "ms): the hand-off needs time after it";
    return result;
  }
  result.config = std::move(cfg);
  return result;
}

} // namespace shoutflow::node
