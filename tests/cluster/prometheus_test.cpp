// A real Prometheus (Debian's package) scrapes a three-node cluster of
// shoutflowd processes, each with its metrics endpoint on; its HTTP API
// answers with ShoutFlow series from every node. Under load, every PromQL
// expression of the Grafana dashboard (deploy/grafana/shoutflow.json, with
// Grafana's variables substituted) and of the rules file
// (deploy/prometheus/shoutflow-rules.yml) runs without error, and the
// write-path and projection panels return data. One cluster and one
// Prometheus for the whole binary (SetUpTestSuite).

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/cluster_harness.hpp"
#include "tests/support/prometheus_server.hpp"
#include "tests/support/test_db.hpp"
#include "tests/support/wait.hpp"

using namespace shoutflow::testing;
using namespace std::chrono_literals;

namespace {

const std::filesystem::path source_root
  = std::filesystem::path(__FILE__).parent_path().parent_path().parent_path();

std::string dashboard_path() {
  return (source_root / "deploy/grafana/shoutflow.json").string();
}

std::string rules_path() {
  return (source_root / "deploy/prometheus/shoutflow-rules.yml").string();
}

/// Output and exit status of a shell command.
std::pair<int, std::string> run(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr)
    return {-1, "popen failed"};
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0)
    out.append(buf, n);
  int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

struct dashboard_query {
  std::string row;
  std::string panel;
  std::string expr;
};

/// Every target expression of the dashboard with its row, read with jq
/// (installed by the scripts).
std::vector<dashboard_query> dashboard_queries(std::string* error) {
  auto [code, out] = run(
    "jq -r '[foreach .panels[] as $p (\"\"; if $p.type == \"row\" then "
    "$p.title else . end; [., $p])] | .[] | select(.[1].type != \"row\") | "
    ".[0] as $row | .[1] as $p | $p.targets[] | [$row, $p.title, .expr] | "
    "@tsv' '"
    + dashboard_path() + "'");
  std::vector<dashboard_query> qs;
  if (code != 0) {
    *error = out;
    return qs;
  }
  std::istringstream in{out};
  std::string line;
  while (std::getline(in, line)) {
    auto a = line.find('\t');
    auto b = line.find('\t', a + 1);
    if (a == std::string::npos || b == std::string::npos)
      continue;
    qs.push_back(
      {line.substr(0, a), line.substr(a + 1, b - a - 1), line.substr(b + 1)});
  }
  return qs;
}

/// Grafana's variables as Grafana would expand them for "All" nodes.
std::string substitute(std::string expr) {
  const std::vector<std::pair<std::string, std::string>> vars
    = {{"$__rate_interval", "30s"},
       {"$__interval", "5s"},
       {"$__range", "5m"},
       {"${instance}", ".*"},
       {"$instance", ".*"}};
  for (auto& [name, value] : vars)
    for (auto at = expr.find(name); at != std::string::npos;
         at = expr.find(name, at + value.size()))
      expr.replace(at, name.size(), value);
  return expr;
}

std::size_t occurrences(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos;
       at = text.find(what, at + 1))
    ++n;
  return n;
}

class prometheus_test : public ::testing::Test {
protected:
  static constexpr int nodes = 3;

  static void SetUpTestSuite() {
    db_ = std::make_unique<test_database>();
    cluster_options o;
    o.db_url = db_->url();
    for (int i = 0; i < nodes; ++i) {
      metrics_ports_.push_back(reserve_port());
      // After the harness's --metrics-port -1: the last flag wins.
      o.node_flags[i] = {"--metrics-port",
                         std::to_string(metrics_ports_.back())};
    }
    cluster_ = std::make_unique<cluster_harness>(o, nodes);
    for (int i = 0; i < nodes; ++i) {
      if (auto r = cluster_->start(i); !r) {
        setup_error_ = r.message();
        return;
      }
    }
    for (int i = 0; i < nodes; ++i)
      if (auto r = cluster_->wait_ready(i, 60s); !r) {
        setup_error_ = r.message();
        return;
      }
    if (auto r = cluster_->wait_cluster_settled(60s); !r) {
      setup_error_ = r.message();
      return;
    }
    prometheus_options po;
    for (auto port : metrics_ports_)
      po.targets.push_back("127.0.0.1:" + std::to_string(port));
    po.rule_files = {rules_path()};
    prometheus_ = std::make_unique<prometheus_server>(po);
    if (!prometheus_->error().empty()) {
      setup_error_ = prometheus_->error();
      return;
    }
    load_options lo;
    lo.tag = "prom";
    lo.clients = 2;
    lo.users = 8;
    lo.think_time = 10ms;
    load_ = std::make_unique<load_driver>(
      [] { return cluster_->command_targets(); }, lo);
    if (auto r = load_->register_users(); !r) {
      setup_error_ = r.message();
      return;
    }
    load_->start();
  }

