// The metrics endpoint of a running node (docs/metrics.md): after a few
// commands, queries and a Watch through gRPC, a scrape of /metrics passes
// `promtool check metrics` (Debian's prometheus package) and carries every
// family the docs promise, with the samples the traffic must have left.
// And the projection lag probe names the open transaction that holds the
// gap-safe horizon back, then clears once it ends.

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <sstream>

#include <pqxx/pqxx>

#include "tests/support/http_get.hpp"
#include "tests/support/test_db.hpp"
#include "tests/support/test_node.hpp"
#include "tests/support/wait.hpp"

using namespace shoutflow;
using namespace shoutflow::testing;
using namespace std::chrono_literals;

namespace {

/// One sample of the text exposition.
struct sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

std::vector<sample> parse_exposition(const std::string& text) {
  static const std::regex line_re{
    R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$)"};
  static const std::regex label_re{
    R"re(([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)")re"};
  std::vector<sample> out;
  std::istringstream in{text};
  std::string line;
  while (std::getline(in, line)) {
    std::smatch m;
    if (line.empty() || line[0] == '#' || !std::regex_match(line, m, line_re))
      continue;
    sample s;
    s.name = m[1].str();
    auto labels = m[3].str();
    for (auto it = std::sregex_iterator(labels.begin(), labels.end(), label_re);
         it != std::sregex_iterator(); ++it)
      s.labels[(*it)[1].str()] = (*it)[2].str();
    s.value = std::strtod(m[4].str().c_str(), nullptr);
    out.push_back(std::move(s));
  }
  return out;
}

/// Samples of `name` whose labels include `labels`.
std::vector<sample>
find(const std::vector<sample>& all, const std::string& name,
     const std::map<std::string, std::string>& labels = {}) {
  std::vector<sample> out;
  for (auto& s : all) {
    if (s.name != name)
      continue;
    bool match = true;
    for (auto& [k, v] : labels)
      match = match && s.labels.count(k) > 0 && s.labels.at(k) == v;
    if (match)
      out.push_back(s);
  }
  return out;
}

double sum(const std::vector<sample>& samples) {
  double total = 0;
  for (auto& s : samples)
    total += s.value;
  return total;
}

struct promtool_result {
  int exit_code = -1;
  std::string output;
};

/// `promtool check metrics` over `text` ($PROMTOOL overrides the binary).
promtool_result promtool_check(const std::string& text) {
  const char* env = std::getenv("PROMTOOL");
  std::string promtool = env != nullptr && *env != '\0' ? env
                                                        : "/usr/bin/promtool";
  auto path = ::testing::TempDir() + "/shoutflow-scrape-"
              + std::to_string(::getpid()) + ".txt";
  {
    std::ofstream f{path};
    f << text;
  }
  promtool_result out;
  auto cmd = promtool + " check metrics < '" + path + "' 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr)
    return out;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0)
    out.output.append(buf, n);
  int status = ::pclose(p);
  out.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::remove(path.c_str());
  return out;
}

// Every family docs/metrics.md promises.
const std::vector<std::string> required_families = {
  "shoutflow_build_info",
  "shoutflow_command_requests_total",
  "shoutflow_command_duration_seconds",
  "shoutflow_query_requests_total",
  "shoutflow_query_duration_seconds",
  "shoutflow_grpc_requests_in_flight",
  "shoutflow_watch_changes_sent_total",
  "shoutflow_watch_dropped_total",
  "shoutflow_journal_batches_total",
  "shoutflow_journal_writes_total",
  "shoutflow_journal_events_total",
  "shoutflow_journal_events_appended_total",
  "shoutflow_journal_batch_writes",
  "shoutflow_journal_commit_seconds",
  "shoutflow_journal_write_failures_total",
  "shoutflow_journal_writes_in_doubt_total",
  "shoutflow_entity_active",
  "shoutflow_entity_spawned_total",
  "shoutflow_entity_passivated_total",
  "shoutflow_entity_recovery_seconds",
  "shoutflow_entity_commands_total",
  "shoutflow_projection_offset",
  "shoutflow_projection_lag_events",
  "shoutflow_projection_lag_seconds",
  "shoutflow_projection_events_applied_total",
  "shoutflow_projection_dead_letters_total",
  "shoutflow_projection_visibility_delay_seconds",
  "shoutflow_projection_horizon_blocker_age_seconds",
  "shoutflow_projection_horizon_blocker_pid",
  "shoutflow_projection_horizon_stalls_total",
  "shoutflow_cluster_members",
  "shoutflow_cluster_shards_owned",
  "shoutflow_cluster_partitions_owned",
  "shoutflow_cluster_lease_renewals_total",
  "shoutflow_cluster_lease_renewal_failures_total",
  "shoutflow_cluster_leases_lost_total",
  "shoutflow_cluster_handoff_seconds",
  "shoutflow_cluster_handoff_failures_total",
  "shoutflow_cluster_failover_seconds",
};

