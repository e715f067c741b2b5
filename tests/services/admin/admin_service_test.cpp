// End-to-end tests of the AdminService through real gRPC against an
// in-process node with the read side on real PostgreSQL: cluster and shard
// map, projection status and lag, raw streams (decoded, credentials
// redacted), rebuilds that swap a new generation in while queries keep
// answering (G3, G6), and dead letters.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/test_db.hpp"
#include "tests/support/test_node.hpp"
#include "tests/support/wait.hpp"

using namespace shoutflow;
using namespace shoutflow::testing;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using steady = std::chrono::steady_clock;

using admin_stub = v1::AdminService::Stub;
using command_stub = v1::CommandService::Stub;
using query_stub = v1::QueryService::Stub;

template <class Request>
using command_method = grpc::Status (command_stub::*)(grpc::ClientContext*,
                                                      const Request&,
                                                      v1::CommandResult*);

using shoutflow::testing::eventually;
using shoutflow::testing::wait_until;

const v1::ProjectionGeneration* find_generation(const v1::ProjectionStatus& s,
                                                const std::string& name,
                                                int32_t generation) {
  for (auto& g : s.projections())
    if (g.projection() == name && g.generation() == generation)
      return &g;
  return nullptr;
}

/// Documents compared field by field (they are protobuf messages).
bool same(const google::protobuf::Message& a,
          const google::protobuf::Message& b) {
  return a.SerializeAsString() == b.SerializeAsString();
}

/// A Watch of one user's document, read by a thread of its own so that a
/// lost change fails the test instead of blocking it.
class user_watch {
public:
  user_watch(query_stub* queries, const std::string& user_id) {
    ctx_.set_deadline(std::chrono::system_clock::now()
                      + std::chrono::seconds(60));
    v1::WatchRequest req;
    req.add_user_ids(user_id);
    reader_ = queries->Watch(&ctx_, req);
    reading_ = std::thread([this] {
      v1::DocumentChange change;
      while (reader_->Read(&change)) {
        std::lock_guard<std::mutex> guard{mtx_};
        changes_.push_back(change);
      }
      ended_ = true;
    });
  }

  ~user_watch() {
    if (reading_.joinable())
      finish();
  }

  std::vector<v1::DocumentChange> received() {
    std::lock_guard<std::mutex> guard{mtx_};
    return changes_;
  }

  /// The server ended the stream.
  bool ended() const {
    return ended_;
  }

  /// Cancels the stream; its final status.
  grpc::Status finish() {
    ctx_.TryCancel();
    reading_.join();
    return reader_->Finish();
  }

private:
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReader<v1::DocumentChange>> reader_;
  std::mutex mtx_;
  std::vector<v1::DocumentChange> changes_;
  std::atomic<bool> ended_{false};
  std::thread reading_;
};

class admin_service_test : public ::testing::Test {
protected:
  void SetUp() override {
    start();
  }

  void start(const std::function<void(node::node_config&)>& tweak = {}) {
    admin_.reset();
    commands_.reset();
    queries_.reset();
    node_.reset();
    node_ = std::make_unique<test_node>(db_.url(), [&](node::node_config& cfg) {
      with_read_side(cfg);
      if (tweak)
        tweak(cfg);
    });
    admin_ = node_->admin_stub();
    commands_ = node_->command_stub();
    queries_ = node_->query_stub();
  }

  std::string next_command_id() {
    return "cmd-" + std::to_string(++command_ids_);
  }

  template <class Request>
  v1::CommandResult command(command_method<Request> method, Request r) {
    if (r.command_id().empty())
      r.set_command_id(next_command_id());
    v1::CommandResult out;
    auto ctx = context_with_deadline();
    auto status = (commands_.get()->*method)(ctx.get(), r, &out);
    EXPECT_TRUE(status.ok())
      << r.ShortDebugString() << ": " << status.error_message();
    return out;
  }

  v1::CommandResult register_user(const std::string& id,
                                  const std::string& command_id = "") {
    v1::RegisterUserRequest r;
    r.set_command_id(command_id);
    r.set_user_id(id);
    r.set_handle(id);
    r.set_display_name("User " + id);
    r.set_email(id + "@example.com");
    r.set_password("correct horse");
    return command(&command_stub::RegisterUser, r);
  }

  v1::CommandResult set_bio(const std::string& id, const std::string& bio) {
    v1::UpdateProfileRequest r;
    r.set_user_id(id);
    r.set_bio(bio);
    return command(&command_stub::UpdateProfile, r);
  }

