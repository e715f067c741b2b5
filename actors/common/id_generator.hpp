#pragma once

// The id generator seam and its production implementation.
//
// Shout ids are snowflake-like: a 63-bit number made of 41 bits of
// milliseconds since 2020-01-01T00:00:00Z, 10 bits of node id and 12 bits of
// per-millisecond sequence, rendered as 13 characters of Crockford base32
// (0-9, A-Z without I, L, O, U). Fixed width makes the string order equal the
// numeric order, so ids sort by creation time across nodes (to clock skew).

#include <atomic>
#include <cstdint>
#include <string>

#include "actors/common/clock.hpp"

namespace shoutflow {

class id_generator {
public:
  virtual ~id_generator() = default;
  virtual std::string next_id() = 0;
};

class snowflake_generator final : public id_generator {
public:
  static constexpr int64_t epoch_ms = 1577836800000; // 2020-01-01
  static constexpr int max_node_id = 1023;

  /// `node_id` must be in [0, max_node_id]; the clock must outlive this.
  snowflake_generator(const clock& clk, int node_id);

  std::string next_id() override;

  /// The raw 63-bit value of the next id (exposed for tests).
  uint64_t next_value();

  static std::string encode(uint64_t value);
  /// True for a string `encode` could have produced.
  static bool well_formed(const std::string& id);

private:
  const clock& clock_;
  uint64_t node_bits_;
  // (milliseconds since epoch << 12) | sequence of the last id handed out.
  std::atomic<uint64_t> last_{0};
};

/// Deterministic ids for tests: "0000000000001", "0000000000002", ...
class sequential_id_generator final : public id_generator {
public:
  std::string next_id() override {
    return snowflake_generator::encode(++counter_);
  }

private:
  std::atomic<uint64_t> counter_{0};
};

} // namespace shoutflow
