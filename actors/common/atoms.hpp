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
using expire_atom = caf::atom_constant<caf::atom("expire")>;
using drain_atom = caf::atom_constant<caf::atom("drain")>;
using fence_atom = caf::atom_constant<caf::atom("fence")>;
using recover_atom = caf::atom_constant<caf::atom("recover")>;
using claim_atom = caf::atom_constant<caf::atom("claim")>;
using lookup_atom = caf::atom_constant<caf::atom("lookup")>;
using snapshot_atom = caf::atom_constant<caf::atom("snapshot")>;
using apply_atom = caf::atom_constant<caf::atom("apply")>;
using offset_atom = caf::atom_constant<caf::atom("offset")>;
using retry_atom = caf::atom_constant<caf::atom("retry")>;
using wake_atom = caf::atom_constant<caf::atom("wake")>;
using await_atom = caf::atom_constant<caf::atom("await")>;
using fetch_atom = caf::atom_constant<caf::atom("fetch")>;
using resolve_atom = caf::atom_constant<caf::atom("resolve")>;
using head_atom = caf::atom_constant<caf::atom("head")>;
using status_atom = caf::atom_constant<caf::atom("status")>;
using rebuild_atom = caf::atom_constant<caf::atom("rebuild")>;
using dead_atom = caf::atom_constant<caf::atom("dead")>;
using changes_atom = caf::atom_constant<caf::atom("changes")>;
using subscribe_atom = caf::atom_constant<caf::atom("subscribe")>;
using unsub_atom = caf::atom_constant<caf::atom("unsub")>;
using change_atom = caf::atom_constant<caf::atom("change")>;
using built_atom = caf::atom_constant<caf::atom("built")>;
using applied_atom = caf::atom_constant<caf::atom("applied")>;
using promote_atom = caf::atom_constant<caf::atom("promote")>;
using hold_atom = caf::atom_constant<caf::atom("hold")>;
/// Build a rebuilt generation's query indexes and statistics.
using index_atom = caf::atom_constant<caf::atom("index")>;
using retire_atom = caf::atom_constant<caf::atom("retire")>;
using query_atom = caf::atom_constant<caf::atom("query")>;
using following_atom = caf::atom_constant<caf::atom("following")>;
// The cluster (actors/cluster/).
using round_atom = caf::atom_constant<caf::atom("round")>;
using join_atom = caf::atom_constant<caf::atom("join")>;
using leave_atom = caf::atom_constant<caf::atom("leave")>;
using release_atom = caf::atom_constant<caf::atom("release")>;
using grant_atom = caf::atom_constant<caf::atom("grant")>;
using handoff_atom = caf::atom_constant<caf::atom("handoff")>;
using revoke_atom = caf::atom_constant<caf::atom("revoke")>;
using view_atom = caf::atom_constant<caf::atom("view")>;
using peers_atom = caf::atom_constant<caf::atom("peers")>;
using check_atom = caf::atom_constant<caf::atom("check")>;
using lost_atom = caf::atom_constant<caf::atom("lost")>;

} // namespace shoutflow
