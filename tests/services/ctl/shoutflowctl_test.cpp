// shoutflowctl end to end: the real binary ($SHOUTFLOWCTL) run as a child
// process against an in-process node with the read side on a per-test
// PostgreSQL database. Each test creates the data it then expects to read
// back through the CLI — in text (what an operator reads) and in JSON
// (parsed back into the proto, what a script relies on) — and checks the
// exit codes of docs/shoutflowctl.md: 0 ok, 1 server error, 2 usage,
// 3 unreachable, 4 not found, 5 operation failed.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <google/protobuf/util/json_util.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <pqxx/pqxx>

#include <sstream>
#include <string>
#include <vector>

#include "actors/user/user_codec.hpp"
#include "tests/services/ctl/ctl_process.hpp"
#include "tests/support/test_db.hpp"
#include "tests/support/test_node.hpp"

using namespace shoutflow;
using namespace shoutflow::testing;
using ::testing::AllOf;
using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

namespace {

/// Prints a run for a failing assertion.
std::string show(const ctl_result& r) {
  return "exit " + std::to_string(r.exit_code) + "\n--- stdout\n" + r.out
         + "--- stderr\n" + r.err;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in{text};
  for (std::string line; std::getline(in, line);)
    out.push_back(line);
  return out;
}

/// Parses the CLI's JSON output into `Message`; fails the test if it is not
/// one such document.
template <class Message>
Message parse_json(const std::string& text) {
  Message m;
  auto s = google::protobuf::util::JsonStringToMessage(text, &m);
  EXPECT_TRUE(s.ok()) << s.ToString() << "\n" << text;
  return m;
}

/// A loopback TCP socket: listening (it accepts connections but never
/// speaks, so a gRPC call to it can only run into its deadline) or bound
/// and closed (nothing listens on its port).
class loopback_socket {
public:
  explicit loopback_socket(bool listening) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), len), 0);
    EXPECT_EQ(::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    port_ = ntohs(addr.sin_port);
    if (listening) {
      EXPECT_EQ(::listen(fd_, 16), 0);
    } else {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~loopback_socket() {
    if (fd_ >= 0)
      ::close(fd_);
  }
  std::string address() const {
    return "127.0.0.1:" + std::to_string(port_);
  }

private:
  int fd_ = -1;
  int port_ = 0;
};

// -- without a node -----------------------------------------------------------

TEST(shoutflowctl_cli, the_binary_is_given) {
  ASSERT_FALSE(ctl_binary().empty())
    << "SHOUTFLOWCTL is not set (ctest sets it, tests/CMakeLists.txt)";
}

TEST(shoutflowctl_cli, help_lists_every_subcommand_and_the_exit_codes) {
  auto r = run_ctl({"--help"});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  for (auto* sub :
       {"cluster", "stream", "projections", "rebuild", "dead-letters list",
        "dead-letters retry", "migrate", "call"})
    EXPECT_THAT(r.out, HasSubstr(sub));
  EXPECT_THAT(r.out, HasSubstr("exit codes"));
  EXPECT_THAT(r.out, HasSubstr("3  unreachable"));
  EXPECT_THAT(r.err, IsEmpty());

  // Each subcommand's own help, by flag and by `help SUBCOMMAND`.
  r = run_ctl({"stream", "--help"});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  EXPECT_THAT(r.out, HasSubstr("usage: shoutflowctl stream USER"));
  EXPECT_THAT(r.out, HasSubstr("--from SEQ"));
  EXPECT_THAT(r.out, HasSubstr("--address"));
  r = run_ctl({"help", "rebuild"});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  EXPECT_THAT(r.out, HasSubstr("--no-wait"));
  r = run_ctl({"dead-letters", "--help"});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  EXPECT_THAT(r.out, AllOf(HasSubstr("dead-letters list"),
                           HasSubstr("dead-letters retry ID")));
  r = run_ctl({"migrate", "--help"});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  EXPECT_THAT(r.out, HasSubstr("--db-url URL"));
  // migrate talks to the database, not to a node.
  EXPECT_THAT(r.out, Not(HasSubstr("--address")));
}

TEST(shoutflowctl_cli, usage_errors_exit_2_and_name_the_argument) {
  struct usage_case {
    std::vector<std::string> args;
    std::string named;
  };
  std::vector<usage_case> cases = {
    {{}, "usage: shoutflowctl"},
    {{"frobnicate"}, "unknown subcommand 'frobnicate'"},
    {{"stream"}, "missing argument USER"},
    {{"rebuild"}, "missing argument NAME"},
    {{"dead-letters"}, "missing action (one of: list, retry)"},
    {{"dead-letters", "purge"}, "unknown action 'purge'"},
    {{"dead-letters", "retry"}, "missing argument ID"},
    {{"dead-letters", "retry", "abc"}, "ID: expected an integer"},
    {{"dead-letters", "retry", "0"}, "ID: expected an integer from 1"},
    {{"cluster", "--bogus"}, "unknown flag '--bogus'"},
    {{"--bogus", "cluster"}, "unknown flag '--bogus'"},
    {{"cluster", "extra"}, "unexpected argument 'extra'"},
    {{"stream", "alice", "--limit", "0"}, "--limit: expected an integer"},
    {{"stream", "alice", "--from=x"}, "--from: expected an integer"},
    {{"stream", "alice", "--limit"}, "--limit needs a value"},
    {{"--output", "yaml", "cluster"}, "--output: expected text or json"},
    {{"cluster", "--timeout", "soon"}, "--timeout: expected a positive"},
    {{"cluster", "--timeout=0"}, "--timeout: expected a positive"},
    {{"cluster", "--address", "nowhere"}, "--address: expected HOST:PORT"},
    {{"rebuild", "users", "--interval", "-1"}, "--interval"},
    {{"call", "NoSuchMethod"}, "unknown method 'NoSuchMethod'"},
    {{"call", "GetUser", "user_id: 42 nonsense"}, "REQUEST is not a valid"},
    {{"migrate"}, "missing --db-url"},
  };
  for (auto& c : cases) {
    SCOPED_TRACE(::testing::PrintToString(c.args));
    // Nothing listens at the address: a usage error must be found before
    // any connection is tried (else this would exit 3).
    loopback_socket closed{false};
    auto r = run_ctl(c.args, {{"SHOUTFLOW_ADMIN_ADDRESS", closed.address()},
                              {"SHOUTFLOW_DB_URL", ""}});
    EXPECT_EQ(r.exit_code, 2) << show(r);
    EXPECT_THAT(r.err, HasSubstr(c.named)) << show(r);
    EXPECT_THAT(r.out, IsEmpty()) << show(r);
  }
}

TEST(shoutflowctl_cli, an_unreachable_node_exits_3_naming_the_address) {
  loopback_socket closed{false};
  // By flag and by environment.
  auto r = run_ctl({"--address", closed.address(), "cluster"});
  EXPECT_EQ(r.exit_code, 3) << show(r);
  EXPECT_THAT(r.err, AllOf(HasSubstr("shoutflowctl: cluster: UNAVAILABLE"),
                           HasSubstr(closed.address())));
  EXPECT_THAT(r.out, IsEmpty());
  r = run_ctl({"projections"}, {{"SHOUTFLOW_ADMIN_ADDRESS", closed.address()}});
  EXPECT_EQ(r.exit_code, 3) << show(r);
  EXPECT_THAT(r.err, HasSubstr(closed.address()));

  // A peer that accepts and never answers: the --timeout deadline ends it.
  loopback_socket silent{true};
  auto started = std::chrono::steady_clock::now();
  r = run_ctl(
    {"stream", "alice", "--address", silent.address(), "--timeout", "300ms"});
  auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(r.exit_code, 3) << show(r);
  EXPECT_THAT(r.err, HasSubstr("DEADLINE_EXCEEDED"));
  EXPECT_LT(took, std::chrono::seconds(5));

  // The database, for migrate.
  r = run_ctl({"migrate", "--db-url",
               "postgresql://nobody@" + closed.address() + "/nothing"});
  EXPECT_EQ(r.exit_code, 3) << show(r);
  EXPECT_THAT(r.err, HasSubstr("cannot reach the database"));
}

// -- against a node -----------------------------------------------------------

class shoutflowctl_test : public ::testing::Test {
protected:
  shoutflowctl_test()
    : node_{db_.url(), [](node::node_config& c) {
              with_read_side(c);
              // Small batches: a rebuild takes long enough to be followed.
              c.projection_batch = 5;
            }} {
  }

  std::string admin_address() {
    return "127.0.0.1:" + std::to_string(node_.get().admin_port());
  }

  /// shoutflowctl against this node (through SHOUTFLOW_ADMIN_ADDRESS).
  ctl_result ctl(const std::vector<std::string>& args) {
    return run_ctl(args, {{"SHOUTFLOW_ADMIN_ADDRESS", admin_address()}});
  }

  std::string cid() {
    return "cmd-" + std::to_string(++next_id_);
  }

  v1::CommandResult ok(const v1::UserCommand& c) {
    auto r = node_.send(c);
    EXPECT_TRUE(r.has_result())
      << c.ShortDebugString() << " -> " << r.ShortDebugString();
    return r.result();
  }

  v1::CommandResult set_bio(const std::string& user, const std::string& bio) {
    v1::UserCommand c;
    auto* u = c.mutable_update_profile();
    u->set_command_id(cid());
    u->set_user_id(user);
    u->set_bio(bio);
    return ok(c);
  }

  /// Waits (bounded, in the node) until every read model has applied
  /// `position`; alice must exist.
  void catch_up(int64_t position) {
    auto queries = node_.query_stub();
    v1::GetTimelineRequest r;
    r.set_user_id("alice");
    r.set_min_position(position);
    v1::TimelinePage page;
    auto ctx = context_with_deadline(std::chrono::seconds(30));
    auto s = queries->GetTimeline(ctx.get(), r, &page);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }

  v1::ProjectionStatus projection_status() {
    auto admin = node_.admin_stub();
    v1::ProjectionStatus out;
    auto ctx = context_with_deadline();
    auto s = admin->GetProjectionStatus(ctx.get(), {}, &out);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return out;
  }

  /// Appends a row straight to `user`'s stream (what a corrupted or
  /// future event looks like to the projections); its position.
  int64_t insert_raw(const std::string& user, const std::string& type,
                     const std::string& payload) {
    pqxx::connection conn{db_.url()};
    pqxx::work tx{conn};
    auto seq = tx.exec_params1("SELECT coalesce(max(seq_nr), 0) + 1"
                               "  FROM events WHERE persistence_id = $1",
                               "user|" + user)[0]
                 .as<int64_t>();
    auto pos = tx.exec_params1("INSERT INTO events (persistence_id, seq_nr,"
                               "  event_type, event_version, payload)"
                               " VALUES ($1, $2, $3, 1, $4)"
                               " RETURNING global_position",
                               "user|" + user, seq, type,
                               pqxx::binarystring(payload))[0]
                 .as<int64_t>();
    tx.commit();
    return pos;
  }

  /// Alice and 40 users with 10 profile updates each: enough events that
  /// a replay in batches of 5 takes several status polls. Caught up.
  void populate() {
    ok(register_user(cid(), "alice", "alice"));
    int64_t last = 0;
    for (int u = 0; u < 40; ++u) {
      auto id = "u" + std::to_string(u);
      ok(register_user(cid(), id, id));
      for (int k = 0; k < 10; ++k)
        last = set_bio(id, "bio " + std::to_string(k)).global_position();
    }
    catch_up(last);
  }

  /// Rewrites the payload of the event at `position` (fixing a poison).
  void replace_payload(int64_t position, const std::string& payload) {
    pqxx::connection conn{db_.url()};
    pqxx::work tx{conn};
    auto r = tx.exec_params("UPDATE events SET payload = $2"
                            " WHERE global_position = $1",
                            position, pqxx::binarystring(payload));
    ASSERT_EQ(r.affected_rows(), 1u);
    tx.commit();
  }

  test_database db_;
  test_node node_;
  int next_id_ = 0;
};

TEST_F(shoutflowctl_test, cluster_shows_the_member_and_its_shard_map) {
  auto admin = node_.admin_stub();
  v1::ClusterStatus expected;
  auto ctx = context_with_deadline();
  ASSERT_TRUE(admin->GetClusterStatus(ctx.get(), {}, &expected).ok());
  ASSERT_EQ(expected.members_size(), 1);
  auto& me = expected.members(0);

  // --address wins over the environment.
  loopback_socket closed{false};
  auto r = run_ctl({"--address", admin_address(), "cluster"},
                   {{"SHOUTFLOW_ADMIN_ADDRESS", closed.address()}});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  EXPECT_THAT(r.err, IsEmpty());
  auto lines = lines_of(r.out);
  ASSERT_GE(lines.size(), 2u) << r.out;
  EXPECT_THAT(lines[0], ContainsRegex("^MEMBER +STATE +HEARTBEAT"));
  EXPECT_THAT(lines[1], ContainsRegex("^" + me.node_id() + " +up +[0-9.]+s +"
                                      + std::to_string(expected.shards())));
  EXPECT_THAT(lines[1], AllOf(HasSubstr("command,"),
                              HasSubstr("admin=" + admin_address())));
  auto shards = std::to_string(expected.shards());
  EXPECT_THAT(r.out, HasSubstr("shards: " + shards + ", " + shards + " owned"));
  EXPECT_THAT(r.out, ContainsRegex(me.node_id() + " +0-"
                                   + std::to_string(expected.shards() - 1)));
  for (auto* p :
       {"projection/users", "projection/shouts", "projection/timelines"})
    EXPECT_THAT(r.out, ContainsRegex(std::string{p} + " +0=" + me.node_id()
                                     + "@[0-9]+ 1=" + me.node_id()));

  r = ctl({"cluster", "--output", "json"});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  auto got = parse_json<v1::ClusterStatus>(r.out);
  ASSERT_EQ(got.members_size(), 1);
  EXPECT_EQ(got.members(0).node_id(), me.node_id());
  EXPECT_EQ(got.members(0).state(), "up");
  EXPECT_EQ(got.members(0).admin_address(), admin_address());
  EXPECT_EQ(got.shards(), expected.shards());
  EXPECT_EQ(got.shard_leases_size(), expected.shard_leases_size());
  EXPECT_EQ(got.partition_leases_size(), expected.partition_leases_size());
  ASSERT_EQ(got.shard_owners_size(), static_cast<int>(expected.shards()));
  for (auto& owner : got.shard_owners())
    EXPECT_EQ(owner, me.node_id());
}

TEST_F(shoutflowctl_test, stream_prints_decoded_events_and_pages) {
  auto alice = ok(register_user(cid(), "alice", "alice"));
  ok(register_user(cid(), "bob", "bob"));
  ok(follow(cid(), "alice", "bob"));
  auto shout = ok(post_shout(cid(), "alice", "hello from alice"));
  set_bio("alice", "likes \"quotes\"");

  auto r = ctl({"stream", "alice"});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  auto lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 5u) << r.out; // header and four events
  EXPECT_THAT(lines[0], ContainsRegex(
                          "^SEQ +POSITION +RECORDED +TYPE +COMMAND +PAYLOAD"));
  EXPECT_THAT(lines[1],
              ContainsRegex("^1 +" + std::to_string(alice.global_position())
                            + " +20[0-9-]+T[0-9:.]+Z +UserRegistered +cmd-1 "
                              "+\\{.*\"user_id\":\"alice\""));
  EXPECT_THAT(lines[2], ContainsRegex("^2 .* UserFollowed .*\"target_user_id"
                                      "\":\"bob\""));
  EXPECT_THAT(lines[3], ContainsRegex("^3 .* ShoutPosted .*\"shout_id\":\""
                                      + shout.shout_id() + "\""));
  EXPECT_THAT(lines[3], HasSubstr("\"text\":\"hello from alice\""));
  EXPECT_THAT(lines[4], HasSubstr("\"bio\":\"likes \\\"quotes\\\"\""));
  // Credentials never reach an operator's screen.
  EXPECT_THAT(r.out, Not(HasSubstr("argon2")));
  EXPECT_THAT(r.err, IsEmpty()) << "no more pages";

  r = ctl({"stream", "alice", "--output", "json"});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  auto all = parse_json<v1::StreamEvents>(r.out);
  ASSERT_EQ(all.events_size(), 4);
  EXPECT_EQ(all.last_seq_nr(), 4);
  for (int i = 0; i < 4; ++i)
    EXPECT_EQ(all.events(i).seq_nr(), i + 1);
  EXPECT_EQ(all.events(2).event().shout_posted().text(), "hello from alice");
  EXPECT_EQ(all.events(0).command_id(), "cmd-1");
  EXPECT_TRUE(all.events(0).has_recorded_at());

  // A page from the middle; the next page's --from on stderr.
  r = ctl({"stream", "alice", "--from", "2", "--limit=2", "--output=json"});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  auto page = parse_json<v1::StreamEvents>(r.out);
  ASSERT_EQ(page.events_size(), 2);
  EXPECT_EQ(page.events(0).seq_nr(), 2);
  EXPECT_EQ(page.events(1).seq_nr(), 3);
  EXPECT_THAT(r.err, HasSubstr("next page: --from 4"));
  r = ctl({"stream", "alice", "--from", "9"});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  EXPECT_EQ(lines_of(r.out).size(), 1u) << "only the header: " << r.out;

  // Unknown and invalid users.
  r = ctl({"stream", "nobody"});
  EXPECT_EQ(r.exit_code, 4) << show(r);
  EXPECT_THAT(r.err, HasSubstr("no user 'nobody'"));
  EXPECT_THAT(r.out, IsEmpty());
  r = ctl({"stream", "not a user"});
  EXPECT_EQ(r.exit_code, 2) << show(r);
  EXPECT_THAT(r.err,
              AllOf(HasSubstr("INVALID_ARGUMENT"), HasSubstr("user_id")));
}

