#include "services/common/actor_edge.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <optional>
#include <unordered_map>
#include <vector>

#include "actors/common/atoms.hpp"

namespace shoutflow::services {

namespace {

struct edge_call {
  actor_edge::task run;
  actor_edge::clock_type::time_point deadline;
  actor_edge::expiry expired;
};

} // namespace

} // namespace shoutflow::services

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(shoutflow::services::edge_call)

namespace shoutflow::services {

using time_point = actor_edge::clock_type::time_point;

struct actor_edge::actor_state {
  struct deadline {
    time_point at;
    uint64_t call;

    /// Earliest first in a std::*_heap.
    bool operator<(const deadline& other) const {
      return at > other.at;
    }
  };

  /// The calls still open, each with what runs at its deadline.
  std::unordered_map<uint64_t, expiry> open;
  /// A heap (std::push_heap / std::pop_heap), earliest first; it may hold
  /// the deadlines of calls that have ended.
  std::vector<deadline> deadlines;
  uint64_t next_call = 0;
  /// The earliest timer outstanding: its id and when it fires.
  std::optional<std::pair<uint64_t, time_point>> timer;
  uint64_t next_timer = 0;
  std::shared_ptr<std::atomic<uint64_t>> timers_set;
  static inline const char* name = "actor-edge";

  /// Drops ended calls' deadlines from the front.
  void drop_ended() {
    while (!deadlines.empty() && open.count(deadlines.front().call) == 0) {
      std::pop_heap(deadlines.begin(), deadlines.end());
      deadlines.pop_back();
    }
  }
};

bool actor_edge::call::finish() const {
  auto& st = *state_;
  if (st.open.erase(id_) == 0)
    return false;
  if (st.open.empty())
    st.deadlines.clear();
  return true;
}

namespace {

using edge_pointer = caf::stateful_actor<actor_edge::actor_state>*;

/// Sets a timer for the earliest open deadline unless one fires by then.
void arm(edge_pointer self) {
  auto& st = self->state;
  st.drop_ended();
  if (st.deadlines.empty())
    return;
  auto at = st.deadlines.front().at;
  if (st.timer && st.timer->second <= at)
    return;
  auto id = st.next_timer++;
  st.timer.emplace(id, at);
  st.timers_set->fetch_add(1, std::memory_order_relaxed);
  auto delay = std::max(at - actor_edge::clock_type::now(),
                        actor_edge::clock_type::duration::zero());
  self->delayed_send(self, delay, tick_atom::value, id);
}

// The counter is a spawn argument: CAF 0.17 binds a reference to a null
// tuple when a function-based actor is spawned without arguments (undefined
// behaviour that UBSan reports).
caf::behavior edge_actor(edge_pointer self,
                         std::shared_ptr<std::atomic<uint64_t>> timers_set) {
  self->state.timers_set = std::move(timers_set);
  return {
    [self](edge_call& c) {
      auto& st = self->state;
      auto id = st.next_call++;
      st.open.emplace(id, std::move(c.expired));
      st.deadlines.push_back({c.deadline, id});
      std::push_heap(st.deadlines.begin(), st.deadlines.end());
      arm(self);
      c.run(self, actor_edge::call{&st, id});
    },
    [self](tick_atom, uint64_t timer) {
      auto& st = self->state;
      if (st.timer && st.timer->first == timer)
        st.timer.reset();
      auto now = actor_edge::clock_type::now();
      auto& heap = st.deadlines;
      for (st.drop_ended(); !heap.empty() && heap.front().at <= now;
           st.drop_ended()) {
        auto it = st.open.find(heap.front().call);
        auto expired = std::move(it->second);
        st.open.erase(it);
        expired(self);
      }
      arm(self);
    },
  };
}

} // namespace

actor_edge::actor_edge(caf::actor_system& sys, std::size_t actors)
  : timers_(std::make_shared<std::atomic<uint64_t>>(0)) {
  for (std::size_t i = 0; i < std::max<std::size_t>(actors, 1); ++i)
    actors_.push_back(sys.spawn(edge_actor, timers_));
}

actor_edge::~actor_edge() {
  for (auto& a : actors_)
    caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
}

void actor_edge::run(task t, clock_type::time_point deadline, expiry expired) {
  auto i = next_.fetch_add(1, std::memory_order_relaxed) % actors_.size();
  caf::anon_send(actors_[i],
                 edge_call{std::move(t), deadline, std::move(expired)});
}

} // namespace shoutflow::services
