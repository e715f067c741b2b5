#pragma once

// Query workers: detached actors, each with its own connection, running the
// QueryService's reads (read_queries.hpp) off the CAF scheduler; a front
// actor spreads requests over them round-robin.

#include <caf/actor_system.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <cstddef>
#include <string>

#include "actors/common/atoms.hpp"
#include "actors/projection/projection.hpp"
#include "services/query/read_queries.hpp"

namespace shoutflow::services {

/// A serialized response message (`ok`) or a serialized v1::Rejection.
struct query_answer {
  bool ok = false;
  std::string bytes;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, query_answer& x) {
  return f(x.ok, x.bytes);
}

using query_actor = caf::typed_actor<
  // (QueryService method name, serialized request)
  caf::replies_to<query_atom, std::string, std::string>::with<query_answer>,
  // A global position's log cursor (tx = 0: no such committed position).
  caf::replies_to<resolve_atom, int64_t>::with<projection::cursor>,
  // Everyone a user follows (a timeline Watch follows their author feeds).
  caf::replies_to<following_atom, std::string>::with<std::vector<std::string>>>;

query_actor spawn_query_workers(caf::actor_system& sys,
                                const std::string& db_url, std::size_t count,
                                query_limits limits);

} // namespace shoutflow::services