TEST_F(shoutflowctl_test, projections_show_position_lag_and_partitions) {
  ok(register_user(cid(), "alice", "alice"));
  ok(register_user(cid(), "bob", "bob"));
  ok(post_shout(cid(), "bob", "one"));
  auto last = ok(follow(cid(), "alice", "bob"));
  catch_up(last.global_position());
  auto head = std::to_string(last.global_position());

  auto r = ctl({"projections"});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  auto lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 6u) << r.out;
  EXPECT_EQ(lines[0], "head position: " + head);
  EXPECT_THAT(lines[2], ContainsRegex("^PROJECTION +GEN +STATE +POSITION "
                                      "+LAG_EVENTS +LAG +APPLIED"));
  // Sorted by name; caught up: lag 0, every event applied.
  std::vector<std::string> names = {"shouts", "timelines", "users"};
  for (std::size_t i = 0; i < names.size(); ++i)
    EXPECT_THAT(lines[3 + i],
                ContainsRegex("^" + names[i] + " +1 +live +" + head
                              + " +0 +0.0s +4 +0 +0=" + head
                              + "/[0-9]+ 1=" + head + "/[0-9]+$"));

  r = ctl({"projections", "--output", "json"});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  auto status = parse_json<v1::ProjectionStatus>(r.out);
  EXPECT_EQ(status.head_position(), last.global_position());
  ASSERT_EQ(status.projections_size(), 3);
  for (auto& g : status.projections()) {
    EXPECT_EQ(g.state(), "live");
    EXPECT_EQ(g.lag_events(), 0);
    EXPECT_EQ(g.events_applied(), 4);
    EXPECT_EQ(g.partitions_size(), 2);
  }
  // Zeros are printed, so a script finds every key.
  EXPECT_THAT(r.out, HasSubstr("\"lag_events\": \"0\""));

  r = ctl({"projections", "users", "--output", "json"});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  auto users = parse_json<v1::ProjectionStatus>(r.out);
  ASSERT_EQ(users.projections_size(), 1);
  EXPECT_EQ(users.projections(0).projection(), "users");

  r = ctl({"projections", "nope"});
  EXPECT_EQ(r.exit_code, 4) << show(r);
  EXPECT_THAT(r.err, AllOf(HasSubstr("unknown projection 'nope'"),
                           HasSubstr("shouts, timelines, users")));
  EXPECT_THAT(r.out, IsEmpty());
}

