#pragma once

// Entity id -> shard: FNV-1a 64 of the id, modulo the shard count. Stable
// across nodes, builds and versions (never std::hash), because every node
// must agree on it.

#include <cstdint>
#include <string_view>

namespace shoutflow::entity {

inline uint64_t fnv1a64(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (auto c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  return h;
}

inline uint32_t shard_of(std::string_view entity_id, uint32_t shards) {
  return static_cast<uint32_t>(fnv1a64(entity_id) % shards);
}

} // namespace shoutflow::entity
