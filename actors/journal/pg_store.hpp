#pragma once

// The PostgreSQL store: what entities read (recovery, claim lookups, the
// events of an earlier command) and snapshot writes.
//
// A front actor spreads requests over `readers` detached worker actors, each
// owning a connection, by hashing the persistence id (or claim key) — so one
// entity's snapshot writes and reads stay in order on one worker. Database
// calls never run on the CAF scheduler.

#include <cstddef>
#include <string>

#include <caf/actor_system.hpp>

#include "actors/journal/journal_actors.hpp"

namespace shoutflow::journal {

struct store_config {
  std::string db_url;
  std::size_t readers = 4;
};

store_actor spawn_pg_store(caf::actor_system& sys, store_config cfg);

} // namespace shoutflow::journal