TEST_F(shoutflowctl_test, rebuild_follows_to_live_with_plain_lines_on_a_pipe) {
  populate();

  auto r = ctl({"rebuild", "users", "--interval", "100ms"});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  EXPECT_THAT(r.err, IsEmpty());
  // Plain lines for a log: no carriage returns, no terminal escapes.
  EXPECT_EQ(r.out.find('\r'), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find('\033'), std::string::npos) << r.out;
  auto lines = lines_of(r.out);
  ASSERT_GE(lines.size(), 3u) << r.out;
  EXPECT_EQ(lines.front(),
            "users: rebuilding into generation 2 while generation 1 serves");
  int progress = 0;
  for (std::size_t i = 1; i + 1 < lines.size(); ++i) {
    EXPECT_THAT(lines[i],
                ContainsRegex("^users g2: building [0-9.]+% \\([0-9]+/[0-9]+ "
                              "events\\), (measuring rate|[0-9]+ events/s), "
                              "ETA "))
      << r.out;
    ++progress;
  }
  EXPECT_GE(progress, 1) << r.out;
  EXPECT_THAT(lines.back(),
              ContainsRegex("^users: generation 2 is live \\(replayed "
                            "[0-9]+ events in [0-9.]+s; generation 1 "
                            "retired\\)$"));
  // What it claimed is what the node says.
  auto status = projection_status();
  bool live = false;
  for (auto& g : status.projections())
    if (g.projection() == "users") {
      EXPECT_EQ(g.generation(), 2);
      live = g.state() == "live";
    }
  EXPECT_TRUE(live) << status.ShortDebugString();

  // --no-wait: started, not followed.
  r = ctl({"rebuild", "shouts", "--no-wait", "--output", "json"});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  EXPECT_EQ(parse_json<v1::RebuildProjectionResponse>(r.out).generation(), 2);

  r = ctl({"rebuild", "nope"});
  EXPECT_EQ(r.exit_code, 4) << show(r);
  EXPECT_THAT(r.err, HasSubstr("unknown projection 'nope'"));
  EXPECT_THAT(r.out, IsEmpty());
}

