// Roles across nodes (docs/cluster.md), with three shoutflowd processes on
// one database talking over CAF on loopback (tests/support/cluster_harness):
//   node 0: entities + projections — owns every shard and partition, serves
//           neither CommandService nor QueryService;
//   node 1: command only — owns nothing, routes every command to node 0;
//   node 2: query only — answers reads, min_position and Watch for read
//           models applied on node 0.
// (Processes, not in-process nodes: one actor system per process is what
// CAF's middleman is built for.)

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <grpcpp/grpcpp.h>

#include <chrono>

#include "shoutflow/v1/admin.grpc.pb.h"
#include "shoutflow/v1/commands.grpc.pb.h"
#include "shoutflow/v1/queries.grpc.pb.h"
#include "tests/support/cluster_harness.hpp"
#include "tests/support/test_db.hpp"
#include "tests/support/test_node.hpp"

using namespace shoutflow;
using namespace shoutflow::testing;
using namespace std::chrono_literals;
using ::testing::UnorderedElementsAre;

namespace {

std::shared_ptr<grpc::Channel> channel(const std::string& address) {
  return grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
}

class roles_test : public ::testing::Test {
protected:
  void SetUp() override {
    cluster_options o;
    o.db_url = db_.url();
    o.node_flags[0] = {"--roles", "entities,projections"};
    o.node_flags[1] = {"--roles", "command"};
    o.node_flags[2] = {"--roles", "query"};
    cluster_ = std::make_unique<cluster_harness>(o, 3);
    for (int i = 0; i < 3; ++i)
      cluster_->start(i);
    ASSERT_TRUE(cluster_->wait_cluster_settled(60s));
    commands_
      = v1::CommandService::NewStub(channel(cluster_->command_address(1)));
    queries_ = v1::QueryService::NewStub(channel(cluster_->query_address(2)));
  }

  grpc::Status register_user(const std::string& id, v1::CommandResult* out) {
    v1::RegisterUserRequest r;
    r.set_command_id("reg-" + id);
    r.set_user_id(id);
    r.set_handle(id);
    r.set_email(id + "@example.com");
    r.set_password("correct horse");
    auto ctx = context_with_deadline(10s);
    return commands_->RegisterUser(ctx.get(), r, out);
  }

  v1::CommandResult set_bio(const std::string& id, const std::string& bio,
                            const std::string& command_id) {
    v1::UpdateProfileRequest r;
    r.set_command_id(command_id);
    r.set_user_id(id);
    r.set_bio(bio);
    v1::CommandResult out;
    auto ctx = context_with_deadline(10s);
    auto s = commands_->UpdateProfile(ctx.get(), r, &out);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return out;
  }

  test_database db_;
  std::unique_ptr<cluster_harness> cluster_;
  std::unique_ptr<v1::CommandService::Stub> commands_;
  std::unique_ptr<v1::QueryService::Stub> queries_;
};

} // namespace

TEST_F(roles_test, each_node_serves_only_its_roles) {
  // A role a node lacks has no service on its port.
  v1::GetUserRequest get;
  get.set_user_id("nobody");
  v1::UserView view;
  for (int i : {0, 1}) {
    auto ctx = context_with_deadline(2s);
    auto s = v1::QueryService::NewStub(channel(cluster_->query_address(i)))
               ->GetUser(ctx.get(), get, &view);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << "node " << i;
  }

  v1::ClusterStatus status;
  auto ctx = context_with_deadline();
  ASSERT_TRUE(v1::AdminService::NewStub(channel(cluster_->admin_address(2)))
                ->GetClusterStatus(ctx.get(), {}, &status)
                .ok());
  ASSERT_EQ(status.members_size(), 3);
  for (auto& m : status.members()) {
    if (m.node_id() == "node-0") {
      EXPECT_THAT(m.roles(), UnorderedElementsAre("entities", "projections"));
      EXPECT_EQ(m.shards_owned(), 256);
      EXPECT_EQ(m.partitions_owned(), 6);
      EXPECT_TRUE(m.command_address().empty());
    } else {
      // Neither the command edge nor the query node owns anything.
      EXPECT_EQ(m.shards_owned(), 0) << m.node_id();
      EXPECT_EQ(m.partitions_owned(), 0) << m.node_id();
    }
  }
  for (auto& owner : status.shard_owners())
    EXPECT_EQ(owner, "node-0");
}

TEST_F(roles_test, commands_cross_to_the_owner_and_reads_wait_on_another_node) {
  v1::CommandResult alice;
  auto s0 = register_user("alice", &alice);
  ASSERT_TRUE(s0.ok()) << s0.error_message();
  ASSERT_EQ(alice.seq_nr(), 1);
  // A retry through the edge reaches the same entity on node 0 (G4).
  v1::CommandResult again;
  ASSERT_TRUE(register_user("alice", &again).ok());
  EXPECT_TRUE(again.duplicate());
  EXPECT_EQ(again.global_position(), alice.global_position());

  auto bio = set_bio("alice", "written on node 1, applied on node 0", "b1");
  v1::GetUserRequest get;
  get.set_user_id("alice");
  get.set_min_position(bio.global_position());
  v1::UserView view;
  auto ctx = context_with_deadline(10s);
  auto s = queries_->GetUser(ctx.get(), get, &view);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(view.bio(), "written on node 1, applied on node 0");
}

TEST_F(roles_test, watch_on_a_query_only_node_sees_every_change_in_order) {
  v1::CommandResult bob;
  ASSERT_TRUE(register_user("bob", &bob).ok());
  v1::GetUserRequest get;
  get.set_user_id("bob");
  get.set_min_position(bob.global_position());
  v1::UserView view;
  {
    auto ctx = context_with_deadline(10s);
    ASSERT_TRUE(queries_->GetUser(ctx.get(), get, &view).ok());
  }
  v1::WatchRequest w;
  w.add_user_ids("bob");
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 60s);
  auto stream = queries_->Watch(&ctx, w);
  v1::DocumentChange first;
  ASSERT_TRUE(stream->Read(&first));
  EXPECT_EQ(first.user().user_id(), "bob");

  std::vector<int64_t> sent;
  for (int i = 0; i < 10; ++i)
    sent.push_back(
      set_bio("bob", "bio " + std::to_string(i), "bob-" + std::to_string(i))
        .global_position());
  // The registration may still come as a change after the initial
  // document (it committed before the subscription; its broadcast was on
  // its way): a stream sends what changed after it subscribed, in order.
  std::vector<int64_t> seen;
  std::string last_bio;
  while (seen.empty() || seen.back() < sent.back()) {
    v1::DocumentChange c;
    ASSERT_TRUE(stream->Read(&c))
      << "the stream ended after " << seen.size() << " changes";
    if (c.global_position() <= bob.global_position())
      continue;
    seen.push_back(c.global_position());
    last_bio = c.user().bio();
  }
  EXPECT_EQ(seen, sent);
  EXPECT_EQ(last_bio, "bio 9");
  ctx.TryCancel();
}