  static void TearDownTestSuite() {
    if (load_)
      load_->stop();
    load_.reset();
    prometheus_.reset();
    cluster_.reset();
    db_.reset();
  }

  void SetUp() override {
    ASSERT_EQ(setup_error_, "") << "set-up failed";
  }

  /// The instances of the series `expr` returns (empty on error).
  static std::set<std::string> instances_of(const std::string& expr) {
    auto r = prometheus_->query(expr);
    if (r.status != 200 || !query_succeeded(r.body))
      return {};
    return label_values(r.body, "instance");
  }

  static std::set<std::string> targets() {
    std::set<std::string> out;
    for (auto port : metrics_ports_)
      out.insert("127.0.0.1:" + std::to_string(port));
    return out;
  }

  static inline std::unique_ptr<test_database> db_;
  static inline std::unique_ptr<cluster_harness> cluster_;
  static inline std::unique_ptr<prometheus_server> prometheus_;
  static inline std::unique_ptr<load_driver> load_;
  static inline std::vector<int> metrics_ports_;
  static inline std::string setup_error_;
};

TEST_F(prometheus_test, every_node_is_scraped_and_answers_through_the_api) {
  // The variable query of the dashboard's node picker, as PromQL.
  EXPECT_TRUE(wait_until(
    [&] {
      return instances_of("group by (instance) (shoutflow_build_info)")
             == targets();
    },
    60s, 200ms))
    << "build info not from every node; last answer: "
    << prometheus_->query("shoutflow_build_info").body << "\n"
    << prometheus_->log();
  EXPECT_TRUE(wait_until(
    [&] { return instances_of("up{job=\"shoutflow\"} == 1") == targets(); },
    30s, 200ms))
    << prometheus_->query("up").body;
  // Every node reports the leases it holds; together they hold every shard.
  auto shards = db_->scalar<std::string>(
    "SELECT value FROM cluster_settings WHERE name = 'shards'");
  std::string last;
  EXPECT_TRUE(wait_until(
    [&] {
      auto r = prometheus_->query("sum(shoutflow_cluster_shards_owned)");
      last = r.body;
      return instances_of("shoutflow_cluster_shards_owned") == targets()
             && r.body.find(",\"" + shards + "\"]") != std::string::npos;
    },
    30s, 200ms))
    << "shards: " << shards << "; " << last;
}

TEST_F(prometheus_test,
       every_dashboard_query_runs_and_write_and_projection_panels_have_data) {
  std::string error;
  auto queries = dashboard_queries(&error);
  ASSERT_EQ(error, "");
  ASSERT_GE(queries.size(), 20u);
  std::set<std::string> rows;
  for (auto& q : queries)
    rows.insert(q.row);
  EXPECT_EQ(rows, (std::set<std::string>{"Write path", "Read path",
                                         "Projections", "Cluster"}));
  // Samples from every node, and enough of them for a 30 s rate.
  ASSERT_TRUE(load_->wait_acknowledged(0, 200, 60s));
  for (auto& q : queries) {
    auto expr = substitute(q.expr);
    SCOPED_TRACE(q.row + " / " + q.panel + ": " + expr);
    EXPECT_EQ(expr.find('$'), std::string::npos) << "a variable is left";
    bool must_have_data = q.row == "Write path" || q.row == "Projections";
    std::string last;
    bool ok = wait_until(
      [&] {
        auto r = prometheus_->query(expr);
        last = r.body.empty() ? r.error : r.body;
        if (r.status != 200 || !query_succeeded(r.body))
          return true; // an error does not heal: report it below
        return !must_have_data || result_count(r.body) > 0;
      },
      60s, 250ms);
    EXPECT_TRUE(ok) << "no data within 60 s: " << last;
    EXPECT_TRUE(query_succeeded(last)) << query_error(last) << " " << last;
  }
}

