// Snowflake shout ids (actors/common/id_generator.hpp): 13 Crockford base32
// characters of (milliseconds since 2020 | node id | sequence); string order
// is numeric order is creation order.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "actors/common/clock.hpp"
#include "actors/common/id_generator.hpp"

namespace shoutflow {
namespace {

constexpr int64_t t0 = 1700000000000; // 2023-11-14T22:13:20Z
constexpr int sequence_bits = 12;
constexpr int node_bits = 10;

uint64_t millis_of(uint64_t value) {
  return value >> (sequence_bits + node_bits);
}
uint64_t node_of(uint64_t value) {
  return (value >> sequence_bits) & ((1u << node_bits) - 1);
}
uint64_t sequence_of(uint64_t value) {
  return value & ((1u << sequence_bits) - 1);
}

TEST(snowflake_generator, ids_are_13_well_formed_characters) {
  manual_clock clk{t0};
  snowflake_generator gen{clk, 7};
  for (int i = 0; i < 100; ++i) {
    auto id = gen.next_id();
    EXPECT_EQ(id.size(), 13u) << id;
    EXPECT_TRUE(snowflake_generator::well_formed(id)) << id;
    clk.advance_ms(17);
  }
}

TEST(snowflake_generator, the_value_holds_time_node_and_sequence) {
  manual_clock clk{t0};
  snowflake_generator gen{clk, 613};
  auto v = gen.next_value();
  EXPECT_EQ(millis_of(v),
            static_cast<uint64_t>(t0 - snowflake_generator::epoch_ms));
  EXPECT_EQ(node_of(v), 613u);
  EXPECT_EQ(sequence_of(v), 0u);
  auto w = gen.next_value();
  EXPECT_EQ(millis_of(w), millis_of(v));
  EXPECT_EQ(node_of(w), 613u);
  EXPECT_EQ(sequence_of(w), 1u);
  EXPECT_LT(v, uint64_t{1} << 63) << "63-bit values";
}

TEST(snowflake_generator, every_node_id_lands_in_its_bits) {
  manual_clock clk{t0};
  for (int node : {0, 1, 2, 511, 512, snowflake_generator::max_node_id}) {
    snowflake_generator gen{clk, node};
    auto v = gen.next_value();
    EXPECT_EQ(node_of(v), static_cast<uint64_t>(node));
    EXPECT_EQ(millis_of(v),
              static_cast<uint64_t>(t0 - snowflake_generator::epoch_ms));
  }
}

TEST(snowflake_generator, strictly_increasing_while_the_clock_stands_still) {
  manual_clock clk{t0};
  snowflake_generator gen{clk, 3};
  // More than the 4096 ids one millisecond holds: the sequence borrows from
  // the next millisecond rather than repeating.
  std::string last = gen.next_id();
  for (int i = 0; i < 10000; ++i) {
    auto id = gen.next_id();
    ASSERT_LT(last, id) << "after " << i << " ids";
    last = id;
  }
}

TEST(snowflake_generator, strictly_increasing_when_the_clock_steps_back) {
  manual_clock clk{t0};
  snowflake_generator gen{clk, 3};
  auto before = gen.next_id();
  clk.set_ms(t0 - 60 * 1000); // NTP steps the clock back a minute
  auto a = gen.next_id();
  auto b = gen.next_id();
  EXPECT_LT(before, a);
  EXPECT_LT(a, b);
  clk.set_ms(t0 + 5);
  auto c = gen.next_id();
  EXPECT_LT(b, c);
  uint64_t v = gen.next_value();
  EXPECT_EQ(millis_of(v),
            static_cast<uint64_t>(t0 + 5 - snowflake_generator::epoch_ms))
    << "once the clock is ahead again, ids carry the clock's time";
}

TEST(snowflake_generator, ids_sort_by_time_across_nodes) {
  manual_clock clk{t0};
  snowflake_generator high{clk, snowflake_generator::max_node_id};
  snowflake_generator low{clk, 0};
  std::vector<std::string> ids;
  for (int i = 0; i < 50; ++i) {
    ids.push_back((i % 2 == 0 ? high : low).next_id());
    clk.advance_ms(1);
  }
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
  // Within one millisecond the node id breaks the tie; a millisecond later
  // even node 0 sorts after node 1023.
  auto first = high.next_id();
  auto second = low.next_id();
  EXPECT_GT(first, second);
  clk.advance_ms(1);
  EXPECT_GT(low.next_id(), first);
}

TEST(snowflake_generator, string_order_is_numeric_order) {
  std::vector<uint64_t> values = {0,
                                  1,
                                  31,
                                  32,
                                  1023,
                                  1024,
                                  uint64_t{1} << 40,
                                  (uint64_t{1} << 62) + 5,
                                  (uint64_t{1} << 63) - 1};
  for (std::size_t i = 1; i < values.size(); ++i)
    EXPECT_LT(snowflake_generator::encode(values[i - 1]),
              snowflake_generator::encode(values[i]))
      << values[i - 1] << " vs " << values[i];
}

TEST(snowflake_generator, encode_renders_crockford_base32) {
  EXPECT_EQ(snowflake_generator::encode(0), "0000000000000");
  EXPECT_EQ(snowflake_generator::encode(1), "0000000000001");
  EXPECT_EQ(snowflake_generator::encode(10), "000000000000A");
  EXPECT_EQ(snowflake_generator::encode(18), "000000000000J") << "no I";
  EXPECT_EQ(snowflake_generator::encode(31), "000000000000Z");
  EXPECT_EQ(snowflake_generator::encode(32), "0000000000010");
  EXPECT_EQ(snowflake_generator::encode((uint64_t{1} << 63) - 1),
            "7ZZZZZZZZZZZZ");
  for (uint64_t v = 0; v < 32; ++v) {
    auto c = snowflake_generator::encode(v).back();
    EXPECT_TRUE(c != 'I' && c != 'L' && c != 'O' && c != 'U') << c;
  }
}

TEST(snowflake_generator, well_formed_rejects_what_encode_cannot_produce) {
  EXPECT_TRUE(snowflake_generator::well_formed("0000000000000"));
  EXPECT_TRUE(snowflake_generator::well_formed("7ZZZZZZZZZZZZ"));
  for (auto& bad : std::vector<std::string>{
         "", "000000000000", "00000000000000", "8000000000000", "Z000000000000",
         "000000000000I", "000000000000L", "000000000000O", "000000000000U",
         "000000000000a", "000000000000z", "00000000000 0", "000000000000-",
         std::string(13, '\0')})
    EXPECT_FALSE(snowflake_generator::well_formed(bad)) << bad;
}

TEST(snowflake_generator, unique_across_threads) {
  manual_clock clk{t0};
  snowflake_generator gen{clk, 9};
  constexpr int threads = 4;
  constexpr int per_thread = 5000;
  std::vector<std::vector<std::string>> got(threads);
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) {
        got[t].push_back(gen.next_id());
        if (i % 1000 == 0)
          clk.advance_ms(1);
      }
    });
  for (auto& w : workers)
    w.join();
  std::set<std::string> all;
  for (auto& ids : got) {
    EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()))
      << "each caller sees increasing ids";
    all.insert(ids.begin(), ids.end());
  }
  EXPECT_EQ(all.size(), static_cast<std::size_t>(threads * per_thread));
}

TEST(sequential_id_generator, counts_up_from_one_in_the_same_format) {
  sequential_id_generator gen;
  EXPECT_EQ(gen.next_id(), "0000000000001");
  EXPECT_EQ(gen.next_id(), "0000000000002");
  std::string last = "0000000000002";
  for (int i = 3; i <= 40; ++i) {
    auto id = gen.next_id();
    EXPECT_TRUE(snowflake_generator::well_formed(id)) << id;
    EXPECT_LT(last, id);
    last = id;
  }
  EXPECT_EQ(last, "0000000000018") << "40 = 0x28 = base32 '18'";
}

TEST(sequential_id_generator, instances_are_independent) {
  sequential_id_generator a;
  sequential_id_generator b;
  a.next_id();
  a.next_id();
  EXPECT_EQ(b.next_id(), "0000000000001");
  EXPECT_EQ(a.next_id(), "0000000000003");
}

} // namespace
} // namespace shoutflow