class metrics_test : public ::testing::Test {
protected:
  void SetUp() override {
    node_ = std::make_unique<test_node>(db_.url(), [](node::node_config& c) {
      with_read_side(c);
      c.bind = "127.0.0.1";
      c.metrics_port = 0;
    });
    ASSERT_GT(node_->get().metrics_port(), 0);
  }

  std::string scrape() {
    auto r = http_get("127.0.0.1", node_->get().metrics_port(), "/metrics");
    EXPECT_EQ(r.status, 200) << r.error;
    return r.body;
  }

  std::vector<sample> samples() {
    return parse_exposition(scrape());
  }

  v1::CommandResult command(const v1::UserCommand& c) {
    auto stub = node_->command_stub();
    auto ctx = context_with_deadline();
    v1::CommandResult result;
    grpc::Status status;
    switch (c.command_case()) {
      case v1::UserCommand::kRegisterUser:
        status = stub->RegisterUser(ctx.get(), c.register_user(), &result);
        break;
      case v1::UserCommand::kFollow:
        status = stub->Follow(ctx.get(), c.follow(), &result);
        break;
      case v1::UserCommand::kPostShout:
        status = stub->PostShout(ctx.get(), c.post_shout(), &result);
        break;
      default:
        ADD_FAILURE() << "no RPC for this command in the test";
    }
    EXPECT_TRUE(status.ok()) << status.error_message();
    return result;
  }

  test_database db_;
  std::unique_ptr<test_node> node_;
};