// A rebuild whose generation is abandoned before it goes live (what a node
// starting after the builder died does to it) exits 5. The abandonment is
// made deterministic by a trigger that records every new build as retired
// at once: the node still builds it, the swap refuses a retired
// generation, and the CLI must notice instead of following forever.
TEST_F(shoutflowctl_test, an_abandoned_rebuild_exits_5) {
  ok(register_user(cid(), "alice", "alice"));
  db_.exec("CREATE FUNCTION abandon_builds() RETURNS trigger AS $$"
           " BEGIN"
           "   IF NEW.state = 'building' THEN NEW.state := 'retired'; END IF;"
           "   RETURN NEW;"
           " END $$ LANGUAGE plpgsql;"
           "CREATE TRIGGER abandon_builds BEFORE INSERT"
           "  ON projection_generations"
           "  FOR EACH ROW EXECUTE FUNCTION abandon_builds()");
  auto r = ctl({"rebuild", "users"});
  EXPECT_EQ(r.exit_code, 5) << show(r);
  EXPECT_THAT(r.err, HasSubstr("users generation 2 was abandoned before it "
                               "went live; the live generation is 1"));
  r = ctl({"rebuild", "shouts", "--output", "json"});
  EXPECT_EQ(r.exit_code, 5) << show(r);
  EXPECT_THAT(r.out, IsEmpty());
}