  v1::CommandResult follow(const std::string& who, const std::string& whom) {
    v1::FollowRequest r;
    r.set_user_id(who);
    r.set_target_user_id(whom);
    return command(&command_stub::Follow, r);
  }

  v1::CommandResult post(const std::string& who, const std::string& text) {
    v1::PostShoutRequest r;
    r.set_user_id(who);
    r.set_text(text);
    return command(&command_stub::PostShout, r);
  }

  v1::CommandResult like(const std::string& who, const std::string& shout) {
    v1::LikeShoutRequest r;
    r.set_user_id(who);
    r.set_shout_id(shout);
    return command(&command_stub::LikeShout, r);
  }

  v1::LoginResult login(const std::string& id, const std::string& password) {
    v1::LoginRequest r;
    r.set_command_id(next_command_id());
    r.set_user_id(id);
    r.set_password(password);
    r.set_client_ip("192.0.2.1");
    r.set_user_agent("admin_service_test");
    v1::LoginResult out;
    auto ctx = context_with_deadline();
    auto status = commands_->Login(ctx.get(), r, &out);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return out;
  }

  grpc::Status get_user(const std::string& id, int64_t min_position,
                        v1::UserView* out) {
    v1::GetUserRequest r;
    r.set_user_id(id);
    r.set_min_position(min_position);
    auto ctx = context_with_deadline();
    return queries_->GetUser(ctx.get(), r, out);
  }

