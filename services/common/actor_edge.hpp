#pragma once

// Where a gRPC thread hands work to the actor system: without blocking, and
// without spawning an actor per request.
//
// A few long-lived event-based actors take calls in turn. A call runs inside
// one of them and may send requests and handle their replies there (CAF
// delivers a response to the actor that asked); an actor serves any number
// of calls at once. Before, each command spawned an actor of its own, whose
// creation, first scheduling and teardown were part of every command's CPU
// (issue 14). A call must not change its actor's behaviour (`become`): the
// actor is shared. Calls are in-process values and never cross nodes.
//
// Deadlines: every call has one, and a task to run in the same actor if the
// call has not ended by then. A call ends once: by `call::finish()`, which
// the call's own handlers ask before they answer, or by its deadline. The
// calls' requests therefore need no timeout of their own — in CAF 0.17 every
// timed request costs an entry on the clock thread and, when it expires long
// after the reply, a stale message to the actor (measured: the clock thread
// was 14 % of the node at the write peak).
//
// Each actor keeps one timer, set for the earliest deadline of a call still
// open; an ended call's deadline is dropped from the front of the heap the
// next time the actor looks at it. Calls end in milliseconds and deadlines
// are seconds away, so under load the timer fires about once per request
// timeout instead of on a fixed tick (it was every 10 ms: 60 % of the clock
// thread's delayed messages at the write peak, docs/benchmarks.md).

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

namespace shoutflow::services {

class actor_edge {
public:
  using clock_type = std::chrono::steady_clock;

  struct actor_state;

  /// A call as its handlers see it. Copyable; valid only inside the call's
  /// actor, for as long as the actor lives.
  class call {
  public:
    call(actor_state* state, uint64_t id) : state_(state), id_(id) {
    }

    /// Ends the call: true the first time, so the caller answers; false
    /// once the call has ended, by an earlier `finish` or its deadline.
    bool finish() const;

  private:
    actor_state* state_;
    uint64_t id_;
  };

  using task = std::function<void(caf::event_based_actor*, call)>;
  using expiry = std::function<void(caf::event_based_actor*)>;

  actor_edge(caf::actor_system& sys, std::size_t actors);

  /// Stops the actors; calls still open are dropped.
  ~actor_edge();

  actor_edge(const actor_edge&) = delete;
  actor_edge& operator=(const actor_edge&) = delete;

  /// Runs `t` in the next actor and, if the call has not ended when
  /// `deadline` passes, ends it and runs `expired` in the same actor.
  /// Thread-safe.
  void run(task t, clock_type::time_point deadline, expiry expired);

  /// Timers the actors have set since the start (for tests and benchmarks).
  uint64_t timers_set() const {
    return timers_->load(std::memory_order_relaxed);
  }

private:
  std::vector<caf::actor> actors_;
  std::atomic<std::size_t> next_{0};
  std::shared_ptr<std::atomic<uint64_t>> timers_;
};

} // namespace shoutflow::services
