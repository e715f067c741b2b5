// The timeline page cache on its own (actors/projection/page_cache.hpp): a
// page is erased by a change of anything it depends on and nothing else; a
// fill is refused when such a change was released while the page was being
// read; a read with a min_position is answered only once every change up
// to it has been released. The hub that feeds it, and pages equal to the
// database's, are tested in services/query/query_service_test.cpp.

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "actors/projection/page_cache.hpp"

using namespace shoutflow::projection;

namespace {

using kind = page_cache::kind;

std::vector<page_cache::topic> page_of(const std::string& owner,
                                       const std::string& shout,
                                       const std::string& author) {
  return {{kind::timeline, owner}, {kind::shout, shout}, {kind::user, author}};
}

/// A cache whose hub has released everything up to (10, 10), and knows of
/// nothing unreleased.
std::unique_ptr<page_cache> current_cache(std::size_t capacity = 100,
                                          std::size_t window = 64) {
  auto c = std::make_unique<page_cache>(capacity, window);
  c->set_progress(cursor{10, 10}, true);
  return c;
}

} // namespace

TEST(page_cache, answers_a_filled_page_until_a_change_it_depends_on) {
  auto c = current_cache();
  EXPECT_FALSE(c->find("ann", 20));
  ASSERT_TRUE(c->fill("ann", 20, "page", page_of("ann", "s1", "bob"),
                     c->begin_fill()));
  EXPECT_EQ(c->find("ann", 20), "page");
  EXPECT_FALSE(c->find("ann", 10)) << "another page size is another page";
  // Changes it does not depend on leave it.
  c->invalidate({kind::timeline, "bob"});
  c->invalidate({kind::shout, "s2"});
  c->invalidate({kind::user, "ann"});
  EXPECT_EQ(c->find("ann", 20), "page");
  for (auto t : page_of("ann", "s1", "bob")) {
    auto again = current_cache();
    ASSERT_TRUE(again->fill("ann", 20, "page", page_of("ann", "s1", "bob"),
                           again->begin_fill()));
    again->invalidate(t);
    EXPECT_FALSE(again->find("ann", 20))
      << "kept after a change of " << t.second;
  }
}

TEST(page_cache, a_change_released_during_the_read_drops_the_fill) {
  auto c = current_cache();
  auto since = c->begin_fill();
  c->invalidate({kind::shout, "other"});
  c->invalidate({kind::shout, "s1"}); // the page read may predate it
  EXPECT_FALSE(c->fill("ann", 20, "page", page_of("ann", "s1", "bob"), since));
  EXPECT_FALSE(c->find("ann", 20));
  // Unrelated changes during the read do not.
  since = c->begin_fill();
  c->invalidate({kind::shout, "other"});
  EXPECT_TRUE(c->fill("ann", 20, "page", page_of("ann", "s1", "bob"), since));
  EXPECT_EQ(c->stats().fills_dropped, 1u);
}

TEST(page_cache, a_fill_older_than_what_it_remembers_is_dropped) {
  auto c = current_cache(100, 4);
  auto since = c->begin_fill();
  for (int i = 0; i < 5; ++i) // one more than the window holds
    c->invalidate({kind::shout, "other-" + std::to_string(i)});
  EXPECT_FALSE(c->fill("ann", 20, "page", page_of("ann", "s1", "bob"), since));
  since = c->begin_fill();
  for (int i = 0; i < 4; ++i)
    c->invalidate({kind::shout, "other-" + std::to_string(i)});
  EXPECT_TRUE(c->fill("ann", 20, "page", page_of("ann", "s1", "bob"), since));
}

TEST(page_cache, clear_erases_every_page_and_fails_fills_in_flight) {
  auto c = current_cache();
  ASSERT_TRUE(c->fill("ann", 20, "a", page_of("ann", "s1", "bob"),
                     c->begin_fill()));
  auto since = c->begin_fill();
  c->clear();
  EXPECT_FALSE(c->find("ann", 20));
  EXPECT_FALSE(c->fill("cid", 20, "c", page_of("cid", "s2", "bob"), since));
  EXPECT_TRUE(c->fill("cid", 20, "c", page_of("cid", "s2", "bob"),
                     c->begin_fill()));
}