TEST_F(prometheus_test, the_rules_file_is_valid_and_every_rule_evaluates) {
  auto [code, out] = run("promtool check rules '" + rules_path() + "'");
  EXPECT_EQ(code, 0) << out;
  // Prometheus loaded the file and has evaluated every rule, each without
  // an error (a rule's health is "unknown" until its first evaluation).
  std::string last;
  EXPECT_TRUE(wait_until(
    [&] {
      auto r = http_get("127.0.0.1", prometheus_->port(), "/api/v1/rules");
      last = r.body;
      auto rules = occurrences(last, "\"health\":");
      return r.status == 200 && rules >= 10
             && occurrences(last, "\"health\":\"ok\"") == rules;
    },
    30s, 250ms))
    << last;
}

// Last: it kills and restarts a node (gtest runs a file's tests in order).
TEST_F(prometheus_test, a_fail_over_and_the_hand_off_back_are_timed) {
  auto ttl_seconds = cluster_->options().lease_ttl.count() / 1000.0;
  auto value_of = [&](const std::string& expr) -> std::optional<double> {
    auto r = prometheus_->query(expr);
    static const std::regex value_re{R"re("value":\[[0-9.]+,"([^"]+)"\])re"};
    std::smatch m;
    if (!std::regex_search(r.body, m, value_re))
      return std::nullopt;
    return std::stod(m[1].str());
  };
  // Counted on the survivors only: node 2's counters restart at zero with
  // it, so a sum over every node can fall below its value before the kill
  // (node 2 may have handed leases off while the cluster formed) even
  // though the survivors counted the fail-over and the hand-off back.
  auto survivors = "{instance!=\"127.0.0.1:"
                   + std::to_string(metrics_ports_[2]) + "\"}";
  auto count_of = [&](const std::string& family) {
    return value_of("sum(" + family + "_count" + survivors + ")")
      .value_or(-1);
  };
  ASSERT_TRUE(wait_until(
    [&] { return count_of("shoutflow_cluster_failover_seconds") >= 0; }, 30s,
    200ms));
  auto failovers = count_of("shoutflow_cluster_failover_seconds");
  auto handoffs = count_of("shoutflow_cluster_handoff_seconds");

  cluster_->kill(2);
  // The survivors take node 2's leases once they expire, and time it from
  // node 2's last renewal: at least the TTL.
  EXPECT_TRUE(wait_until(
    [&] { return count_of("shoutflow_cluster_failover_seconds") > failovers; },
    60s, 250ms))
    << prometheus_->query("shoutflow_cluster_failover_seconds_count").body;
  auto mean = value_of("sum(shoutflow_cluster_failover_seconds_sum) / "
                       "sum(shoutflow_cluster_failover_seconds_count)");
  ASSERT_TRUE(mean.has_value());
  EXPECT_GE(*mean, ttl_seconds - 0.1);
  EXPECT_LT(*mean, ttl_seconds + 30);

  // Back again: the survivors hand its share off to it, gracefully.
  ASSERT_TRUE(cluster_->start(2));
  ASSERT_TRUE(cluster_->wait_ready(2, 60s));
  ASSERT_TRUE(cluster_->wait_cluster_settled(60s));
  EXPECT_TRUE(wait_until(
    [&] { return count_of("shoutflow_cluster_handoff_seconds") > handoffs; },
    30s, 250ms))
    << prometheus_->query("shoutflow_cluster_handoff_seconds_count").body;
  EXPECT_TRUE(wait_until(
    [&] { return instances_of("shoutflow_build_info") == targets(); }, 30s,
    250ms));
}

} // namespace
