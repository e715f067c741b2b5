#pragma once

// Who should own what: a pure function every node evaluates over the same
// member list, so all of them agree without talking to each other.
//
// Each (part, node) pair gets a rendezvous score (a hash of resource, part
// and node id); pairs are taken from the highest score down, each part going
// to the first node that still has room under a cap of ceil(parts / nodes).
// So every node gets a fair share (the cap, or a little less), and when a
// node joins or leaves only about its share of parts changes hands: a part
// keeps its owner unless a better-scored pair displaced it.

#include <cstdint>
#include <string>
#include <vector>

namespace shoutflow::cluster {

/// The owner of parts 0..parts-1 of `resource` among `candidates` (node
/// ids, in any order, duplicates ignored); -1 for every part when there is
/// no candidate.
std::vector<int32_t> assign(const std::string& resource, int32_t parts,
                            std::vector<int32_t> candidates);

} // namespace shoutflow::cluster
