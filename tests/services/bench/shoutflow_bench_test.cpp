// shoutflow-bench end to end: the real binary (SHOUTFLOW_BENCH) against an
// in-process node with the read side, for about two seconds of the timeline
// mix with the visibility probe; its JSON report must parse and have the
// documented shape (services/bench/report.hpp) with figures that add up.
// Also: a bad flag is a usage error (exit 2), an unreachable target a
// runtime failure (exit 1), and a rerun's prepare phase is idempotent.

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "tests/support/test_db.hpp"
#include "tests/support/test_node.hpp"

using namespace shoutflow;
using google::protobuf::Struct;
using google::protobuf::Value;

namespace {

std::string bench_binary() {
  const char* path = std::getenv("SHOUTFLOW_BENCH");
  return path ? path : "";
}

struct outcome {
  int exit_status = -1;
  std::string json;
  std::string stderr_text;
};

std::string slurp(const std::string& path) {
  std::ifstream in{path};
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

/// Runs shoutflow-bench with `args` (already shell-quoted where needed).
outcome run_bench(const std::string& args) {
  auto dir = ::testing::TempDir();
  auto json = dir + "shoutflow_bench_test.json";
  auto err = dir + "shoutflow_bench_test.err";
  std::remove(json.c_str());
  auto cmd = bench_binary() + " " + args + " --json " + json + " 2>" + err;
  int rc = std::system(cmd.c_str());
  outcome o;
  o.exit_status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  o.json = slurp(json);
  o.stderr_text = slurp(err);
  return o;
}

Struct parse(const std::string& json) {
  Struct doc;
  auto status = google::protobuf::util::JsonStringToMessage(json, &doc);
  EXPECT_TRUE(status.ok()) << status.ToString() << "\n" << json;
  return doc;
}

const Value& at(const Struct& s, const std::string& key) {
  static const Value missing;
  auto it = s.fields().find(key);
  EXPECT_NE(it, s.fields().end()) << "missing key '" << key << "'";
  return it == s.fields().end() ? missing : it->second;
}

const Struct& obj(const Struct& s, const std::string& key) {
  const auto& v = at(s, key);
  EXPECT_EQ(v.kind_case(), Value::kStructValue) << key << " is not an object";
  return v.struct_value();
}

double num(const Struct& s, const std::string& key) {
  const auto& v = at(s, key);
  EXPECT_EQ(v.kind_case(), Value::kNumberValue) << key << " is not a number";
  return v.number_value();
}

void expect_latency(const Struct& op, const std::string& name) {
  const auto& l = obj(op, "latency_ms");
  SCOPED_TRACE(name);
  EXPECT_GT(num(l, "p50"), 0);
  EXPECT_LE(num(l, "p50"), num(l, "p90"));
  EXPECT_LE(num(l, "p90"), num(l, "p99"));
  EXPECT_LE(num(l, "p99"), num(l, "p999"));
  EXPECT_LE(num(l, "p999"), num(l, "max"));
}

class shoutflow_bench_test : public ::testing::Test {
protected:
  void SetUp() override {
    ASSERT_FALSE(bench_binary().empty())
      << "SHOUTFLOW_BENCH must name the shoutflow-bench binary (ctest sets it)";
    node_ = std::make_unique<shoutflow::testing::test_node>(
      db_.url(),
      [](node::node_config& cfg) { shoutflow::testing::with_read_side(cfg); });
  }

  std::string targets() const {
    auto& n = const_cast<shoutflow::testing::test_node&>(*node_).get();
    return "--targets 127.0.0.1:" + std::to_string(n.command_port())
           + " --query-targets 127.0.0.1:" + std::to_string(n.query_port());
  }

  shoutflow::testing::test_database db_;
  std::unique_ptr<shoutflow::testing::test_node> node_;
};

} // namespace

TEST_F(shoutflow_bench_test, timeline_mix_report_has_the_documented_shape) {
  auto o = run_bench(targets()
                     + " --mix timeline --users 40 --follows 3 --seed-shouts 1"
                       " --inflight 8 --warmup 0.5 --duration 2"
                       " --probe-rate 20 --label smoke");
  ASSERT_EQ(o.exit_status, 0) << o.stderr_text;
  auto doc = parse(o.json);

  EXPECT_EQ(at(doc, "tool").string_value(), "shoutflow-bench");
  const auto& params = obj(doc, "parameters");
  EXPECT_EQ(at(params, "mix").string_value(), "timeline");
  EXPECT_EQ(at(params, "mode").string_value(), "closed");
  EXPECT_EQ(at(params, "label").string_value(), "smoke");
  EXPECT_EQ(num(params, "users"), 40);

  const auto& machine = obj(doc, "machine");
  EXPECT_GE(num(machine, "nproc"), 1);
  EXPECT_EQ(at(machine, "load_avg_start").list_value().values_size(), 3);
  EXPECT_EQ(at(machine, "load_avg_end").list_value().values_size(), 3);
  EXPECT_EQ(at(machine, "cpu_model").kind_case(), Value::kStringValue);

  const auto& prepare = obj(doc, "prepare");
  EXPECT_TRUE(at(prepare, "ok").bool_value());
  const auto& phases = at(prepare, "phases").list_value();
  ASSERT_EQ(phases.values_size(), 3);
  EXPECT_EQ(num(phases.values(0).struct_value(), "requests"), 40);  // users
  EXPECT_EQ(num(phases.values(1).struct_value(), "requests"), 120); // follows
  EXPECT_EQ(num(phases.values(2).struct_value(), "requests"), 40);  // seeds
  for (const auto& p : phases.values())
    EXPECT_EQ(num(p.struct_value(), "failed"), 0);

  const auto& run = obj(doc, "run");
  EXPECT_GT(num(run, "sent"), 0);
  EXPECT_GT(num(run, "client_cpu_s"), 0);

  // Every operation of the mix ran and succeeded: 1 write per 50 reads.
  const auto& ops = obj(doc, "operations");
  double ok_sum = 0;
  for (const char* name :
       {"post_shout", "get_timeline", "get_user", "get_shout"}) {
    const auto& op = obj(ops, name);
    EXPECT_GT(num(op, "ok"), 0) << name;
    EXPECT_EQ(num(op, "errors"), 0) << name;
    expect_latency(op, name);
    ok_sum += num(op, "ok");
  }
  EXPECT_GT(num(obj(ops, "get_timeline"), "ok"),
            num(obj(ops, "post_shout"), "ok"));
  // The probe saw acknowledged shouts become readable.
  const auto& visible = obj(ops, "visible");
  EXPECT_GT(num(visible, "ok"), 0);
  expect_latency(visible, "visible");

  const auto& totals = obj(doc, "totals");
  EXPECT_EQ(num(totals, "ok"), ok_sum);
  EXPECT_NEAR(num(totals, "throughput"), ok_sum / 2.0, 1e-6 * ok_sum);
  EXPECT_EQ(obj(totals, "errors_by_code").fields_size(), 0);

  // The per-second series covers warm-up + window, and holds at least every
  // measured completion.
  const auto& series = at(doc, "series").list_value();
  ASSERT_GE(series.values_size(), 2);
  double series_ok = 0;
  for (int i = 0; i < series.values_size(); ++i) {
    const auto& s = series.values(i).struct_value();
    EXPECT_EQ(num(s, "t"), i);
    series_ok += num(s, "ok");
    EXPECT_EQ(at(s, "ops").kind_case(), Value::kStructValue);
  }
  EXPECT_GE(series_ok, ok_sum);
}

TEST_F(shoutflow_bench_test, open_loop_rerun_prepares_idempotently) {
  auto args = targets()
              + " --mix write --users 20 --rate 200 --warmup 0.2"
                " --duration 1";
  auto first = run_bench(args);
  ASSERT_EQ(first.exit_status, 0) << first.stderr_text;
  auto second = run_bench(args);
  ASSERT_EQ(second.exit_status, 0) << second.stderr_text;
  auto doc = parse(second.json);
  EXPECT_EQ(at(obj(doc, "parameters"), "mode").string_value(), "open");
  const auto& reg
    = at(obj(doc, "prepare"), "phases").list_value().values(0).struct_value();
  // The same users again: every registration is answered as already applied.
  EXPECT_EQ(num(reg, "requests"), 20);
  EXPECT_EQ(num(reg, "duplicates"), 20);
  const auto& post = obj(obj(doc, "operations"), "post_shout");
  // 200/s for 1 s, scheduled: the open loop sends what it scheduled.
  EXPECT_NEAR(num(post, "ok") + num(post, "errors"), 200, 2);
  expect_latency(post, "post_shout");
}

TEST_F(shoutflow_bench_test, race_reports_one_winner_and_the_refused) {
  auto hot = run_bench(targets() + " --race 12");
  ASSERT_EQ(hot.exit_status, 0) << hot.stderr_text;
  auto hot_doc = parse(hot.json);
  const auto& race = obj(hot_doc, "race");
  EXPECT_EQ(num(race, "calls"), 12);
  EXPECT_TRUE(at(race, "one_handle").bool_value());
  EXPECT_EQ(num(race, "ok"), 1);
  EXPECT_EQ(num(race, "already_exists"), 11);
  EXPECT_TRUE(obj(race, "errors_by_code").fields().empty());
  EXPECT_LE(num(race, "p50_ms"), num(race, "max_ms"));
  EXPECT_GT(num(race, "max_ms"), 0);

  auto distinct = run_bench(targets() + " --race 5 --race-distinct");
  ASSERT_EQ(distinct.exit_status, 0) << distinct.stderr_text;
  auto distinct_doc = parse(distinct.json);
  const auto& all = obj(distinct_doc, "race");
  EXPECT_FALSE(at(all, "one_handle").bool_value());
  EXPECT_EQ(num(all, "ok"), 5);
  EXPECT_EQ(num(all, "already_exists"), 0);
}

TEST_F(shoutflow_bench_test, bad_flags_and_unreachable_targets) {
  EXPECT_EQ(run_bench("--mix nope").exit_status, 2);
  EXPECT_EQ(run_bench("--inflight 0").exit_status, 2);
  EXPECT_EQ(run_bench("--follows 5 --users 5").exit_status, 2);
  auto o = run_bench("--targets 127.0.0.1:1 --wait-ready 0.5");
  EXPECT_EQ(o.exit_status, 1);
  EXPECT_NE(o.stderr_text.find("not serving"), std::string::npos)
    << o.stderr_text;
}
