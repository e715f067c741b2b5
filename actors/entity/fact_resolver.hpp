#pragma once

// Resolves fact requests for entities: claim lookups through the store,
// password hashing and verification on a pool of detached hasher actors
// (argon2id takes tens of milliseconds at production cost and must never run
// on the CAF scheduler). All requests of one batch run concurrently.

#include <chrono>
#include <cstddef>
#include <memory>

#include <caf/actor_system.hpp>

#include "actors/common/password_hasher.hpp"
#include "actors/entity/entity_actors.hpp"
#include "actors/journal/journal_actors.hpp"

namespace shoutflow::entity {

struct resolver_config {
  std::size_t hashers = 2;
  std::chrono::milliseconds timeout{10000};
};

resolver_actor spawn_fact_resolver(caf::actor_system& sys,
                                   journal::store_actor store,
                                   std::shared_ptr<const password_hasher> hasher,
                                   resolver_config cfg);

} // namespace shoutflow::entity