TEST(page_cache, min_position_is_answered_once_released_up_to_it) {
  auto c = std::make_unique<page_cache>(100);
  ASSERT_TRUE(c->fill("ann", 20, "page", page_of("ann", "s1", "bob"),
                     c->begin_fill()));
  EXPECT_FALSE(c->find("ann", 20)) << "the hub has published no progress";
  EXPECT_FALSE(c->find("ann", 20, cursor{1, 1}));
  c->set_progress(cursor{10, 10}, true);
  EXPECT_EQ(c->find("ann", 20, cursor{10, 10}), "page");
  EXPECT_FALSE(c->find("ann", 20, cursor{10, 11}))
    << "a change up to the min_position may not have been released";
  EXPECT_FALSE(c->find("ann", 20, cursor{11, 1}));
  // Known unreleased commits: no answer without a min_position, while one
  // the hub has released up to still gets one.
  c->set_progress(cursor{10, 10}, false);
  EXPECT_FALSE(c->find("ann", 20));
  EXPECT_EQ(c->find("ann", 20, cursor{9, 3}), "page");
}

TEST(page_cache, the_least_recently_used_page_goes_first) {
  auto c = current_cache(2);
  ASSERT_TRUE(c->fill("a", 20, "a", page_of("a", "s1", "x"), c->begin_fill()));
  ASSERT_TRUE(c->fill("b", 20, "b", page_of("b", "s2", "x"), c->begin_fill()));
  EXPECT_TRUE(c->find("a", 20)); // b is now the least recently used
  ASSERT_TRUE(c->fill("c", 20, "c", page_of("c", "s3", "x"), c->begin_fill()));
  EXPECT_TRUE(c->find("a", 20));
  EXPECT_FALSE(c->find("b", 20));
  EXPECT_TRUE(c->find("c", 20));
  EXPECT_EQ(c->stats().pages, 2u);
  // An evicted page no longer answers to its topics' changes.
  c->invalidate({kind::shout, "s2"});
  EXPECT_TRUE(c->find("a", 20));
  EXPECT_TRUE(c->find("c", 20));
  c->invalidate({kind::user, "x"}); // on both pages
  EXPECT_FALSE(c->find("a", 20));
  EXPECT_FALSE(c->find("c", 20));
  EXPECT_EQ(c->stats().pages, 0u);
}

TEST(page_cache, capacity_zero_keeps_nothing) {
  auto c = current_cache(0);
  EXPECT_FALSE(c->fill("a", 20, "a", page_of("a", "s1", "x"), c->begin_fill()));
  EXPECT_FALSE(c->find("a", 20));
}

// The hub invalidates while gRPC and pool threads find and fill: run them
// at once (TSan checks the locking: the class alone builds with
// -fsanitize=thread), then check the index kept up with the LRU and the
// clears: once every author has changed again, no page is left.
TEST(page_cache, concurrent_readers_fillers_and_invalidations) {
  page_cache c{64, 1024};
  c.set_progress(cursor{1, 1}, true);
  std::atomic<bool> stop{false};
  std::atomic<long> reads{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t)
    readers.emplace_back([&, t] {
      for (int i = 0; !stop || i < 1000; ++i, ++reads) {
        auto owner = "o" + std::to_string((i + t) % 100);
        if (!c.find(owner, 20)) {
          auto since = c.begin_fill();
          c.fill(owner, 20, owner,
                 {{kind::timeline, owner},
                  {kind::user, "a" + std::to_string(i % 10)}},
                 since);
        }
      }
    });
  for (int i = 0; i < 20000; ++i) {
    c.invalidate({kind::user, "a" + std::to_string(i % 10)});
    if (i % 5000 == 0)
      c.clear();
  }
  stop = true;
  for (auto& r : readers)
    r.join();
  EXPECT_GE(reads.load(), 3000);
  for (int a = 0; a < 10; ++a)
    c.invalidate({kind::user, "a" + std::to_string(a)});
  EXPECT_EQ(c.stats().pages, 0u);
}