  /// Waits until every read model has applied `position`.
  void catch_up(int64_t position) {
    v1::GetTimelineRequest r;
    r.set_user_id(any_user_);
    r.set_min_position(position);
    v1::TimelinePage out;
    auto ctx = context_with_deadline();
    auto status = queries_->GetTimeline(ctx.get(), r, &out);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  v1::ProjectionStatus projection_status() {
    v1::ProjectionStatus out;
    auto ctx = context_with_deadline();
    auto status = admin_->GetProjectionStatus(
      ctx.get(), v1::GetProjectionStatusRequest{}, &out);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return out;
  }

  grpc::Status rebuild(const std::string& projection, int32_t* generation,
                       int64_t until_position = 0) {
    v1::RebuildProjectionRequest r;
    r.set_projection(projection);
    r.set_until_position(until_position);
    v1::RebuildProjectionResponse out;
    auto ctx = context_with_deadline(seconds(30));
    auto status = admin_->RebuildProjection(ctx.get(), r, &out);
    if (generation != nullptr)
      *generation = out.generation();
    return status;
  }

  grpc::Status read_stream(const std::string& user_id, int64_t from_seq,
                           int32_t limit, v1::StreamEvents* out) {
    v1::ReadStreamRequest r;
    r.set_user_id(user_id);
    r.set_from_seq(from_seq);
    r.set_limit(limit);
    auto ctx = context_with_deadline();
    return admin_->ReadStream(ctx.get(), r, out);
  }

  test_database db_;
  std::unique_ptr<test_node> node_;
  std::unique_ptr<admin_stub> admin_;
  std::unique_ptr<command_stub> commands_;
  std::unique_ptr<query_stub> queries_;
  std::atomic<int64_t> command_ids_{0};
  /// A registered user whose timeline `catch_up` reads.
  std::string any_user_;
};

// -- GetClusterStatus ---------------------------------------------------------

TEST_F(admin_service_test, cluster_status_lists_the_node_and_its_shard_map) {
  // The fixture's first node has left: a new cluster on this database may
  // choose another shard count (it is fixed only while one exists).
  node_.reset();
  db_.exec("DELETE FROM cluster_settings");
  start([](node::node_config& c) {
    c.shards = 16;
    c.node_id = 7;
  });
  v1::ClusterStatus status;
  auto ctx = context_with_deadline();
  auto s = admin_->GetClusterStatus(ctx.get(), {}, &status);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(status.members_size(), 1);
  auto& m = status.members(0);
  EXPECT_EQ(m.node_id(), "node-7");
  EXPECT_FALSE(m.address().empty());
  EXPECT_THAT(m.roles(), UnorderedElementsAre("command", "query", "entities",
                                              "projections"));
  EXPECT_GE(m.heartbeat_age_seconds(), 0.0);
  EXPECT_LT(m.heartbeat_age_seconds(), 60.0);
  EXPECT_EQ(status.shards(), 16u);
  ASSERT_EQ(status.shard_owners_size(), 16);
  for (auto& owner : status.shard_owners())
    EXPECT_EQ(owner, "node-7");
}

TEST_F(admin_service_test, a_node_without_projections_reports_its_roles) {
  node_.reset();
  db_.exec("DELETE FROM cluster_settings");
  test_node writer{db_.url(), [](node::node_config& c) { c.shards = 4; }};
  auto stub = writer.admin_stub();
  v1::ClusterStatus cluster;
  auto ctx = context_with_deadline();
  ASSERT_TRUE(stub->GetClusterStatus(ctx.get(), {}, &cluster).ok());
  ASSERT_EQ(cluster.members_size(), 1);
  EXPECT_THAT(cluster.members(0).roles(),
              UnorderedElementsAre("command", "entities"));
  EXPECT_EQ(cluster.shard_owners_size(), 4);
  // Projection partitions may run on other nodes: any node reports them
  // (from the database), here those the fixture's first node created.
  v1::ProjectionStatus projections;
  ctx = context_with_deadline();
  auto s = stub->GetProjectionStatus(ctx.get(), {}, &projections);
  ASSERT_TRUE(s.ok()) << s.error_message();
  std::set<std::string> names;
  for (auto& g : projections.projections())
    if (g.state() == "live")
      names.insert(g.projection());
  EXPECT_THAT(names, UnorderedElementsAre("users", "shouts", "timelines"));
}

// -- GetProjectionStatus ------------------------------------------------------

TEST_F(admin_service_test, projection_status_shows_live_generations_caught_up) {
  any_user_ = "alice";
  register_user("alice");
  register_user("bob");
  follow("bob", "alice");
  auto s = post("alice", "hello").shout_id();
  like("bob", s);
  login("alice", "correct horse");
  auto last = set_bio("bob", "hi");
  catch_up(last.global_position());

  auto status = projection_status();
  auto events = db_.scalar<int64_t>("SELECT count(*) FROM events");
  EXPECT_EQ(status.head_position(), last.global_position());
  ASSERT_EQ(status.projections_size(), 3);
  std::set<std::string> names;
  for (auto& g : status.projections()) {
    SCOPED_TRACE(g.projection());
    names.insert(g.projection());
    EXPECT_EQ(g.generation(), 1);
    EXPECT_EQ(g.state(), "live");
    EXPECT_EQ(g.position(), status.head_position());
    EXPECT_EQ(g.lag_events(), 0);
    EXPECT_EQ(g.lag_seconds(), 0.0);
    EXPECT_EQ(g.events_applied(), events);
    EXPECT_EQ(g.dead_letters(), 0);
    ASSERT_EQ(g.partitions_size(), 2);
    int64_t keyed = 0;
    for (int i = 0; i < 2; ++i) {
      EXPECT_EQ(g.partitions(i).partition(), i);
      EXPECT_EQ(g.partitions(i).position(), status.head_position());
      keyed += g.partitions(i).events();
    }
    EXPECT_GT(keyed, 0);
  }
  EXPECT_THAT(names, ElementsAre("shouts", "timelines", "users"));
}

// "Caught up" must read as lag 0 whatever order concurrent writers
// committed in. Fails (often, not always) today: admin_service.cpp sets
// lag_events = head - watermark.position, but the watermark is the last
// event in (tx_id, position) order, which is not the highest position when
// a transaction that took a lower xid inserted a higher position (two
// journal writers, claims inserted before events): then a fully caught-up
// projection reports lag_events > 0 until the next write. Count the events
// after the watermark cursor instead (as lag_seconds already does).
TEST_F(admin_service_test, lag_is_zero_once_caught_up_after_concurrent_writes) {
  constexpr int writers = 8;
  any_user_ = "w0";
  for (int w = 0; w < writers; ++w)
    register_user("w" + std::to_string(w));
  for (int round = 0; round < 8; ++round) {
    SCOPED_TRACE(round);
    std::atomic<int64_t> newest{0};
    std::vector<std::thread> threads;
    for (int w = 0; w < writers; ++w)
      threads.emplace_back([&, w] {
        for (int i = 0; i < 3; ++i) {
          auto r = post("w" + std::to_string(w), "x");
          auto p = r.global_position();
          auto seen = newest.load();
          while (p > seen && !newest.compare_exchange_weak(seen, p)) {
          }
        }
      });
    for (auto& t : threads)
      t.join();
    catch_up(newest.load());
    auto status = projection_status();
    EXPECT_EQ(status.head_position(), newest.load());
    for (auto& g : status.projections())
      EXPECT_EQ(g.lag_events(), 0) << g.projection() << " at " << g.position()
                                   << ", head " << status.head_position();
  }
}

// -- ReadStream ---------------------------------------------------------------

TEST_F(admin_service_test, read_stream_returns_decoded_events_in_seq_order) {
  auto r1 = register_user("alice", "reg-alice");
  register_user("bob");
  auto r2 = set_bio("alice", "hello");
  auto r3 = follow("alice", "bob");
  auto r4 = post("alice", "a shout");
  auto r5 = like("alice", r4.shout_id());
  auto r6 = login("alice", "correct horse").result();
  auto r7 = login("alice", "wrong password").result();
  std::vector<v1::CommandResult> results = {r1, r2, r3, r4, r5, r6, r7};

  v1::StreamEvents all;
  auto s = read_stream("alice", 0, 0, &all);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(all.events_size(), 7);
  std::vector<std::string> types;
  for (int i = 0; i < 7; ++i) {
    auto& e = all.events(i);
    SCOPED_TRACE(i);
    EXPECT_EQ(e.seq_nr(), i + 1);
    EXPECT_EQ(e.global_position(),
              results[static_cast<std::size_t>(i)].global_position());
    EXPECT_EQ(e.event_version(), 1);
    EXPECT_FALSE(e.command_id().empty());
    EXPECT_TRUE(e.has_recorded_at());
    EXPECT_NE(e.event().event_case(), v1::UserEvent::EVENT_NOT_SET);
    types.push_back(e.event_type());
  }
  EXPECT_THAT(types, ElementsAre("UserRegistered", "ProfileUpdated",
                                 "UserFollowed", "ShoutPosted", "ShoutLiked",
                                 "UserLoggedIn", "LoginFailed"));
  EXPECT_EQ(all.events(0).command_id(), "reg-alice");
  auto& registered = all.events(0).event().user_registered();
  EXPECT_EQ(registered.user_id(), "alice");
  EXPECT_EQ(registered.handle(), "alice");
  EXPECT_EQ(registered.email(), "alice@example.com");
  // Operators see what happened, never credentials.
  auto stored_hash = db_.scalar<std::string>(
    "SELECT encode(payload, 'escape') FROM events"
    " WHERE persistence_id = 'user|alice' AND seq_nr = 1");
  EXPECT_THAT(stored_hash, HasSubstr("$argon2id$"));
  EXPECT_THAT(registered.password_hash(), ::testing::Not(HasSubstr("argon2")));
  EXPECT_EQ(all.SerializeAsString().find("$argon2"), std::string::npos);
  EXPECT_EQ(all.events(1).event().profile_updated().bio(), "hello");
  EXPECT_EQ(all.events(2).event().user_followed().target_user_id(), "bob");
  EXPECT_EQ(all.events(3).event().shout_posted().shout_id(), r4.shout_id());
  EXPECT_EQ(all.events(3).event().shout_posted().text(), "a shout");
  EXPECT_EQ(all.events(4).event().shout_liked().shout_id(), r4.shout_id());

  v1::StreamEvents part;
  ASSERT_TRUE(read_stream("alice", 3, 2, &part).ok());
  ASSERT_EQ(part.events_size(), 2);
  EXPECT_EQ(part.events(0).seq_nr(), 3);
  EXPECT_EQ(part.events(1).seq_nr(), 4);
  v1::StreamEvents tail;
  ASSERT_TRUE(read_stream("alice", 6, 100, &tail).ok());
  ASSERT_EQ(tail.events_size(), 2);
  EXPECT_EQ(tail.events(1).seq_nr(), 7);
  v1::StreamEvents past;
  ASSERT_TRUE(read_stream("alice", 8, 0, &past).ok());
  EXPECT_EQ(past.events_size(), 0);
  v1::StreamEvents bobs;
  ASSERT_TRUE(read_stream("bob", 0, 0, &bobs).ok());
  ASSERT_EQ(bobs.events_size(), 1);
  EXPECT_EQ(bobs.events(0).event().user_registered().user_id(), "bob");
}

TEST_F(admin_service_test, read_stream_bad_input_is_invalid_argument) {
  register_user("alice");
  for (std::string id :
       {std::string{}, std::string{"a b"}, std::string(65, 'a'),
        std::string{"al|ice"}, std::string{"\xc3\xa5lice"}}) {
    SCOPED_TRACE(::testing::PrintToString(id));
    v1::StreamEvents out;
    auto s = read_stream(id, 0, 0, &out);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("user_id"));
  }
  v1::StreamEvents out;
  auto s = read_stream("alice", -1, 0, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("from_seq"));
  for (int32_t limit : {-1, 10001}) {
    s = read_stream("alice", 0, limit, &out);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("limit"));
  }
}

