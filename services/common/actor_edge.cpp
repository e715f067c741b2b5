#include "services/common/actor_edge.hpp"

#include <caf/all.hpp>

#include <algorithm>

namespace shoutflow::services {

namespace {

struct edge_task {
  actor_edge::task run;
};

} // namespace

} // namespace shoutflow::services

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(shoutflow::services::edge_task)

namespace shoutflow::services {

namespace {

// The index is a spawn argument: CAF 0.17 binds a reference to a null tuple
// when a function-based actor is spawned without arguments (undefined
// behaviour that UBSan reports).
caf::behavior edge_actor(caf::event_based_actor* self, std::size_t) {
  return {
    [self](edge_task& t) { t.run(self); },
  };
}

} // namespace

actor_edge::actor_edge(caf::actor_system& sys, std::size_t actors) {
  for (std::size_t i = 0; i < std::max<std::size_t>(actors, 1); ++i)
    actors_.push_back(sys.spawn(edge_actor, i));
}

actor_edge::~actor_edge() {
  for (auto& a : actors_)
    caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
}

void actor_edge::run(task t) {
  auto i = next_.fetch_add(1, std::memory_order_relaxed) % actors_.size();
  caf::anon_send(actors_[i], edge_task{std::move(t)});
}

} // namespace shoutflow::services
