#include <gtest/gtest.h>

#include "tests/support/test_db.hpp"
#include "tests/support/test_node.hpp"

using namespace shoutflow;
using namespace shoutflow::testing;

TEST(smoke, register_post_follow_like) {
  test_database db;
  test_node n{db.url()};
  auto a = n.send(register_user("c1", "alice", "alice"));
  ASSERT_TRUE(a.has_result()) << a.DebugString();
  EXPECT_EQ(a.result().seq_nr(), 1);
  auto b = n.send(register_user("c2", "bob", "bob"));
  ASSERT_TRUE(b.has_result()) << b.DebugString();
  auto p = n.send(post_shout("c3", "bob", "hello"));
  ASSERT_TRUE(p.has_result()) << p.DebugString();
  EXPECT_EQ(p.result().shout_id().size(), 13u);
  auto f = n.send(follow("c4", "alice", "bob"));
  ASSERT_TRUE(f.has_result()) << f.DebugString();
  auto again = n.send(follow("c4", "alice", "bob"));
  ASSERT_TRUE(again.has_result()) << again.DebugString();
  EXPECT_TRUE(again.result().duplicate());
  auto stub = n.command_stub();
  v1::LikeShoutRequest like;
  like.set_command_id("c5");
  like.set_user_id("alice");
  like.set_shout_id(p.result().shout_id());
  v1::CommandResult out;
  auto ctx = context_with_deadline();
  auto status = stub->LikeShout(ctx.get(), like, &out);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(out.seq_nr(), 3);
  EXPECT_EQ(db.scalar<int64_t>("SELECT count(*) FROM events"), 5);
}
