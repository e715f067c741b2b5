// The query pool against real PostgreSQL: batched reads that wait together
// are answered by one statement, each with its own document, page or
// NOT_FOUND;
// other reads keep their place; a job past its deadline is not run; stopping
// and an unreachable database answer every job, exactly once.
//
// A `call` that waits on a latch holds the pool's only thread, so the reads
// behind it are queued together deterministically (no timing involved).

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "actors/projection/manager.hpp"
#include "actors/read_models/shouts_projection.hpp"
#include "actors/read_models/timelines_projection.hpp"
#include "actors/read_models/users_projection.hpp"
#include "services/query/query_pool.hpp"
#include "tests/support/test_db.hpp"

using namespace shoutflow;
using namespace shoutflow::services;

namespace {

using std::chrono::seconds;
using clock_type = query_pool::clock_type;

/// Answers as they arrive, in order, and a way to wait for `n` of them.
class answers {
public:
  query_pool::done_fn slot(std::size_t i) {
    return [this, i](query_answer a) {
      std::lock_guard<std::mutex> guard{mtx_};
      got_.push_back({i, std::move(a)});
      cv_.notify_all();
    };
  }

  /// The answers (index, answer) once `n` arrived; fails the test if not
  /// within 10 s.
  std::vector<std::pair<std::size_t, query_answer>> wait(std::size_t n) {
    std::unique_lock<std::mutex> lock{mtx_};
    EXPECT_TRUE(
      cv_.wait_for(lock, seconds(10), [&] { return got_.size() >= n; }))
      << "only " << got_.size() << " of " << n << " answers";
    return got_;
  }

private:
  std::mutex mtx_;
  std::condition_variable cv_;
  std::vector<std::pair<std::size_t, query_answer>> got_;
};

/// The slots of `all` (as answers::wait returns them), in arrival order.
std::vector<std::size_t>
order_of(const std::vector<std::pair<std::size_t, query_answer>>& all) {
  std::vector<std::size_t> out;
  for (auto& [i, a] : all)
    out.push_back(i);
  return out;
}

std::unique_ptr<google::protobuf::Message> get_user(const std::string& id) {
  auto r = std::make_unique<v1::GetUserRequest>();
  r->set_user_id(id);
  return r;
}

std::unique_ptr<google::protobuf::Message> get_logins(const std::string& id) {
  auto r = std::make_unique<v1::GetLoginHistoryRequest>();
  r->set_user_id(id);
  return r;
}

std::unique_ptr<google::protobuf::Message>
get_timeline(const std::string& id, int32_t size,
             const std::string& after = "") {
  auto r = std::make_unique<v1::GetTimelineRequest>();
  r->set_user_id(id);
  r->set_page_size(size);
  if (!after.empty())
    r->set_page_token(encode_page_token(after));
  return r;
}

clock_type::time_point later() {
  return clock_type::now() + seconds(30);
}

class query_pool_test : public ::testing::Test {
protected:
  void SetUp() override {
    projection::generations_config cfg;
    cfg.db_url = db_.url();
    cfg.projections = {std::make_shared<read_models::users_projection>(nullptr),
                       std::make_shared<read_models::shouts_projection>(),
                       std::make_shared<read_models::timelines_projection>(
                         read_models::timeline_config{})};
    projection::prepare_generations(cfg);
    for (auto id : {"alice", "bob"})
      add_user(id);
  }

  /// A user document with handle `<id>_h`.
  void add_user(const std::string& id) {
    db_.exec("INSERT INTO rm_users (user_id, handle, display_name, avatar_hash,"
             " bio, shout_count, follower_count, following_count, likes_given,"
             " likes_received, source_seq, position) VALUES ('"
             + id + "', '" + id + "_h', '', '', '', 0, 0, 0, 0, 0, 1, 1)");
  }

  /// Holds the pool's thread until the returned promise is set.
  std::promise<void> hold(query_pool& pool) {
    std::promise<void> release;
    auto gate = release.get_future().share();
    std::promise<void> held;
    auto started = held.get_future();
    pool.call(
      [gate, &held](pqxx::connection&) {
        held.set_value();
        gate.wait();
      },
      [](const journal::db_result&) {});
    started.wait();
    return release;
  }

