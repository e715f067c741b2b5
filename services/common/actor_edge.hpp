#pragma once

// Where a gRPC thread hands work to the actor system: without blocking, and
// without spawning an actor per request.
//
// A few long-lived event-based actors take tasks in turn. A task runs inside
// one of them and may send requests and handle their replies there (CAF
// delivers a response to the actor that asked); an actor serves any number
// of tasks at once. Before, each command spawned an actor of its own, whose
// creation, first scheduling and teardown were part of every command's CPU
// (issue 14). A task must not change its actor's behaviour (`become`): the
// actor is shared. Tasks are in-process values and never cross nodes.
//
// Deadlines: a task may come with one and a second task to run, in the same
// actor, once it has passed. Each actor checks its deadlines every `tick`
// with one timer, so the tasks' requests need no timeout of their own — in
// CAF 0.17 every timed request costs an entry on the clock thread and, when
// it expires long after the reply, a stale message to the actor (measured:
// the clock thread was 14 % of the node at the write peak).

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <vector>

namespace shoutflow::services {

class actor_edge {
public:
  using task = std::function<void(caf::event_based_actor*)>;
  using clock_type = std::chrono::steady_clock;

  /// How often an actor checks its deadlines: an expiry runs at most this
  /// late.
  static constexpr std::chrono::milliseconds tick{10};

  actor_edge(caf::actor_system& sys, std::size_t actors);

  /// Stops the actors; tasks still waiting for a reply are dropped.
  ~actor_edge();

  actor_edge(const actor_edge&) = delete;
  actor_edge& operator=(const actor_edge&) = delete;

  /// Runs `t` in the next actor. Thread-safe.
  void run(task t);

  /// Runs `t` in the next actor and, once `deadline` has passed (up to one
  /// tick later), `expired` in the same actor — whether or not `t` is done
  /// by then: the two share whatever tells them apart. Thread-safe.
  void run(task t, clock_type::time_point deadline, task expired);

private:
  std::vector<caf::actor> actors_;
  std::atomic<std::size_t> next_{0};
};

} // namespace shoutflow::services