// G5 for the admin API too: invalid UTF-8 in a string field is
// INVALID_ARGUMENT naming the field. Fails today: AdminService derives from
// the typed CallbackService, so protobuf's UTF-8 check refuses the request
// before admin_service.cpp sees it and gRPC answers a bare INTERNAL /
// UNIMPLEMENTED without naming the field. Fix: take raw requests
// (WithRawCallbackMethod_*) and parse them with services/common/
// lenient_proto.hpp like the Command and Query services do.
TEST_F(admin_service_test, invalid_utf8_in_admin_requests_is_invalid_argument) {
  register_user("alice");
  v1::StreamEvents events;
  auto s = read_stream("al\xff"
                       "ce",
                       0, 0, &events);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
    << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("user_id"));

  s = rebuild("us\xffrs", nullptr);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
    << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("projection"));

  v1::ListDeadLettersRequest list;
  list.set_projection("\xc3");
  v1::DeadLetters letters;
  auto ctx = context_with_deadline();
  s = admin_->ListDeadLetters(ctx.get(), list, &letters);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
    << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("projection"));
}

// -- RebuildProjection --------------------------------------------------------

TEST_F(admin_service_test,
       rebuild_of_an_unknown_projection_is_invalid_argument) {
  for (std::string name : {"", "nope", "Users", "users "}) {
    SCOPED_TRACE(::testing::PrintToString(name));
    auto s = rebuild(name, nullptr);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("projection"));
  }
  auto s = rebuild("users", nullptr, -1);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("until_position"));
  // Nothing started.
  auto status = projection_status();
  for (auto& g : status.projections())
    EXPECT_EQ(g.generation(), 1) << g.projection();
}

