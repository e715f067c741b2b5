#pragma once

// The query pool (query_pool.hpp) as an actor, for the callers that are
// actors themselves: Watch sessions, and reads that first wait for a
// min_position. Answers arrive as responses to ordinary CAF requests.

#include <caf/actor_system.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <memory>
#include <string>
#include <vector>

#include "actors/common/atoms.hpp"
#include "actors/projection/projection.hpp"
#include "services/query/query_pool.hpp"

namespace shoutflow::services {

using query_actor = caf::typed_actor<
  // (QueryService method name, serialized request) -> an answer that is
  // `ok` or `rejected`; unavailable and expired come as errors.
  caf::replies_to<query_atom, std::string, std::string>::with<query_answer>,
  // A global position's log cursor (tx = 0: no such committed position).
  caf::replies_to<resolve_atom, int64_t>::with<projection::cursor>,
  // Everyone a user follows (a timeline Watch follows their author feeds).
  caf::replies_to<following_atom, std::string>::with<std::vector<std::string>>>;

query_actor spawn_query_front(caf::actor_system& sys,
                              std::shared_ptr<query_pool> pool);

} // namespace shoutflow::services
