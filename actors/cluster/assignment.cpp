#include "actors/cluster/assignment.hpp"

#include <algorithm>
#include <tuple>

#include "actors/entity/sharding.hpp"

namespace shoutflow::cluster {

namespace {

/// splitmix64's finalizer: FNV-1a of strings that differ in one digit
/// differs mostly in the low bits.
uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

uint64_t score(const std::string& resource, int32_t part, int32_t node) {
  auto key = resource + '#' + std::to_string(part) + '#' + std::to_string(node);
  return mix(entity::fnv1a64(key));
}

} // namespace

std::vector<int32_t> assign(const std::string& resource, int32_t parts,
                            std::vector<int32_t> candidates) {
  std::vector<int32_t> owners(static_cast<std::size_t>(std::max(parts, 0)), -1);
  std::sort(candidates.begin(), candidates.end());
  candidates.erase(std::unique(candidates.begin(), candidates.end()),
                   candidates.end());
  if (candidates.empty() || parts <= 0)
    return owners;
  auto n = static_cast<int32_t>(candidates.size());
  auto cap = (parts + n - 1) / n;
  // (score, part, node), best first; ties broken by part and node so the
  // order is total and every node sorts identically.
  std::vector<std::tuple<uint64_t, int32_t, int32_t>> pairs;
  pairs.reserve(static_cast<std::size_t>(parts) * candidates.size());
  for (int32_t p = 0; p < parts; ++p)
    for (auto node : candidates)
      pairs.emplace_back(score(resource, p, node), p, node);
  std::sort(pairs.begin(), pairs.end(), [](const auto& a, const auto& b) {
    return std::get<0>(a) != std::get<0>(b)
             ? std::get<0>(a) > std::get<0>(b)
             : std::tie(std::get<1>(a), std::get<2>(a))
                 < std::tie(std::get<1>(b), std::get<2>(b));
  });
  std::vector<int32_t> load(candidates.size(), 0);
  auto left = parts;
  for (auto& [s, p, node] : pairs) {
    auto& owner = owners[static_cast<std::size_t>(p)];
    if (owner >= 0)
      continue;
    auto i = static_cast<std::size_t>(
      std::lower_bound(candidates.begin(), candidates.end(), node)
      - candidates.begin());
    if (load[i] >= cap)
      continue;
    owner = node;
    ++load[i];
    if (--left == 0)
      break;
  }
  return owners;
}

} // namespace shoutflow::cluster