/// A fixed population: users with follows, shouts, likes and logins.
struct population {
  std::vector<std::string> users;
  int64_t last_position = 0;
};

// A rebuild of "users" replays the log into generation 2 while generation
// 1 serves, then swaps it in: queries answer the same documents before,
// during and after; read-your-writes holds throughout (G6); a second
// rebuild while one runs is refused; the rebuilt documents equal the live
// ones (G3) and generation 1's tables are dropped.
TEST_F(admin_service_test,
       rebuild_swaps_in_a_new_generation_while_queries_answer) {
  // Small batches make the replay take a while.
  start([](node::node_config& c) { c.projection_batch = 5; });
  constexpr int stable_users = 24;
  any_user_ = "s0";
  population pop;
  {
    std::vector<std::thread> threads;
    std::mutex mtx;
    for (int t = 0; t < 4; ++t)
      threads.emplace_back([&, t] {
        for (int i = t; i < stable_users; i += 4) {
          auto id = "s" + std::to_string(i);
          register_user(id);
          set_bio(id, "stable user number " + std::to_string(i));
          for (int k = 0; k < 4; ++k)
            post(id, "shout " + std::to_string(k));
          login(id, "correct horse");
          login(id, "wrong one");
          std::lock_guard<std::mutex> guard{mtx};
          pop.users.push_back(id);
        }
      });
    for (auto& t : threads)
      t.join();
  }
  for (int i = 0; i < stable_users; ++i)
    for (int k = 1; k <= 3; ++k)
      pop.last_position = follow("s" + std::to_string(i),
                                 "s" + std::to_string((i + k) % stable_users))
                            .global_position();
  catch_up(pop.last_position);

  // The documents as generation 1 serves them.
  std::map<std::string, v1::UserView> before;
  std::map<std::string, v1::LoginHistory> logins_before;
  for (auto& id : pop.users) {
    ASSERT_TRUE(get_user(id, 0, &before[id]).ok());
    v1::GetLoginHistoryRequest r;
    r.set_user_id(id);
    auto ctx = context_with_deadline();
    ASSERT_TRUE(
      queries_->GetLoginHistory(ctx.get(), r, &logins_before[id]).ok());
  }
  register_user("writer0");
  register_user("writer1");

  std::atomic<bool> stop{false};
  std::atomic<int> reads{0};
  std::mutex errors_mtx;
  std::vector<std::string> errors;
  auto error = [&](const std::string& what) {
    std::lock_guard<std::mutex> guard{errors_mtx};
    if (errors.size() < 20)
      errors.push_back(what);
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t)
    threads.emplace_back([&, t] {
      for (std::size_t i = static_cast<std::size_t>(t); !stop; ++i) {
        auto& id = pop.users[i % pop.users.size()];
        v1::UserView u;
        auto s = get_user(id, 0, &u);
        if (!s.ok())
          error("GetUser " + id + ": " + s.error_message());
        else if (!same(u, before.at(id)))
          error("GetUser " + id + " changed: " + u.ShortDebugString());
        v1::GetLoginHistoryRequest r;
        r.set_user_id(id);
        v1::LoginHistory h;
        auto ctx = context_with_deadline();
        s = queries_->GetLoginHistory(ctx.get(), r, &h);
        if (!s.ok())
          error("GetLoginHistory " + id + ": " + s.error_message());
        else if (!same(h, logins_before.at(id)))
          error("GetLoginHistory " + id + " changed");
        v1::SearchUsersRequest q;
        q.set_query("stable user");
        q.set_limit(100);
        v1::UserPage found;
        ctx = context_with_deadline();
        s = queries_->SearchUsers(ctx.get(), q, &found);
        if (!s.ok())
          error("SearchUsers: " + s.error_message());
        else if (found.users_size() != stable_users)
          error("SearchUsers found " + std::to_string(found.users_size()));
        ++reads;
      }
    });
  // Writers reading their own writes through the swap.
  for (int w = 0; w < 2; ++w)
    threads.emplace_back([&, w] {
      auto id = "writer" + std::to_string(w);
      for (int i = 0; !stop; ++i) {
        auto bio = "bio " + std::to_string(i);
        auto r = set_bio(id, bio);
        v1::UserView u;
        auto s = get_user(id, r.global_position(), &u);
        if (!s.ok())
          error("GetUser " + id + " min_position "
                + std::to_string(r.global_position()) + ": "
                + std::to_string(s.error_code()) + " " + s.error_message());
        else if (u.bio() != bio)
          error("GetUser " + id + " missed its write: " + u.bio());
      }
    });

  auto reads_before = reads.load();
  EXPECT_TRUE(eventually([&] { return reads.load() > reads_before + 3; }));
  int32_t generation = 0;
  auto s = rebuild("users", &generation);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(generation, 2);
  // One rebuild of a projection at a time.
  int32_t second = 0;
  auto refused = rebuild("users", &second);
  EXPECT_FALSE(refused.ok());
  EXPECT_THAT(refused.error_code(),
              ::testing::AnyOf(grpc::StatusCode::INVALID_ARGUMENT,
                               grpc::StatusCode::FAILED_PRECONDITION,
                               grpc::StatusCode::ALREADY_EXISTS,
                               grpc::StatusCode::ABORTED));
  EXPECT_THAT(refused.error_message(), HasSubstr("users"));

  // Wait for the swap: generation 2 live, generation 1 gone.
  EXPECT_TRUE(eventually(
    [&] {
      auto status = projection_status();
      auto g2 = find_generation(status, "users", 2);
      return g2 != nullptr && g2->state() == "live"
             && find_generation(status, "users", 1) == nullptr;
    },
    seconds(30)))
    << projection_status().ShortDebugString();
  reads_before = reads.load();
  EXPECT_TRUE(eventually([&] { return reads.load() > reads_before + 10; }));
  stop = true;
  for (auto& t : threads)
    t.join();
  EXPECT_THAT(errors, ::testing::IsEmpty());

  // The rebuilt documents equal the live ones of before.
  for (auto& id : pop.users) {
    v1::UserView u;
    ASSERT_TRUE(get_user(id, 0, &u).ok());
    EXPECT_TRUE(same(u, before[id])) << u.ShortDebugString() << "\n"
                                     << before[id].ShortDebugString();
  }
  EXPECT_EQ(db_.scalar<std::string>("SELECT state FROM projection_generations"
                                    " WHERE projection = 'users'"
                                    "   AND generation = 1"),
            "retired");
  EXPECT_TRUE(eventually([&] {
    return db_.scalar<bool>("SELECT to_regclass('rm_users_g1') IS NULL"
                            "   AND to_regclass('rm_logins_g1') IS NULL");
  }))
    << "generation 1's tables were not dropped";
  // The other projections were not touched.
  auto status = projection_status();
  EXPECT_NE(find_generation(status, "shouts", 1), nullptr);
  EXPECT_NE(find_generation(status, "timelines", 1), nullptr);
  // A new rebuild is accepted once the first is done.
  ASSERT_TRUE(rebuild("users", &generation).ok());
  EXPECT_EQ(generation, 3);
}

