// shoutflowd configuration (services/node/node_config.hpp): defaults, then
// SHOUTFLOW_* environment variables, then flags; every error names the
// setting. The environment is an injected map, never the process's.

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <map>
#include <regex>
#include <string>
#include <vector>

#include "services/node/node_config.hpp"

namespace shoutflow::node {
namespace {

using namespace std::chrono_literals;
using args = std::vector<std::string>;
using env_map = std::map<std::string, std::string>;

env_lookup lookup(const env_map& env) {
  return [env](const std::string& name) -> std::optional<std::string> {
    auto it = env.find(name);
    if (it == env.end())
      return std::nullopt;
    return it->second;
  };
}

parse_result parse(const args& a, const env_map& env = {}) {
  return parse_config(a, lookup(env));
}

/// The parsed config, failing the test when parsing failed.
node_config ok(const args& a, const env_map& env = {}) {
  auto r = parse(a, env);
  EXPECT_TRUE(r.config.has_value()) << r.message;
  EXPECT_FALSE(r.help);
  return r.config.value_or(node_config{});
}

/// The error message, failing the test when parsing succeeded.
std::string error(const args& a, const env_map& env = {}) {
  auto r = parse(a, env);
  EXPECT_FALSE(r.config.has_value()) << "accepted: " << a.size() << " args";
  EXPECT_FALSE(r.message.empty());
  EXPECT_FALSE(r.help);
  return r.message;
}

::testing::AssertionResult names(const std::string& message,
                                 const std::string& what) {
  if (message.find(what) == std::string::npos)
    return ::testing::AssertionFailure()
           << "'" << message << "' does not name " << what;
  return ::testing::AssertionSuccess();
}

// ---- defaults --------------------------------------------------------------

TEST(node_config, defaults_without_flags_or_environment) {
  auto c = ok({});
  EXPECT_EQ(c.db_url, "postgresql://shoutflow@127.0.0.1:5544/shoutflow");
  EXPECT_EQ(c.roles, (args{"command", "query", "entities", "projections"}));
  for (auto role : {"command", "query", "entities", "projections"})
    EXPECT_TRUE(c.has_role(role)) << role;
  EXPECT_FALSE(c.has_role("admin"));
  EXPECT_EQ(c.node_id, 0);
  EXPECT_EQ(c.bind, "127.0.0.1");
  EXPECT_EQ(c.command_port, 50051) << "shared/API.md ports";
  EXPECT_EQ(c.query_port, 50052);
  EXPECT_EQ(c.admin_port, 50053);
  EXPECT_EQ(c.metrics_port, 9464);
  EXPECT_EQ(c.shards, 256u);
  EXPECT_EQ(c.journal_batch_window, 500us);
  EXPECT_EQ(c.journal_max_batch, 256u);
  EXPECT_EQ(c.journal_writers, 2u);
  EXPECT_EQ(c.store_readers, 4u);
  EXPECT_EQ(c.snapshot_every, 100);
  EXPECT_EQ(c.passivate_after, 2min);
  EXPECT_EQ(c.max_active_entities, 100000u);
  EXPECT_EQ(c.login_max_failures, 5);
  EXPECT_EQ(c.login_failure_window, 15min);
  EXPECT_EQ(c.login_lock, 15min);
  EXPECT_EQ(c.pwhash.opslimit, pwhash_params::interactive().opslimit)
    << "production keeps libsodium's interactive limits";
  EXPECT_EQ(c.pwhash.memlimit, pwhash_params::interactive().memlimit);
  EXPECT_EQ(c.hashers, 2u);
  EXPECT_EQ(c.request_timeout, 5s);
  EXPECT_EQ(c.max_message_bytes, 64 * 1024);
  EXPECT_EQ(c.scheduler_threads, 0u);
  EXPECT_EQ(c.log_level, "info");
  EXPECT_FALSE(c.migrate_only);
}

TEST(node_config, the_documented_defaults_are_the_defaults) {
  // Feed every "(SHOUTFLOW_X, default V)" of --help back in as the
  // environment: the result must equal the built-in defaults.
  auto text = usage();
  std::regex entry{R"(\((SHOUTFLOW_[A-Z_]+), default ([^)]*)\))"};
  env_map env;
  for (std::sregex_iterator it{text.begin(), text.end(), entry}, end; it != end;
       ++it)
    env[(*it)[1]] = (*it)[2];
  EXPECT_GE(env.size(), 27u) << text;
  auto c = ok({}, env);
  node_config d;
  EXPECT_EQ(c.db_url, d.db_url);
  EXPECT_EQ(c.roles, d.roles);
  EXPECT_EQ(c.node_id, d.node_id);
  EXPECT_EQ(c.bind, d.bind);
  EXPECT_EQ(c.command_port, d.command_port);
  EXPECT_EQ(c.query_port, d.query_port);
  EXPECT_EQ(c.admin_port, d.admin_port);
  EXPECT_EQ(c.metrics_port, d.metrics_port);
  EXPECT_EQ(c.shards, d.shards);
  EXPECT_EQ(c.journal_batch_window, d.journal_batch_window);
  EXPECT_EQ(c.journal_max_batch, d.journal_max_batch);
  EXPECT_EQ(c.journal_writers, d.journal_writers);
  EXPECT_EQ(c.store_readers, d.store_readers);
  EXPECT_EQ(c.snapshot_every, d.snapshot_every);
  EXPECT_EQ(c.passivate_after, d.passivate_after);
  EXPECT_EQ(c.max_active_entities, d.max_active_entities);
  EXPECT_EQ(c.login_max_failures, d.login_max_failures);
  EXPECT_EQ(c.login_failure_window, d.login_failure_window);
  EXPECT_EQ(c.login_lock, d.login_lock);
  EXPECT_EQ(c.pwhash.opslimit, d.pwhash.opslimit);
  EXPECT_EQ(c.pwhash.memlimit, d.pwhash.memlimit);
  EXPECT_EQ(c.hashers, d.hashers);
  EXPECT_EQ(c.request_timeout, d.request_timeout);
  EXPECT_EQ(c.max_message_bytes, d.max_message_bytes);
  EXPECT_EQ(c.scheduler_threads, d.scheduler_threads);
  EXPECT_EQ(c.log_level, d.log_level);
  EXPECT_EQ(c.migrate_only, d.migrate_only);
}

TEST(node_config, only_shoutflow_variables_are_read) {
  std::vector<std::string> asked;
  auto spy = [&](const std::string& name) -> std::optional<std::string> {
    asked.push_back(name);
    return std::nullopt;
  };
  auto r = parse_config({}, spy);
  ASSERT_TRUE(r.config.has_value());
  EXPECT_GE(asked.size(), 27u);
  std::regex shape{"SHOUTFLOW_[A-Z0-9_]+"};
  for (auto& name : asked)
    EXPECT_TRUE(std::regex_match(name, shape)) << name;
  EXPECT_NE(std::find(asked.begin(), asked.end(), "SHOUTFLOW_DB_URL"),
            asked.end());
  EXPECT_NE(std::find(asked.begin(), asked.end(),
                      "SHOUTFLOW_JOURNAL_BATCH_WINDOW"),
            asked.end())
    << "dashes become underscores";
}

// ---- precedence ------------------------------------------------------------

TEST(node_config, environment_overrides_the_default) {
  auto c = ok({}, {{"SHOUTFLOW_NODE_ID", "7"},
                   {"SHOUTFLOW_DB_URL", "postgresql:///x"},
                   {"SHOUTFLOW_JOURNAL_BATCH_WINDOW", "2ms"},
                   {"SHOUTFLOW_ROLES", "query"}});
  EXPECT_EQ(c.node_id, 7);
  EXPECT_EQ(c.db_url, "postgresql:///x");
  EXPECT_EQ(c.journal_batch_window, 2ms);
  EXPECT_EQ(c.roles, args{"query"});
  EXPECT_EQ(c.shards, 256u) << "untouched settings keep their default";
}

TEST(node_config, a_flag_overrides_the_environment) {
  auto c = ok({"--node-id=9", "--db-url", "postgresql:///flag"},
              {{"SHOUTFLOW_NODE_ID", "7"},
               {"SHOUTFLOW_DB_URL", "postgresql:///env"}});
  EXPECT_EQ(c.node_id, 9);
  EXPECT_EQ(c.db_url, "postgresql:///flag");
}

TEST(node_config, a_bad_environment_value_is_an_error_even_under_a_flag) {
  // The environment is validated on its own: a bad variable is an error
  // that names the variable, even when a flag would override it.
  auto m = error({"--node-id=1"}, {{"SHOUTFLOW_NODE_ID", "many"}});
  EXPECT_TRUE(names(m, "SHOUTFLOW_NODE_ID"));
  EXPECT_TRUE(names(m, "many"));
}

TEST(node_config, the_last_flag_wins) {
  EXPECT_EQ(ok({"--shards=8", "--shards", "16"}).shards, 16u);
}

// ---- syntax ----------------------------------------------------------------

TEST(node_config, both_flag_forms) {
  auto eq = ok({"--command-port=6001", "--bind=0.0.0.0"});
  auto sp = ok({"--command-port", "6001", "--bind", "0.0.0.0"});
  EXPECT_EQ(eq.command_port, 6001);
  EXPECT_EQ(sp.command_port, 6001);
  EXPECT_EQ(eq.bind, "0.0.0.0");
  EXPECT_EQ(sp.bind, "0.0.0.0");
  EXPECT_EQ(ok({"--db-url=postgresql://u@h/db?a=b"}).db_url,
            "postgresql://u@h/db?a=b")
    << "only the first '=' separates";
}

TEST(node_config, an_unknown_flag_is_named) {
  auto m = error({"--shard=3"});
  EXPECT_TRUE(names(m, "--shard"));
  EXPECT_TRUE(names(m, "--help"));
  EXPECT_TRUE(names(error({"--nope"}), "--nope"));
}

TEST(node_config, a_positional_argument_is_an_error) {
  EXPECT_TRUE(names(error({"serve"}), "serve"));
  EXPECT_TRUE(names(error({"-x"}), "-x"));
}

TEST(node_config, a_missing_value_is_named) {
  auto m = error({"--node-id"});
  EXPECT_TRUE(names(m, "--node-id"));
  EXPECT_TRUE(names(m, "value"));
}

TEST(node_config, bad_values_name_the_setting_and_the_value) {
  struct bad {
    std::string flag;
    std::string value;
  };
  for (auto& b : std::vector<bad>{
         {"node-id", "-1"},
         {"node-id", "1024"},
         {"node-id", "3x"},
         {"node-id", ""},
         {"command-port", "65536"},
         {"command-port", "-1"},
         {"metrics-port", "-2"},
         {"shards", "0"},
         {"shards", "65537"},
         {"journal-max-batch", "0"},
         {"journal-writers", "65"},
         {"store-readers", "0"},
         {"snapshot-every", "-1"},
         {"max-active-entities", "0"},
         {"login-max-failures", "0"},
         {"hashers", "0"},
         {"max-message-bytes", "1023"},
         {"scheduler-threads", "257"},
         {"log-level", "verbose"},
         {"db-url", ""},
         {"bind", ""},
         {"roles", ""},
         {"pwhash-opslimit", "0"},
         {"pwhash-memlimit", "1"},
         {"migrate-only", "yes"},
         {"request-timeout", "soon"},
       }) {
    auto m = error({"--" + b.flag + "=" + b.value});
    EXPECT_TRUE(names(m, "--" + b.flag)) << b.value;
    EXPECT_TRUE(names(m, "'" + b.value + "'")) << m;
    std::string env = "SHOUTFLOW_";
    for (auto c : b.flag)
      env += c == '-' ? '_' : static_cast<char>(std::toupper(c));
    EXPECT_TRUE(names(error({}, {{env, b.value}}), env)) << b.value;
  }
}

TEST(node_config, the_accepted_edges_of_ranges) {
  auto c = ok({"--node-id=1023", "--command-port=0", "--query-port=65535",
               "--metrics-port=-1", "--shards=1", "--snapshot-every=0",
               "--scheduler-threads=256", "--max-message-bytes=1024"});
  EXPECT_EQ(c.node_id, 1023);
  EXPECT_EQ(c.command_port, 0);
  EXPECT_EQ(c.query_port, 65535);
  EXPECT_EQ(c.metrics_port, -1);
  EXPECT_EQ(c.shards, 1u);
  EXPECT_EQ(c.snapshot_every, 0);
  EXPECT_EQ(c.scheduler_threads, 256u);
  EXPECT_EQ(c.max_message_bytes, 1024);
}

TEST(node_config, password_hash_limits_are_checked_with_libsodium) {
  auto min = pwhash_params::minimum();
  auto c = ok({"--pwhash-opslimit=" + std::to_string(min.opslimit),
               "--pwhash-memlimit=" + std::to_string(min.memlimit)});
  EXPECT_EQ(c.pwhash.opslimit, min.opslimit);
  EXPECT_EQ(c.pwhash.memlimit, min.memlimit);
  auto m = error({"--pwhash-memlimit=1024"});
  EXPECT_TRUE(names(m, "--pwhash-memlimit"));
  EXPECT_TRUE(names(m, "memlimit must be between"));
}

TEST(node_config, log_levels) {
  for (auto level : {"debug", "info", "warn", "error"})
    EXPECT_EQ(ok({std::string("--log-level=") + level}).log_level, level);
}

// ---- durations -------------------------------------------------------------

TEST(node_config, parse_duration_units) {
  EXPECT_EQ(parse_duration("500us"), 500us);
  EXPECT_EQ(parse_duration("20ms"), 20ms);
  EXPECT_EQ(parse_duration("5s"), 5s);
  EXPECT_EQ(parse_duration("2m"), 2min);
  EXPECT_EQ(parse_duration("1h"), 1h);
  EXPECT_EQ(parse_duration("250"), 250ms) << "a bare number is milliseconds";
  EXPECT_EQ(parse_duration("0s"), 0us);
  EXPECT_EQ(parse_duration("999999999999us"), 999999999999us);
}

TEST(node_config, parse_duration_rejects_other_forms) {
  for (auto& bad : std::vector<std::string>{
         "", "s", "ms", "-5s", "+5s", "1.5s", "5 s", " 5s", "5S", "5sec",
         "5min", "5d", "5ns", "5us5", "1e3ms", "0x10ms", "1234567890123ms"})
    EXPECT_FALSE(parse_duration(bad).has_value()) << "'" << bad << "'";
}

TEST(node_config, durations_reach_the_config) {
  auto c = ok({"--journal-batch-window=500us", "--request-timeout=20ms",
               "--passivate-after=5s", "--login-lock=2m",
               "--login-failure-window=1h"});
  EXPECT_EQ(c.journal_batch_window, 500us);
  EXPECT_EQ(c.request_timeout, 20ms);
  EXPECT_EQ(c.passivate_after, 5s);
  EXPECT_EQ(c.login_lock, 2min);
  EXPECT_EQ(c.login_failure_window, 1h);
  EXPECT_EQ(ok({"--journal-batch-window=0us"}).journal_batch_window, 0us);
  EXPECT_EQ(ok({"--passivate-after", "1500"}).passivate_after, 1500ms);
}

TEST(node_config, durations_out_of_range_name_the_setting) {
  for (auto& a : args{"--journal-batch-window=2s", "--request-timeout=5ms",
                      "--request-timeout=11m", "--passivate-after=9ms",
                      "--passivate-after=25h", "--login-lock=500ms",
                      "--login-failure-window=31d", "--login-lock=721h"}) {
    auto m = error({a});
    EXPECT_TRUE(names(m, a.substr(0, a.find('=')))) << m;
    EXPECT_TRUE(names(m, "duration")) << m;
  }
}

// 12 digits of hours are ~4e21 us, far beyond int64: such a value must be
// refused, not wrap (signed overflow) into a setting's range.
TEST(node_config, parse_duration_rejects_values_that_overflow) {
  EXPECT_FALSE(parse_duration("999999999999h").has_value());
  EXPECT_FALSE(parse_duration("999999999999m").has_value());
  // 840351674469 h wraps to ~33.5 s, which --login-lock accepts.
  auto r = parse({"--login-lock=840351674469h"});
  EXPECT_FALSE(r.config.has_value())
    << "accepted as " << r.config->login_lock.count() << " ms";
}

// ---- roles -----------------------------------------------------------------

TEST(node_config, roles_are_a_comma_separated_subset) {
  auto c = ok({"--roles=command,entities"});
  EXPECT_EQ(c.roles, (args{"command", "entities"}));
  EXPECT_TRUE(c.has_role("command"));
  EXPECT_TRUE(c.has_role("entities"));
  EXPECT_FALSE(c.has_role("query"));
  EXPECT_FALSE(c.has_role("projections"));
  EXPECT_EQ(ok({"--roles", "projections"}).roles, args{"projections"});
}

TEST(node_config, unknown_roles_are_named) {
  auto m = error({"--roles=command,admin"});
  EXPECT_TRUE(names(m, "--roles"));
  EXPECT_TRUE(names(m, "'admin'"));
  EXPECT_TRUE(names(m, "command, query, entities, projections"));
  EXPECT_TRUE(names(error({"--roles=Command"}), "'Command'"))
    << "roles are case-sensitive";
  EXPECT_TRUE(names(error({"--roles=command,,query"}), "--roles"));
  EXPECT_TRUE(names(error({"--roles= command"}), "--roles"));
  EXPECT_TRUE(names(error({"--roles="}), "at least one role"));
}

// ---- --help and --migrate-only ---------------------------------------------

TEST(node_config, help_lists_every_setting) {
  for (auto& flag : {"--help", "-h"}) {
    auto r = parse({"--node-id=3", flag, "--never-parsed"});
    EXPECT_TRUE(r.help);
    EXPECT_FALSE(r.config.has_value());
    EXPECT_EQ(r.message, usage());
  }
  auto text = usage();
  for (auto& name : {"db-url",
                     "roles",
                     "node-id",
                     "bind",
                     "command-port",
                     "query-port",
                     "admin-port",
                     "metrics-port",
                     "shards",
                     "journal-batch-window",
                     "journal-max-batch",
                     "journal-writers",
                     "store-readers",
                     "snapshot-every",
                     "passivate-after",
                     "max-active-entities",
                     "login-max-failures",
                     "login-failure-window",
                     "login-lock",
                     "pwhash-opslimit",
                     "pwhash-memlimit",
                     "hashers",
                     "request-timeout",
                     "max-message-bytes",
                     "scheduler-threads",
                     "log-level",
                     "migrate-only"}) {
    EXPECT_TRUE(names(text, std::string("--") + name));
  }
  EXPECT_TRUE(names(text, "SHOUTFLOW_DB_URL"));
  EXPECT_TRUE(names(text, "default 500us"));
}

TEST(node_config, migrate_only_is_a_switch) {
  EXPECT_FALSE(ok({}).migrate_only);
  EXPECT_TRUE(ok({"--migrate-only"}).migrate_only);
  auto c = ok({"--migrate-only", "--node-id", "4"});
  EXPECT_TRUE(c.migrate_only) << "a switch does not take the next argument";
  EXPECT_EQ(c.node_id, 4);
  EXPECT_TRUE(ok({"--migrate-only=true"}).migrate_only);
  EXPECT_TRUE(ok({"--migrate-only=1"}).migrate_only);
  EXPECT_FALSE(ok({"--migrate-only=false"}).migrate_only);
  EXPECT_FALSE(ok({"--migrate-only=0"}).migrate_only);
  EXPECT_TRUE(ok({}, {{"SHOUTFLOW_MIGRATE_ONLY", "true"}}).migrate_only);
  EXPECT_FALSE(
    ok({"--migrate-only=false"}, {{"SHOUTFLOW_MIGRATE_ONLY", "true"}})
      .migrate_only);
}

} // namespace
} // namespace shoutflow::node
