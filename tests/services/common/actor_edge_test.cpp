// services/common/actor_edge.hpp: every call ends exactly once — by its own
// handler's `finish()` or by its deadline, whichever comes first — and an
// edge actor keeps one timer for the earliest open deadline instead of
// ticking while calls come and go. Real CAF actor system, no database.

#include <gtest/gtest.h>

#include <caf/all.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include "services/common/actor_edge.hpp"
#include "tests/support/wait.hpp"

namespace shoutflow::services {
namespace {

using namespace std::chrono_literals;
using shoutflow::testing::eventually;
using clock_type = actor_edge::clock_type;

/// Answers an `int` with the same `int`, that many milliseconds later (a
/// detached actor, so it may sleep). The unused argument: CAF 0.17 binds a
/// reference to a null tuple when a function-based actor is spawned without
/// arguments (undefined behaviour that UBSan reports).
caf::behavior slow_echo(caf::event_based_actor*, int) {
  return {[](int ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return ms;
  }};
}

class actor_edge_test : public ::testing::Test {
protected:
  /// Asks the echo for an answer `ms` later and finishes the call with it;
  /// counts the answers that ended the call and those that came too late.
  actor_edge::task ask(int ms) {
    return [this, ms](caf::event_based_actor* self, actor_edge::call call) {
      self->request(echo_, caf::infinite, ms)
        .then([this, call](int) {
          ++(call.finish() ? answered_ : late_);
        });
    };
  }

  actor_edge::expiry count_expiry() {
    return [this](caf::event_based_actor*) { ++expired_; };
  }

  caf::actor_system_config cfg_;
  caf::actor_system sys_{cfg_};
  caf::actor echo_ = sys_.spawn<caf::detached>(slow_echo, 0);
  std::atomic<int> answered_{0};
  std::atomic<int> late_{0};
  std::atomic<int> expired_{0};
};

TEST_F(actor_edge_test, a_call_answered_in_time_never_expires) {
  actor_edge edge{sys_, 1};
  edge.run(ask(0), clock_type::now() + 300ms, count_expiry());
  ASSERT_TRUE(eventually([&] { return answered_ == 1; }, 5s));
  // A second call with a later deadline that does expire: the first call's
  // deadline has passed by the time this one's runs (same actor, in order).
  edge.run([](caf::event_based_actor*, actor_edge::call) {},
           clock_type::now() + 400ms, count_expiry());
  ASSERT_TRUE(eventually([&] { return expired_ >= 1; }, 5s));
  EXPECT_EQ(expired_, 1);
  EXPECT_EQ(late_, 0);
}

TEST_F(actor_edge_test, a_call_past_its_deadline_expires_once_and_its_late_answer_is_refused) {
  actor_edge edge{sys_, 1};
  auto started = clock_type::now();
  std::atomic<int64_t> expired_after_ms{-1};
  edge.run(ask(400), started + 100ms, [&](caf::event_based_actor*) {
    expired_after_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                         clock_type::now() - started)
                         .count();
    ++expired_;
  });
  ASSERT_TRUE(eventually([&] { return late_ == 1; }, 5s));
  EXPECT_EQ(expired_, 1);
  EXPECT_EQ(answered_, 0);
  EXPECT_GE(expired_after_ms, 100);
  EXPECT_LT(expired_after_ms, 400);
}

TEST_F(actor_edge_test, a_nearer_deadline_than_the_timer_s_is_kept) {
  actor_edge edge{sys_, 1};
  // Open for an hour: the actor's one timer is set an hour ahead.
  edge.run([](caf::event_based_actor*, actor_edge::call) {},
           clock_type::now() + 1h, count_expiry());
  auto started = clock_type::now();
  std::atomic<int64_t> expired_after_ms{-1};
  edge.run(ask(600), started + 100ms, [&](caf::event_based_actor*) {
    expired_after_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                         clock_type::now() - started)
                         .count();
  });
  ASSERT_TRUE(eventually([&] { return expired_after_ms >= 0; }, 5s));
  EXPECT_GE(expired_after_ms, 100);
  EXPECT_LT(expired_after_ms, 600);
  EXPECT_EQ(expired_, 0);
}

TEST_F(actor_edge_test, calls_that_end_in_time_set_one_timer_per_actor_not_one_per_tick) {
  constexpr int actors = 2;
  constexpr int calls = 300;
  actor_edge edge{sys_, actors};
  // Spread over about 300 ms, far longer than any fixed tick would be.
  for (int i = 0; i < calls; ++i) {
    edge.run(ask(0), clock_type::now() + 1h, count_expiry());
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_TRUE(eventually([&] { return answered_ == calls; }, 10s));
  EXPECT_EQ(expired_, 0);
  EXPECT_EQ(late_, 0);
  EXPECT_LE(edge.timers_set(), static_cast<uint64_t>(actors));
}

} // namespace
} // namespace shoutflow::services