// Watch streams keep receiving every change of their subjects across a
// rebuild's swap: the new generation's partitions report to the watch hub
// from the moment they serve, and nothing is reported twice.
TEST_F(admin_service_test, watch_sees_every_change_across_a_rebuild) {
  start([](node::node_config& c) { c.projection_batch = 5; });
  any_user_ = "u0";
  for (int i = 0; i < 40; ++i) {
    auto id = "u" + std::to_string(i);
    register_user(id);
    for (int k = 0; k < 5; ++k)
      set_bio(id, "bio " + std::to_string(k));
  }
  // Caught up past the probe's registration: its document exists before
  // the Watch reads it, so the first message is the initial document.
  catch_up(register_user("probe").global_position());

  user_watch watch{queries_.get(), "probe"};
  EXPECT_TRUE(eventually([&] { return !watch.received().empty(); }));

  std::vector<int64_t> written;
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int i = 0; !stop || i < 10; ++i)
      written.push_back(
        set_bio("probe", "probe " + std::to_string(i)).global_position());
  });
  EXPECT_TRUE(rebuild("users", nullptr).ok());
  EXPECT_TRUE(eventually(
    [&] {
      auto status = projection_status();
      auto g2 = find_generation(status, "users", 2);
      return g2 != nullptr && g2->state() == "live";
    },
    seconds(30)));
  stop = true;
  writer.join();
  written.push_back(set_bio("probe", "the end").global_position());
  EXPECT_TRUE(eventually([&] {
    auto got = watch.received();
    return !got.empty() && got.back().global_position() >= written.back();
  }))
    << "the last change never arrived";
  watch.finish();

  auto got = watch.received();
  ASSERT_FALSE(got.empty());
  ASSERT_TRUE(got[0].has_user());
  EXPECT_EQ(got[0].user().user_id(), "probe");
  EXPECT_EQ(got[0].global_position(), 0);
  std::vector<int64_t> seen;
  for (std::size_t i = 1; i < got.size(); ++i)
    seen.push_back(got[i].global_position());
  EXPECT_EQ(seen, written);
}