  shoutflow::testing::test_database db_;
};

v1::UserView user_of(const query_answer& a) {
  v1::UserView v;
  EXPECT_EQ(a.kind, query_answer::ok) << a.bytes;
  EXPECT_TRUE(v.ParseFromString(a.bytes));
  return v;
}

/// The shout ids of a timeline page, and its next page token.
std::pair<std::vector<std::string>, std::string>
page_of(const query_answer& a) {
  v1::TimelinePage p;
  EXPECT_EQ(a.kind, query_answer::ok) << a.bytes;
  EXPECT_TRUE(p.ParseFromString(a.bytes));
  std::vector<std::string> ids;
  for (auto& s : p.shouts())
    ids.push_back(s.shout_id());
  return {ids, p.next_page_token()};
}

v1::Rejection rejection_of(const query_answer& a) {
  v1::Rejection r;
  EXPECT_EQ(a.kind, query_answer::rejected);
  EXPECT_TRUE(r.ParseFromString(a.bytes));
  return r;
}

TEST_F(query_pool_test, point_reads_waiting_together_share_one_statement) {
  query_pool pool{db_.url(), 1, query_limits{}};
  answers got;
  auto release = hold(pool);
  pool.read("GetUser", get_user("alice"), later(), got.slot(0));
  pool.read("GetLoginHistory", get_logins("bob"), later(), got.slot(1));
  pool.read("GetUser", get_user("nobody"), later(), got.slot(2));
  pool.read("GetUser", get_user("bob"), later(), got.slot(3));
  pool.read("GetUser", get_user("alice"), later(), got.slot(4));
  ASSERT_EQ(pool.queued(), 5u);
  release.set_value();

  auto all = got.wait(5);
  ASSERT_EQ(all.size(), 5u);
  // The four GetUsers first (one statement), then the login history.
  EXPECT_EQ(order_of(all), (std::vector<std::size_t>{0, 2, 3, 4, 1}));
  std::map<std::size_t, query_answer> by_slot(all.begin(), all.end());
  EXPECT_EQ(user_of(by_slot[0]).handle(), "alice_h");
  EXPECT_EQ(user_of(by_slot[3]).handle(), "bob_h");
  EXPECT_EQ(user_of(by_slot[4]).user_id(), "alice");
  auto missing = rejection_of(by_slot[2]);
  EXPECT_EQ(missing.code(), v1::REJECTION_CODE_NOT_FOUND);
  EXPECT_EQ(missing.field(), "user_id");
  EXPECT_NE(missing.message().find("nobody"), std::string::npos);
  v1::LoginHistory logins;
  EXPECT_EQ(by_slot[1].kind, query_answer::ok);
  EXPECT_TRUE(logins.ParseFromString(by_slot[1].bytes));
  EXPECT_EQ(logins.entries_size(), 0);
  EXPECT_EQ(pool.reads_run(), 5u);
  EXPECT_EQ(pool.statements_run(), 2u);
}

TEST_F(query_pool_test, timelines_waiting_together_share_one_statement) {
  // alice's home: s1..s5 by bob; bob's home: his own s1..s5; carol (who
  // exists) has an empty home.
  add_user("carol");
  for (int i = 1; i <= 5; ++i) {
    auto id = "s" + std::to_string(i);
    db_.exec("INSERT INTO rm_shouts VALUES ('" + id
             + "', 'bob', 'text', now(), 0, 0, '', false, " + std::to_string(i)
             + ")");
    for (auto owner : {"alice", "bob"})
      db_.exec(std::string{"INSERT INTO rm_home VALUES ('"} + owner + "', '"
               + id + "', 'bob')");
  }
  query_pool pool{db_.url(), 1, query_limits{}};
  answers got;
  auto release = hold(pool);
  pool.read("GetTimeline", get_timeline("alice", 2), later(), got.slot(0));
  pool.read("GetUser", get_user("alice"), later(), got.slot(1));
  pool.read("GetTimeline", get_timeline("nobody", 2), later(), got.slot(2));
  pool.read("GetTimeline", get_timeline("bob", 10, "s4"), later(), got.slot(3));
  pool.read("GetTimeline", get_timeline("carol", 3), later(), got.slot(4));
  pool.read("GetTimeline", get_timeline("alice", 5), later(), got.slot(5));
  release.set_value();

  auto all = got.wait(6);
  ASSERT_EQ(all.size(), 6u);
  EXPECT_EQ(order_of(all), (std::vector<std::size_t>{0, 2, 3, 4, 5, 1}));
  std::map<std::size_t, query_answer> by_slot(all.begin(), all.end());
  using ids = std::vector<std::string>;
  auto [first, token] = page_of(by_slot[0]);
  EXPECT_EQ(first, (ids{"s5", "s4"}));
  EXPECT_EQ(decode_page_token(token), "s4");
  auto missing = rejection_of(by_slot[2]);
  EXPECT_EQ(missing.code(), v1::REJECTION_CODE_NOT_FOUND);
  EXPECT_EQ(missing.field(), "user_id");
  EXPECT_EQ(page_of(by_slot[3]),
            std::make_pair(ids{"s3", "s2", "s1"}, std::string{}));
  EXPECT_EQ(page_of(by_slot[4]), std::make_pair(ids{}, std::string{}));
  EXPECT_EQ(page_of(by_slot[5]).first, (ids{"s5", "s4", "s3", "s2", "s1"}));
  EXPECT_EQ(user_of(by_slot[1]).handle(), "alice_h");
  // One batch statement for the five timelines (the empty pages of carol
  // and nobody add an existence check each, not counted), one for the
  // GetUser.
  EXPECT_EQ(pool.reads_run(), 6u);
  EXPECT_EQ(pool.statements_run(), 2u);
}

TEST_F(query_pool_test, a_read_for_a_user_that_does_not_exist_is_not_found) {
  query_pool pool{db_.url(), 2, query_limits{}};
  answers got;
  pool.read("GetLoginHistory", get_logins("nobody"), later(), got.slot(0));
  auto all = got.wait(1);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(rejection_of(all[0].second).code(), v1::REJECTION_CODE_NOT_FOUND);
}

TEST_F(query_pool_test, a_read_past_its_deadline_is_answered_expired_unrun) {
  query_pool pool{db_.url(), 1, query_limits{}};
  answers got;
  auto release = hold(pool);
  pool.read("GetUser", get_user("alice"), clock_type::now(), got.slot(0));
  pool.read("GetUser", get_user("bob"), later(), got.slot(1));
  release.set_value();
  auto all = got.wait(2);
  ASSERT_EQ(all.size(), 2u);
  std::map<std::size_t, query_answer> by_slot(all.begin(), all.end());
  EXPECT_EQ(by_slot[0].kind, query_answer::expired);
  EXPECT_EQ(user_of(by_slot[1]).user_id(), "bob");
  EXPECT_EQ(pool.reads_run(), 1u);
}

TEST_F(query_pool_test, stopping_answers_what_is_queued_unavailable) {
  auto pool = std::make_unique<query_pool>(db_.url(), 1, query_limits{});
  answers got;
  auto release = hold(*pool);
  pool->read("GetUser", get_user("alice"), later(), got.slot(0));
  std::thread stopper{[&] { pool.reset(); }};
  auto all = got.wait(1);
  release.set_value();
  stopper.join();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].second.kind, query_answer::unavailable);
  EXPECT_NE(all[0].second.bytes.find("stopping"), std::string::npos);
}

TEST(query_pool_without_database, every_read_is_answered_unavailable) {
  query_pool pool{"postgresql://nobody@127.0.0.1:1/none", 2, query_limits{}};
  answers got;
  for (std::size_t i = 0; i < 4; ++i)
    pool.read("GetUser", get_user("alice"), later(), got.slot(i));
  auto all = got.wait(4);
  ASSERT_EQ(all.size(), 4u);
  for (auto& [i, a] : all)
    EXPECT_EQ(a.kind, query_answer::unavailable) << "slot " << i;
}

} // namespace