TEST_F(shoutflowctl_test, rebuild_on_a_terminal_draws_a_bar_with_an_eta) {
  populate();

  auto r = run_ctl_on_terminal({"rebuild", "timelines"},
                               {{"SHOUTFLOW_ADMIN_ADDRESS", admin_address()}});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  // Redrawn in place: carriage return and erase-line before each frame.
  EXPECT_THAT(r.out, HasSubstr("\r\033[K"));
  EXPECT_THAT(r.out, ContainsRegex("timelines g2 \\[[#.]{30}\\] +[0-9.]+% "
                                   "[0-9]+/[0-9]+ events .*ETA "));
  EXPECT_THAT(r.out, Not(HasSubstr("timelines g2: building")))
    << "plain progress lines on a terminal";
  EXPECT_THAT(r.out, ContainsRegex("timelines: generation 2 is live "
                                   "\\(replayed [0-9]+ events in [0-9.]+s; "
                                   "generation 1 retired\\)\r?\n$"));
}

TEST_F(shoutflowctl_test, dead_letters_are_listed_and_retried) {
  ok(register_user(cid(), "alice", "alice"));
  ok(register_user(cid(), "bob", "bob"));
  auto r = ctl({"dead-letters", "list"});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  EXPECT_EQ(r.out, "no dead letters\n");

  // Two poison events: one that will be fixed (a profile update whose
  // payload does not decode) and one that never will (an unknown type).
  auto garbage = std::string("\x0a\x7f", 2) + "trunc";
  auto fixable = insert_raw("alice", "ProfileUpdated", garbage);
  auto hopeless = insert_raw("ghost", "NoSuchEvent", "\x01");
  catch_up(ok(post_shout(cid(), "bob", "after the poison")).global_position());

  r = ctl({"dead-letters", "list"});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  auto lines = lines_of(r.out);
  EXPECT_THAT(lines.at(0),
              ContainsRegex("^ID +PROJECTION +GEN +KEY +POSITION "
                            "+STREAM +SEQ +TYPE +RECORDED +ERROR"));
  EXPECT_THAT(r.out,
              ContainsRegex("users +1 +ghost +" + std::to_string(hopeless)
                            + " +user\\|ghost +1 +NoSuchEvent .*"
                              "NoSuchEvent"));
  EXPECT_THAT(r.out, ContainsRegex("users +1 +alice +" + std::to_string(fixable)
                                   + " +user\\|alice +2 +ProfileUpdated"));

  r = ctl(
    {"dead-letters", "list", "--projection", "users", "--output", "json"});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  auto users = parse_json<v1::DeadLetters>(r.out);
  ASSERT_EQ(users.dead_letters_size(), 2) << r.out;
  int64_t fixable_id = 0, hopeless_id = 0;
  for (auto& d : users.dead_letters()) {
    EXPECT_EQ(d.projection(), "users");
    EXPECT_FALSE(d.error().empty());
    (d.global_position() == fixable ? fixable_id : hopeless_id) = d.id();
  }
  ASSERT_GT(fixable_id, 0);
  ASSERT_GT(hopeless_id, 0);
  r = ctl({"dead-letters", "list", "--limit", "1", "--output", "json"});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  EXPECT_EQ(parse_json<v1::DeadLetters>(r.out).dead_letters_size(), 1);
  r = ctl({"dead-letters", "list", "--projection", "nope"});
  EXPECT_EQ(r.exit_code, 4) << show(r);
  EXPECT_THAT(r.err, HasSubstr("unknown projection 'nope'"));

  // A retry that fails again exits 5 with the error; it stays listed.
  r = ctl({"dead-letters", "retry", std::to_string(hopeless_id)});
  EXPECT_EQ(r.exit_code, 5) << show(r);
  EXPECT_THAT(r.err,
              AllOf(HasSubstr("dead letter " + std::to_string(hopeless_id)
                              + " failed again"),
                    HasSubstr("NoSuchEvent")));

  // Fixed in the log, the retry applies it and it leaves the list.
  v1::UserEvent e;
  e.mutable_profile_updated()->set_user_id("alice");
  e.mutable_profile_updated()->set_bio("fixed");
  replace_payload(fixable, user::encode_event(e).payload);
  r = ctl({"dead-letters", "retry", std::to_string(fixable_id)});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  EXPECT_THAT(r.out, ContainsRegex("^dead letter " + std::to_string(fixable_id)
                                   + ": applied \\([0-9]+ events of its "
                                     "key\\)\n$"));
  r = ctl(
    {"dead-letters", "list", "--projection", "users", "--output", "json"});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  users = parse_json<v1::DeadLetters>(r.out);
  ASSERT_EQ(users.dead_letters_size(), 1);
  EXPECT_EQ(users.dead_letters(0).id(), hopeless_id);

  // An id the node does not know: the node refuses it by name.
  r = ctl({"dead-letters", "retry", "987654"});
  EXPECT_EQ(r.exit_code, 2) << show(r);
  EXPECT_THAT(r.err, AllOf(HasSubstr("INVALID_ARGUMENT"),
                           HasSubstr("dead letter 987654")));
}