// A rebuild on a quiet log, on a node that has seen no batch since it
// started: the build is promoted at the head and has nothing more to
// publish before the swap. The watch hub places the new
// generation where the database shows it and follows it; the stream stays
// open and the first change after the swap reaches it. (It used to end with
// UNAVAILABLE: the hub waited for a batch of the new generation that never
// came, then switched as if changes had been lost.)
TEST_F(admin_service_test,
       watch_stream_stays_open_across_a_rebuild_of_a_quiet_log) {
  any_user_ = "probe";
  auto registered = register_user("probe");
  auto before = set_bio("probe", "before").global_position();
  catch_up(before);
  // A restarted node: its hub learns the live generation from the database,
  // and no batch has passed through it since.
  start();
  catch_up(before);

  user_watch watch{queries_.get(), "probe"};
  ASSERT_TRUE(eventually([&] { return !watch.received().empty(); }));

  ASSERT_TRUE(rebuild("users", nullptr).ok());
  ASSERT_TRUE(eventually(
    [&] {
      auto status = projection_status();
      return find_generation(status, "users", 1) == nullptr;
    },
    seconds(30)))
    << projection_status().ShortDebugString();
  // Nothing is written for a while: the defect showed as the stream ending
  // one grace period (1 s) and two offset polls after the swap, when the
  // hub gave up waiting for the new generation's first batch. Four seconds
  // is twice that; a write now would hide it (its batch is that first
  // batch).
  EXPECT_FALSE(wait_until([&] { return watch.ended(); }, seconds(4)))
    << "the stream ended across the swap";
  auto after = set_bio("probe", "after the swap").global_position();
  EXPECT_TRUE(eventually([&] {
    auto got = watch.received();
    return watch.ended()
           || (!got.empty() && got.back().global_position() >= after);
  }));
  EXPECT_FALSE(watch.ended()) << "the stream ended across the swap";
  auto status = watch.finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED)
    << status.error_message();

  auto got = watch.received();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].global_position(), 0); // the initial document
  EXPECT_EQ(got[1].global_position(), after);
  EXPECT_EQ(got[1].user().bio(), "after the swap");
  EXPECT_GT(after, registered.global_position());
}

// -- dead letters -------------------------------------------------------------

