#pragma once

// Every CAF atom of ShoutFlow, in one place (CAF 0.17: at most 10 chars).

#include <caf/atom.hpp>

namespace shoutflow {

using cmd_atom = caf::atom_constant<caf::atom("cmd")>;
using alias_atom = caf::atom_constant<caf::atom("alias")>;
using passivate_atom = caf::atom_constant<caf::atom("passivate")>;
using tick_atom = caf::atom_constant<caf::atom("tick")>;
using stats_atom = caf::atom_constant<caf::atom("stats")>;
using facts_atom = caf::atom_constant<caf::atom("facts")>;
using hash_atom = caf::atom_constant<caf::atom("hash")>;
using verify_atom = caf::atom_constant<caf::atom("verify")>;
using write_atom = caf::atom_constant<caf::atom("write")>;
using batch_atom = caf::atom_constant<caf::atom("batch")>;
using flush_atom = caf::atom_constant<caf::atom("flush")>;
using drain_atom = caf::atom_constant<caf::atom("drain")>;
using fence_atom = caf::atom_constant<caf::atom("fence")>;
using recover_atom = caf::atom_constant<caf::atom("recover")>;
using claim_atom = caf::atom_constant<caf::atom("claim")>;
using lookup_atom = caf::atom_constant<caf::atom("lookup")>;
using snapshot_atom = caf::atom_constant<caf::atom("snapshot")>;

} // namespace shoutflow
