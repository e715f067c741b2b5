#include "services/common/actor_edge.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <vector>

#include "actors/common/atoms.hpp"

namespace shoutflow::services {

namespace {

struct edge_task {
  actor_edge::task run;
  /// With `expired`: when to run it.
  actor_edge::clock_type::time_point deadline;
  actor_edge::task expired;
};

} // namespace

} // namespace shoutflow::services

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(shoutflow::services::edge_task)

namespace shoutflow::services {

namespace {

struct deadline {
  actor_edge::clock_type::time_point at;
  actor_edge::task expired;

  /// Earliest first in a std::*_heap.
  bool operator<(const deadline& other) const {
    return at > other.at;
  }
};

struct edge_state {
  /// A heap (std::push_heap / std::pop_heap), earliest deadline first.
  std::vector<deadline> deadlines;
  bool ticking = false;
  static inline const char* name = "actor-edge";
};

using edge_pointer = caf::stateful_actor<edge_state>*;

void arm(edge_pointer self) {
  if (self->state.ticking || self->state.deadlines.empty())
    return;
  self->state.ticking = true;
  self->delayed_send(self, actor_edge::tick, tick_atom::value);
}

// The index is a spawn argument: CAF 0.17 binds a reference to a null tuple
// when a function-based actor is spawned without arguments (undefined
// behaviour that UBSan reports).
caf::behavior edge_actor(edge_pointer self, std::size_t) {
  return {
    [self](edge_task& t) {
      if (t.expired) {
        auto& heap = self->state.deadlines;
        heap.push_back({t.deadline, std::move(t.expired)});
        std::push_heap(heap.begin(), heap.end());
        arm(self);
      }
      t.run(self);
    },
    [self](tick_atom) {
      auto& st = self->state;
      st.ticking = false;
      auto now = actor_edge::clock_type::now();
      auto& heap = st.deadlines;
      while (!heap.empty() && heap.front().at <= now) {
        std::pop_heap(heap.begin(), heap.end());
        auto expired = std::move(heap.back().expired);
        heap.pop_back();
        expired(self);
      }
      arm(self);
    },
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
  run(std::move(t), {}, {});
}

void actor_edge::run(task t, clock_type::time_point deadline, task expired) {
  auto i = next_.fetch_add(1, std::memory_order_relaxed) % actors_.size();
  caf::anon_send(actors_[i],
                 edge_task{std::move(t), deadline, std::move(expired)});
}

} // namespace shoutflow::services