TEST_F(admin_service_test, dead_letters_empty_list_and_unknown_ids) {
  any_user_ = "alice";
  auto r = register_user("alice");
  catch_up(r.global_position());
  for (std::string projection : {"", "users", "shouts", "timelines"}) {
    v1::ListDeadLettersRequest req;
    req.set_projection(projection);
    v1::DeadLetters out;
    auto ctx = context_with_deadline();
    auto s = admin_->ListDeadLetters(ctx.get(), req, &out);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(out.dead_letters_size(), 0);
  }
  for (int32_t limit : {-1, 10001}) {
    v1::ListDeadLettersRequest req;
    req.set_limit(limit);
    v1::DeadLetters out;
    auto ctx = context_with_deadline();
    auto s = admin_->ListDeadLetters(ctx.get(), req, &out);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("limit"));
  }
  for (int64_t id : {int64_t{0}, int64_t{-3}, int64_t{12345}}) {
    SCOPED_TRACE(id);
    v1::RetryDeadLetterRequest req;
    req.set_id(id);
    v1::RetryDeadLetterResponse out;
    auto ctx = context_with_deadline();
    auto s = admin_->RetryDeadLetter(ctx.get(), req, &out);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr("dead letter"));
  }
}

// An event no projection can decode (written straight into the log, as a
// corrupted or future event would be) is dead-lettered by every projection,
// which moves on; it is listed, counted, and a retry that fails again
// leaves it listed with its error.
TEST_F(admin_service_test, poison_event_is_dead_lettered_listed_and_retried) {
  any_user_ = "alice";
  register_user("alice");
  db_.exec("INSERT INTO events (persistence_id, seq_nr, event_type,"
           "                    event_version, payload)"
           " VALUES ('user|ghost', 1, 'NoSuchEvent', 1, '\\x01'::bytea)");
  auto poison = db_.scalar<int64_t>("SELECT max(global_position) FROM events");
  auto after = register_user("bob");
  catch_up(after.global_position());

  v1::DeadLetters all;
  v1::ListDeadLettersRequest req;
  auto ctx = context_with_deadline();
  auto s = admin_->ListDeadLetters(ctx.get(), req, &all);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(all.dead_letters_size(), 3) << all.DebugString();
  std::set<std::string> projections;
  for (auto& d : all.dead_letters()) {
    projections.insert(d.projection());
    EXPECT_GT(d.id(), 0);
    EXPECT_EQ(d.generation(), 1);
    EXPECT_EQ(d.key(), "ghost");
    EXPECT_EQ(d.global_position(), poison);
    EXPECT_EQ(d.persistence_id(), "user|ghost");
    EXPECT_EQ(d.seq_nr(), 1);
    EXPECT_EQ(d.event_type(), "NoSuchEvent");
    EXPECT_THAT(d.error(), HasSubstr("NoSuchEvent"));
    EXPECT_TRUE(d.has_recorded_at());
  }
  EXPECT_THAT(projections, ElementsAre("shouts", "timelines", "users"));
  req.set_projection("users");
  v1::DeadLetters users;
  ctx = context_with_deadline();
  ASSERT_TRUE(admin_->ListDeadLetters(ctx.get(), req, &users).ok());
  ASSERT_EQ(users.dead_letters_size(), 1);
  req.set_limit(1);
  req.set_projection("");
  v1::DeadLetters one;
  ctx = context_with_deadline();
  ASSERT_TRUE(admin_->ListDeadLetters(ctx.get(), req, &one).ok());
  EXPECT_EQ(one.dead_letters_size(), 1);

  // The projections moved on and say so.
  auto status = projection_status();
  for (auto& g : status.projections()) {
    EXPECT_EQ(g.dead_letters(), 1) << g.projection();
    EXPECT_EQ(g.lag_events(), 0) << g.projection();
  }
  v1::UserView bob;
  EXPECT_TRUE(get_user("bob", after.global_position(), &bob).ok());

  v1::RetryDeadLetterRequest retry;
  retry.set_id(users.dead_letters(0).id());
  v1::RetryDeadLetterResponse retried;
  ctx = context_with_deadline();
  s = admin_->RetryDeadLetter(ctx.get(), retry, &retried);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(retried.applied(), 0u);
  v1::DeadLetters still;
  req.set_projection("users");
  req.set_limit(0);
  ctx = context_with_deadline();
  ASSERT_TRUE(admin_->ListDeadLetters(ctx.get(), req, &still).ok());
  ASSERT_EQ(still.dead_letters_size(), 1);
  EXPECT_FALSE(still.dead_letters(0).error().empty());
}

} // namespace
