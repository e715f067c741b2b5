#include "actors/common/id_generator.hpp"

#include <cassert>

namespace shoutflow {

namespace {

constexpr char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
constexpr int id_chars = 13;
constexpr uint64_t sequence_bits = 12;
constexpr uint64_t node_bits = 10;

} // namespace

snowflake_generator::snowflake_generator(const clock& clk, int node_id)
  : clock_(clk), node_bits_(static_cast<uint64_t>(node_id) << sequence_bits) {
  assert(node_id >= 0 && node_id <= max_node_id);
}

uint64_t snowflake_generator::next_value() {
  // `last_` packs (ms << 12 | seq). Taking max(now, last + 1) keeps ids
  // strictly increasing per node even when the clock stalls or steps back;
  // a burst of more than 4096 ids in one millisecond borrows from the next.
  auto now = static_cast<uint64_t>(clock_.now_ms() - epoch_ms) << sequence_bits;
  auto last = last_.load();
  uint64_t next;
  do {
    next = now > last ? now : last + 1;
  } while (!last_.compare_exchange_weak(last, next));
  auto millis = next >> sequence_bits;
  auto seq = next & ((uint64_t{1} << sequence_bits) - 1);
  return (millis << (sequence_bits + node_bits)) | node_bits_ | seq;
}

std::string snowflake_generator::next_id() {
  return encode(next_value());
}

std::string snowflake_generator::encode(uint64_t value) {
  std::string out(id_chars, '0');
  for (int i = id_chars - 1; i >= 0; --i) {
    out[i] = crockford[value & 31];
    value >>= 5;
  }
  return out;
}

bool snowflake_generator::well_formed(const std::string& id) {
  if (id.size() != id_chars)
    return false;
  for (auto c : id) {
    bool digit = c >= '0' && c <= '9';
    bool letter = c >= 'A' && c <= 'Z' && c != 'I' && c != 'L' && c != 'O'
                  && c != 'U';
    if (!digit && !letter)
      return false;
  }
  // 13 x 5 = 65 bits for a 63-bit value: the leading digit is at most 7.
  return id[0] >= '0' && id[0] <= '7';
}

} // namespace shoutflow
