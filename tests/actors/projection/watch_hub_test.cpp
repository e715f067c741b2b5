// actors/projection/watch_hub.hpp: in which order the hub releases the
// changes it receives. The hub is fed ChangeBatches directly (no database,
// no readers), as the partitions would publish them, and a subscriber
// checks what reaches it. Deterministic: after each batch the test asks the
// hub a question; its answer comes after any change the batch released.

#include <gtest/gtest.h>

#include <caf/all.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "actors/common/atoms.hpp"
#include "actors/projection/page_cache.hpp"
#include "actors/projection/projection_actors.hpp"
#include "actors/projection/read_side_codec.hpp"
#include "actors/projection/watch_hub.hpp"

namespace shoutflow::projection {
namespace {

using namespace std::chrono_literals;

class watch_hub_test : public ::testing::Test {
protected:
  watch_hub_test() {
    add_message_types(cfg_);
  }

  void SetUp() override {
    sys_ = std::make_unique<caf::actor_system>(cfg_);
    hub_config hc;
    hc.pages = pages_;
    hub_ = spawn_watch_hub(*sys_, hc);
    self_ = std::make_unique<caf::scoped_actor>(*sys_);
  }

  void TearDown() override {
    caf::anon_send_exit(hub_, caf::exit_reason::user_shutdown);
    self_.reset();
  }

  void subscribe(subscription sub) {
    bool ok = false;
    (*self_)
      ->request(hub_, 5s, subscribe_atom::value,
                caf::actor_cast<caf::actor>(*self_), std::move(sub))
      .receive([&](bool b) { ok = b; },
               [&](caf::error& err) { FAIL() << sys_->render(err); });
    ASSERT_TRUE(ok);
  }

  /// One partition's batch of a two-partition generation 1.
  void publish(const std::string& projection, int32_t partition, cursor after,
               cursor to, std::vector<change> changes) {
    caf::anon_send(hub_, batch_atom::value,
                   encode_batch(projection, 1, 2, {partition}, after, to,
                                changes));
  }

  /// The changes the hub released to this subscriber so far: the hub
  /// answers the question after it has handled every batch sent before.
  std::vector<change> released() {
    (*self_)
      ->request(hub_, 5s, await_atom::value, std::vector<std::string>{},
                cursor{})
      .receive([](bool) {},
               [&](caf::error& err) { FAIL() << sys_->render(err); });
    std::vector<change> out;
    bool more = true;
    while (more)
      (*self_)->receive(
        [&](change_atom, const change& c) { out.push_back(c); },
        caf::after(std::chrono::seconds(0)) >> [&] { more = false; });
    return out;
  }

  static change make(change::kind_t kind, const std::string& subject,
                     int64_t at, int32_t partition) {
    change c;
    c.kind = kind;
    c.subject = subject;
    c.item = kind == change::timeline_add ? "s" + std::to_string(at) : "";
    c.tx = static_cast<uint64_t>(at);
    c.position = at;
    c.partition = partition;
    return c;
  }

  caf::actor_system_config cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  std::shared_ptr<page_cache> pages_ = std::make_shared<page_cache>(100);
  hub_actor hub_;
  std::unique_ptr<caf::scoped_actor> self_;
};

TEST_F(watch_hub_test, a_user_change_goes_once_its_own_partition_committed_it) {
  subscription sub;
  sub.user_ids = {"alice"};
  subscribe(sub);
  // Partition 1 has published nothing yet; alice's document is partition
  // 0's alone, and its change need not wait for partition 1.
  publish("users", 0, {}, {10, 10}, {make(change::user, "alice", 5, 0)});
  auto got = released();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].subject, "alice");
  EXPECT_EQ(got[0].position, 5);
  // Later changes of alice keep their order.
  publish("users", 0, {10, 10}, {20, 20},
          {make(change::user, "alice", 12, 0),
           make(change::user, "alice", 15, 0)});
  got = released();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].position, 12);
  EXPECT_EQ(got[1].position, 15);
}

TEST_F(watch_hub_test, a_timeline_entry_waits_until_every_partition_passed_it) {
  subscription sub;
  sub.timeline_owner = "bob";
  subscribe(sub);
  // Entries of bob's timeline come from authors of both partitions: one
  // from partition 0 at 5 must wait until partition 1 has passed 5, which
  // may yet bring an earlier entry.
  publish("timelines", 0, {}, {10, 10},
          {make(change::timeline_add, "bob", 5, 0)});
  EXPECT_TRUE(released().empty());
  publish("timelines", 1, {}, {10, 10},
          {make(change::timeline_add, "bob", 3, 1)});
  auto got = released();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].position, 3);
  EXPECT_EQ(got[1].position, 5);
}

// The timeline pages (page_cache.hpp) follow what the hub releases: a page
// goes when a change of its timeline is released, not when it arrives; a
// read with a min_position is answered from memory only once the hub has
// released everything up to it, from every partition of the three
// projections a page reads.
TEST_F(watch_hub_test, timeline_pages_follow_what_the_hub_released) {
  using kind = page_cache::kind;
  std::vector<page_cache::topic> bobs_page{
    {kind::timeline, "bob"}, {kind::shout, "s1"}, {kind::user, "alice"}};
  ASSERT_TRUE(pages_->fill("bob", 20, "page", bobs_page, pages_->begin_fill()));
  EXPECT_FALSE(pages_->find("bob", 20))
    << "answered before the hub knew how far the projections are";
  for (auto* name : {"timelines", "shouts", "users"})
    for (int32_t p = 0; p < 2; ++p)
      publish(name, p, {}, {10, 10}, {});
  released();
  EXPECT_EQ(pages_->find("bob", 20), "page");
  EXPECT_EQ(pages_->find("bob", 20, cursor{10, 10}), "page");
  EXPECT_FALSE(pages_->find("bob", 20, cursor{10, 11}));

  // An entry of bob's timeline from partition 0 waits for partition 1: it
  // is not released, so the page stays, and no min_position past 10 is
  // answered from memory.
  publish("timelines", 0, {10, 10}, {20, 20},
          {make(change::timeline_add, "bob", 15, 0)});
  released();
  EXPECT_EQ(pages_->find("bob", 20), "page");
  EXPECT_FALSE(pages_->find("bob", 20, cursor{15, 15}));
  publish("timelines", 1, {10, 10}, {20, 20}, {});
  released();
  EXPECT_FALSE(pages_->find("bob", 20)) << "kept after bob's new entry";

  // A change of an author on the page erases it as soon as its own
  // partition has committed it.
  ASSERT_TRUE(pages_->fill("bob", 20, "page", bobs_page, pages_->begin_fill()));
  EXPECT_EQ(pages_->find("bob", 20), "page");
  publish("users", 1, {10, 10}, {30, 30}, {make(change::user, "alice", 25, 1)});
  released();
  EXPECT_FALSE(pages_->find("bob", 20)) << "kept after alice's change";
}

} // namespace
} // namespace shoutflow::projection
