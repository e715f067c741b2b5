#pragma once

// The journal and store seams as CAF typed actor interfaces.
//
// journal_actor: appends entity writes with group commit (pg_journal.hpp).
// store_actor:   everything an entity reads: recovery, claim lookups, the
//                events of an earlier command; and snapshot writes
//                (pg_store.hpp).
//
// Failures reach callers as CAF errors of category "db" (db_errc).

#include <caf/error.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <string>
#include <vector>

#include "actors/common/atoms.hpp"
#include "actors/journal/journal_types.hpp"

namespace caf {
class actor_system_config;
}

namespace shoutflow::journal {

using journal_actor = caf::typed_actor<
  caf::replies_to<write_atom, journal_write>::with<write_outcome>,
  // Answers once nothing is queued or in flight (for shutdown and tests).
  caf::replies_to<drain_atom>::with<bool>,
  // Answers once no write of this persistence id is queued or in flight:
  // an entity recovers only behind this fence, so a write of an earlier
  // incarnation that timed out but still commits is part of what it reads.
  caf::replies_to<fence_atom, std::string>::with<bool>,
  caf::replies_to<stats_atom>::with<journal_stats>, caf::reacts_to<flush_atom>,
  caf::reacts_to<expire_atom>>;

using store_actor = caf::typed_actor<
  caf::replies_to<recover_atom, std::string>::with<recovery_data>,
  caf::replies_to<claim_atom, std::string, std::string>::with<claim_lookup>,
  // What a command id did to a persistence id.
  caf::replies_to<lookup_atom, std::string, std::string>::with<command_lookup>,
  // Stores a snapshot (if newer than the stored one); true once durable.
  caf::replies_to<snapshot_atom, snapshot_record>::with<bool>>;

enum class db_errc : uint8_t {
  /// The database cannot be reached (or is restarting).
  unavailable = 1,
  /// Stored data could not be decoded.
  corrupt = 2,
  /// The writer no longer holds the lease its write is fenced by
  /// (docs/cluster.md): nothing was written.
  fenced = 3,
};

caf::error make_error(db_errc code, std::string detail = {});

/// Registers this module's message types and error category.
void add_message_types(caf::actor_system_config& cfg);

} // namespace shoutflow::journal