TEST_F(metrics_test, a_scrape_after_traffic_passes_promtool_with_every_family) {
  command(register_user("m1", "alice", "alice"));
  command(register_user("m2", "bob", "bob"));
  command(follow("m3", "bob", "alice"));
  auto posted = command(post_shout("m4", "alice", "hello metrics"));

  auto query = node_->query_stub();
  {
    v1::GetUserRequest r;
    r.set_user_id("alice");
    r.set_min_position(posted.global_position());
    v1::UserView view;
    auto ctx = context_with_deadline();
    auto status = query->GetUser(ctx.get(), r, &view);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  {
    v1::GetUserRequest r;
    r.set_user_id("nobody");
    v1::UserView view;
    auto ctx = context_with_deadline();
    EXPECT_EQ(query->GetUser(ctx.get(), r, &view).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  {
    v1::GetTimelineRequest r;
    r.set_user_id("bob");
    r.set_min_position(posted.global_position());
    v1::TimelinePage page;
    auto ctx = context_with_deadline();
    auto status = query->GetTimeline(ctx.get(), r, &page);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  // A Watch: its first message is the current document, and while it is
  // open it counts as a watch stream in flight.
  grpc::ClientContext watch_ctx;
  watch_ctx.set_deadline(std::chrono::system_clock::now() + 60s);
  v1::WatchRequest wr;
  wr.add_user_ids("alice");
  auto reader = query->Watch(&watch_ctx, wr);
  v1::DocumentChange first;
  ASSERT_TRUE(reader->Read(&first));
  EXPECT_TRUE(wait_until(
    [&] {
      auto s = samples();
      return sum(find(s, "shoutflow_grpc_requests_in_flight",
                      {{"service", "watch"}}))
               == 1
             && sum(find(s, "shoutflow_watch_changes_sent_total")) >= 1;
    },
    10s))
    << scrape();
  watch_ctx.TryCancel();
  v1::DocumentChange ignored;
  while (reader->Read(&ignored)) {
  }
  reader->Finish(); // CANCELLED, as asked

  // The projections and the probe catch up (partition series are those of
  // the leases this node holds: all of them, on a single node).
  auto partitions = node_->get().config().projection_partitions;
  ASSERT_TRUE(wait_until(
    [&] {
      auto s = samples();
      return find(s, "shoutflow_projection_offset").size()
               == static_cast<std::size_t>(3 * partitions)
             && sum(find(s, "shoutflow_projection_lag_events")) == 0
             && sum(find(s, "shoutflow_grpc_requests_in_flight",
                         {{"service", "watch"}}))
                  == 0;
    },
    20s))
    << scrape();

  auto text = scrape();
  auto check = promtool_check(text);
  EXPECT_EQ(check.exit_code, 0) << check.output;
  EXPECT_EQ(check.output, "") << "promtool lint findings";

  for (auto& family : required_families)
    EXPECT_NE(text.find("# TYPE " + family + " "), std::string::npos)
      << family << " is missing from the scrape";

  auto s = parse_exposition(text);
  EXPECT_EQ(sum(find(s, "shoutflow_build_info")), 1);
  EXPECT_EQ(sum(find(s, "shoutflow_command_requests_total",
                     {{"method", "RegisterUser"}, {"code", "ok"}})),
            2);
  EXPECT_EQ(sum(find(s, "shoutflow_command_duration_seconds_count",
                     {{"method", "PostShout"}})),
            1);
  EXPECT_EQ(sum(find(s, "shoutflow_query_requests_total",
                     {{"method", "GetUser"}, {"code", "ok"}})),
            1);
  EXPECT_EQ(sum(find(s, "shoutflow_query_requests_total",
                     {{"method", "GetUser"}, {"code", "not_found"}})),
            1);
  EXPECT_EQ(sum(find(s, "shoutflow_query_duration_seconds_count",
                     {{"method", "GetTimeline"}})),
            1);
  EXPECT_EQ(sum(find(s, "shoutflow_journal_events_appended_total",
                     {{"type", "UserRegistered"}})),
            2);
  EXPECT_EQ(sum(find(s, "shoutflow_journal_events_appended_total",
                     {{"type", "ShoutPosted"}})),
            1);
  EXPECT_EQ(sum(find(s, "shoutflow_journal_events_appended_total",
                     {{"type", "other"}})),
            0);
  // Every event reaches the users projection; a visibility delay was
  // measured for each.
  EXPECT_GE(sum(find(s, "shoutflow_projection_events_applied_total",
                     {{"projection", "users"}})),
            4);
  EXPECT_GE(sum(find(s, "shoutflow_projection_visibility_delay_seconds_count",
                     {{"projection", "users"}})),
            4);
  EXPECT_GT(
    sum(find(s, "shoutflow_projection_offset", {{"projection", "users"}})), 0);
  EXPECT_EQ(sum(find(s, "shoutflow_cluster_members", {{"state", "up"}})), 1);
  EXPECT_EQ(sum(find(s, "shoutflow_cluster_shards_owned")),
            node_->get().config().shards);
  EXPECT_EQ(sum(find(s, "shoutflow_cluster_partitions_owned",
                     {{"projection", "timelines"}})),
            partitions);
  EXPECT_GT(sum(find(s, "shoutflow_cluster_lease_renewals_total")), 0);
  // No user id or shout id ever becomes a label value.
  for (auto& x : s)
    for (auto& [k, v] : x.labels)
      EXPECT_TRUE(v != "alice" && v != "bob" && v != posted.shout_id())
        << x.name << " has label " << k << "=" << v;
}

TEST_F(metrics_test,
       the_transaction_holding_the_horizon_is_named_until_it_ends) {
  command(register_user("h1", "carol", "carol"));
  ASSERT_TRUE(wait_until(
    [&] {
      auto s = samples();
      return !find(s, "shoutflow_projection_offset").empty()
             && sum(find(s, "shoutflow_projection_lag_events")) == 0;
    },
    20s))
    << scrape();

  // An open transaction with an xid, older than the next event's writer.
  pqxx::connection blocker{db_.url()};
  pqxx::work tx{blocker};
  auto pid = tx.exec1("SELECT pg_backend_pid()")[0].as<int64_t>();
  tx.exec1("SELECT pg_current_xact_id()");
  auto posted = command(post_shout("h2", "carol", "behind the horizon"));
  ASSERT_GT(posted.global_position(), 0);

  // Other tests' transactions on the same server may be older for a
  // moment; ours becomes the oldest while it stays open.
  ASSERT_TRUE(wait_until(
    [&] {
      auto s = samples();
      return sum(find(s, "shoutflow_projection_horizon_blocker_pid"))
               == static_cast<double>(pid)
             && sum(find(s, "shoutflow_projection_horizon_blocker_age_seconds"))
                  > 0
             && sum(find(s, "shoutflow_projection_lag_events")) >= 1
             && sum(find(s, "shoutflow_projection_lag_seconds")) > 0;
    },
    20s))
    << "blocker pid " << pid << " never reported:\n"
    << scrape();
  EXPECT_GE(sum(find(samples(), "shoutflow_projection_horizon_stalls_total")),
            1);

  tx.abort();
  ASSERT_TRUE(wait_until(
    [&] {
      auto s = samples();
      return sum(find(s, "shoutflow_projection_horizon_blocker_pid"))
               != static_cast<double>(pid)
             && sum(find(s, "shoutflow_projection_lag_events")) == 0
             && sum(find(s,
                         "shoutflow_projection_visibility_delay_seconds_count",
                         {{"projection", "shouts"}}))
                  >= 1;
    },
    20s))
    << scrape();
}

} // namespace
