#pragma once

// Resolves fact requests for entities: claim lookups through the store,
// password hashing and verification on a pool of detached hasher actors
// (argon2id takes tens of milliseconds at production cost and must never run
// on the CAF scheduler). All requests of one batch run concurrently.
//
// Exclusive claim lookups (a registration about to take a handle) are single
// flight per key: the first command holds the key until it finishes (it
// sends release_atom, or its actor goes down) and the others wait their turn,
// so fifty registrations of one handle hash one password and are refused
// one lookup each, instead of all hashing and then racing for the claim. A
// lookup that finds the claim taken passes the key on at once. This is an
// optimisation on one node only: the claims table's unique key still decides
// every race, between nodes too.

#include <chrono>
#include <cstddef>
#include <memory>

#include <caf/actor_system.hpp>

#include "actors/common/password_hasher.hpp"
#include "actors/entity/entity_actors.hpp"
#include "actors/entity/entity_metrics.hpp"
#include "actors/journal/journal_actors.hpp"

namespace shoutflow::entity {

struct resolver_config {
  std::size_t hashers = 2;
  std::chrono::milliseconds timeout{10000};
  /// Counts hashes, verifications and waits for a claim (optional).
  entity_metrics* metrics = nullptr;
};

resolver_actor
spawn_fact_resolver(caf::actor_system& sys, journal::store_actor store,
                    std::shared_ptr<const password_hasher> hasher,
                    resolver_config cfg);

} // namespace shoutflow::entity