TEST_F(shoutflowctl_test, migrate_reports_the_schema_version) {
  auto version = db_.scalar<int>("SELECT max(version) FROM schema_migrations");
  // Already migrated by the fixture: nothing to apply, and safe to repeat.
  auto r = run_ctl({"migrate", "--db-url", db_.url()});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  EXPECT_EQ(r.out,
            "schema version " + std::to_string(version) + " (0 applied)\n");
  r = run_ctl({"migrate", "--output", "json"},
              {{"SHOUTFLOW_DB_URL", db_.url()}});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  EXPECT_THAT(r.out,
              AllOf(HasSubstr("\"schema_version\": " + std::to_string(version)),
                    HasSubstr("\"applied\": 0")));
}

TEST_F(shoutflowctl_test, call_sends_any_rpc_and_maps_its_status) {
  ok(register_user(cid(), "alice", "alice"));
  auto r = ctl({"call", "AdminService/ReadStream", "user_id: \"alice\""});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  EXPECT_THAT(r.out, HasSubstr("event_type: \"UserRegistered\""));
  r = ctl(
    {"call", "ReadStream", "{\"user_id\": \"alice\"}", "--output", "json"});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  EXPECT_EQ(parse_json<v1::StreamEvents>(r.out).events_size(), 1);
  // A server answer that is not a usage problem: exit 1 with its code.
  auto cmd_address = "127.0.0.1:" + std::to_string(node_.get().command_port());
  r = run_ctl({"call", "RegisterUser",
               "command_id: \"again\" user_id: \"alice2\" handle: \"ALICE\" "
               "email: \"a@example.com\" password: \"correct horse\"",
               "--address", cmd_address});
  EXPECT_EQ(r.exit_code, 1) << show(r);
  EXPECT_THAT(r.err, HasSubstr("shoutflowctl: call: ALREADY_EXISTS: handle"));
}

} // namespace
