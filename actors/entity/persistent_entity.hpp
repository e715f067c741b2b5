#pragma once

// The generic persistent entity: CAF glue around an aggregate's pure
// functions (the Akka EventSourcedBehavior shape). Any aggregate type `A`
// providing the traits below can be hosted; actors/user/user_aggregate.hpp is
// the first.
//
//   A::state_type, A::command_type, A::event_type, A::environment
//   A::persistence_id(id)                       -> std::string
//   A::command_of(const v1::EntityCommand&)     -> const command_type&
//   A::command_id(command)                      -> std::string
//   A::needs(state, command, known facts, env)  -> std::vector<fact_request>
//   A::decide(state, command, facts, env)       -> effect<event_type>
//   A::evolve(state, event)                     -> state_type
//   A::reply_for(id, events, seq_nr, position)  -> v1::EntityReply
//   A::encode_event(event) -> {type, version, payload};
//   A::decode_event(type, version, payload) -> optional<event_type>
//   A::encode_state(state) -> bytes; A::decode_state(bytes) -> optional<state>
//
// Lifecycle (one behavior; the phase decides what a message does, because
// commands must queue in every phase and all I/O answers arrive as response
// handlers rather than behavior messages):
//
//   recovering ──recovered──▶ ready ◀──finish──┐
//       │                       │ command      │
//       │ failed                ▼              │
//       │                     busy: facts ─▶ decide ─▶ write ─▶ apply
//       ▼                       │ write failed / in doubt / fenced
//    stopping ◀─────────────────┘ ◀── passivate or hand-off (once ready
//                                     and idle; a hand-off first writes a
//                                     snapshot, so the shard's next owner
//                                     recovers in one read)
//
// Fencing (docs/cluster.md): every write carries the shard lease epoch the
// region spawned this entity under; the journal refuses it once the lease
// moved on (`fenced`), and the entity stops, answering MOVED so the router
// sends the command to the shard's new owner.
//
// One command at a time: while busy, commands queue in arrival order, so
// decide always sees the state every earlier command left behind.
//
// Idempotency (G4): the replies of the last `recent_commands` command ids are
// kept in memory and in snapshots, and rebuilt from the events' command ids
// on recovery. Every accepted command goes through the journal — one that
// appends nothing (a repeated follow) records its reply there — and the
// journal's transaction finds an earlier execution of the id however old; a
// rejection looks the id up before answering. So a retry returns the first
// result, and appends nothing. (A rejected command is not recorded: retried
// after the world changed, it may succeed.)
//
// Recovery is fenced behind the journal (fence_atom): it starts only when
// no write of this entity is queued or in flight, so a timed-out write of an
// earlier incarnation that still commits is never missed.
//
// Any write whose outcome is unknown or stale stops the entity after failing
// its queue with UNAVAILABLE; the region starts a fresh incarnation on the
// next command, which recovers from the journal: the journal, never memory,
// is the truth.

#include <caf/all.hpp>

#include <algorithm>
#include <chrono>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "actors/common/log.hpp"
#include "actors/entity/entity_actors.hpp"
#include "actors/entity/entity_metrics.hpp"
#include "actors/journal/journal_actors.hpp"
#include "shoutflow/v1/entity.pb.h"

namespace shoutflow::entity {

struct entity_config {
  /// Snapshot after this many events since the last one; 0: never.
  int64_t snapshot_every = 100;
  /// Command ids (with their replies) kept for fast duplicate detection.
  std::size_t recent_commands = 64;
  /// Bound on each store, resolver and fence request (journal writes are
  /// bounded by the journal's write_timeout).
  std::chrono::milliseconds io_timeout{10000};
  /// Decide attempts when facts change between resolving and writing.
  int max_attempts = 3;
};

template <class A>
struct entity_deps {
  journal::journal_actor journal;
  journal::store_actor store;
  resolver_actor resolver;
  std::shared_ptr<const typename A::environment> env;
  entity_config cfg;
  entity_metrics* metrics = nullptr;
  /// The shard lease this entity serves under (-1: unfenced, tests only).
  int32_t shard = -1;
  int64_t lease_epoch = 0;
};

/// Bounded FIFO of command id -> serialized first reply.
class recent_commands {
public:
  explicit recent_commands(std::size_t cap = 64) : cap_(cap) {
  }

  const std::string* find(const std::string& command_id) const {
    auto i = replies_.find(command_id);
    return i == replies_.end() ? nullptr : &i->second;
  }

  void add(const std::string& command_id, std::string reply) {
    if (command_id.empty() || cap_ == 0
        || !replies_.emplace(command_id, std::move(reply)).second)
      return;
    order_.push_back(command_id);
    if (order_.size() > cap_) {
      replies_.erase(order_.front());
      order_.pop_front();
    }
  }

  /// Oldest first.
  template <class F>
  void for_each(F&& f) const {
    for (auto& id : order_)
      f(id, replies_.at(id));
  }

  std::size_t size() const {
    return order_.size();
  }

private:
  std::size_t cap_;
  std::deque<std::string> order_;
  std::unordered_map<std::string, std::string> replies_;
};

std::string rejection_reply(v1::RejectionCode code, std::string field,
                            std::string message);

/// The reply with `duplicate` set (a retry answered from the first result).
std::string as_duplicate(const std::string& reply);

template <class A>
struct entity_state {
  /// broken: the stored history is unusable; every command is refused
  /// with `broken_reason` until the entity is passivated.
  enum class phase { recovering, ready, busy, stopping, broken };

  struct pending {
    v1::EntityCommand envelope;
    caf::typed_response_promise<std::string> promise;
    int attempts = 0;
    /// Stable facts (is_stable) resolved for this command, kept across its
    /// attempts: a retry after a stale claim does not hash again.
    std::vector<std::pair<fact_request, fact>> stable = {};
    /// It asked for an exclusive claim fact: the resolver holds that key
    /// for it until it finishes.
    bool holds_claims = false;
  };

  std::string id;
  std::string persistence_id;
  typename A::state_type state{};
  int64_t seq_nr = 0;
  int64_t last_position = 0;
  int64_t snapshot_seq = 0;
  recent_commands recent;
  std::deque<pending> queue;
  phase ph = phase::recovering;
  bool passivate = false;
  /// Passivating for a hand-off: snapshot before stopping.
  bool snapshot_on_stop = false;
  std::string broken_reason;
  entity_deps<A> deps;

  static inline const char* name = "entity";
};

template <class A>
class persistent_entity {
public:
  using state = entity_state<A>;
  using phase = typename state::phase;
  using pointer = entity_actor::stateful_pointer<state>;
  using event_type = typename A::event_type;

  /// The actor's behavior: spawn with `sys.spawn(persistent_entity<A>::make,
  /// id, deps)`.
  static entity_actor::behavior_type make(pointer self, std::string id,
                                          entity_deps<A> deps) {
    auto& st = self->state;
    st.persistence_id = A::persistence_id(id);
    st.id = std::move(id);
    st.recent = recent_commands{deps.cfg.recent_commands};
    st.deps = std::move(deps);
    recover(self);
    return {
      [=](cmd_atom, std::string& bytes) {
        auto& st = self->state;
        auto promise = self->template make_response_promise<std::string>();
        v1::EntityCommand envelope;
        if (st.ph == phase::stopping) {
          promise.deliver(rejection_reply(v1::REJECTION_CODE_UNAVAILABLE, "",
                                          "entity restarting; retry"));
        } else if (st.ph == phase::broken) {
          promise.deliver(
            rejection_reply(v1::REJECTION_CODE_INTERNAL, "", st.broken_reason));
        } else if (!envelope.ParseFromString(bytes)) {
          promise.deliver(rejection_reply(v1::REJECTION_CODE_INVALID_ARGUMENT,
                                          "command", "command: malformed"));
        } else {
          st.queue.push_back({std::move(envelope), promise, 0});
          process_next(self);
        }
        return promise;
      },
      [=](passivate_atom) {
        self->state.passivate = true;
        if (self->state.ph == phase::broken)
          self->quit();
        else
          process_next(self);
      },
      [=](handoff_atom) {
        self->state.passivate = true;
        self->state.snapshot_on_stop = true;
        if (self->state.ph == phase::broken)
          self->quit();
        else
          process_next(self);
      },
    };
  }

private:
  static std::string render(pointer self, const caf::error& err) {
    return self->system().render(err);
  }

  // -- recovery ---------------------------------------------------------------

  /// Recovery waits until the journal holds no write of this entity: a
  /// write of an earlier incarnation that timed out may still commit, and
  /// it must be part of what this incarnation reads.
  static void recover(pointer self) {
    auto& st = self->state;
    self
      ->request(st.deps.journal, st.deps.cfg.io_timeout, fence_atom::value,
                st.persistence_id)
      .then([=](bool) { read_history(self); },
            [=](caf::error& err) {
              fail_all(self, v1::REJECTION_CODE_UNAVAILABLE,
                       "cannot recover entity: " + render(self, err));
            });
  }

  static void read_history(pointer self) {
    auto& st = self->state;
    auto started = std::chrono::steady_clock::now();
    self
      ->request(st.deps.store, st.deps.cfg.io_timeout, recover_atom::value,
                st.persistence_id)
      .then(
        [=](journal::recovery_data& data) {
          auto& st = self->state;
          auto replayed = data.events.size();
          auto problem = apply_recovery(self, data);
          if (!problem.empty()) {
            log_error("entity", st.persistence_id + ": " + problem);
            // Stay up and refuse: quitting would bounce commands already
            // on their way here as UNAVAILABLE, inviting retries of a
            // history that cannot be extended (G2).
            st.broken_reason = "internal: entity cannot recover: " + problem;
            auto reply = rejection_reply(v1::REJECTION_CODE_INTERNAL, "",
                                         st.broken_reason);
            for (auto& p : st.queue)
              p.promise.deliver(reply);
            st.queue.clear();
            st.ph = phase::broken;
            return;
          }
          if (auto* m = st.deps.metrics) {
            m->recoveries.Increment();
            m->recovered_events.Increment(static_cast<double>(replayed));
            m->recovery_seconds.Observe(
              std::chrono::duration<double>(std::chrono::steady_clock::now()
                                            - started)
                .count());
          }
          st.ph = phase::ready;
          process_next(self);
        },
        [=](caf::error& err) {
          fail_all(self, v1::REJECTION_CODE_UNAVAILABLE,
                   "cannot recover entity: " + render(self, err));
        });
  }

  /// Folds snapshot + tail into the state; an error text when the stored
  /// history is unusable (corrupt, or a seq_nr gap: a broken G2).
  static std::string apply_recovery(pointer self, journal::recovery_data& d) {
    auto& st = self->state;
    if (d.snapshot.seq_nr > 0) {
      v1::EntitySnapshot snap;
      if (!snap.ParseFromString(d.snapshot.payload))
        return "snapshot at seq_nr " + std::to_string(d.snapshot.seq_nr)
               + " does not decode";
      auto decoded = A::decode_state(snap.state());
      if (!decoded)
        return "snapshot state at seq_nr " + std::to_string(d.snapshot.seq_nr)
               + " does not decode";
      st.state = std::move(*decoded);
      st.seq_nr = snap.seq_nr();
      st.last_position = snap.last_position();
      st.snapshot_seq = st.seq_nr;
      for (auto& rc : snap.recent_commands())
        st.recent.add(rc.command_id(), rc.reply());
    }
    // Consecutive events of one command id form that command's result.
    struct group {
      std::string command_id;
      std::size_t begin;
      std::size_t end;
      int64_t seq_nr;
      int64_t position;
    };
    std::vector<event_type> events;
    std::vector<group> groups;
    events.reserve(d.events.size());
    for (auto& r : d.events) {
      if (r.seq_nr != st.seq_nr + 1)
        return "seq_nr gap: expected " + std::to_string(st.seq_nr + 1)
               + ", found " + std::to_string(r.seq_nr);
      auto e = A::decode_event(r.type, r.version, r.payload);
      if (!e)
        return "event " + std::to_string(r.seq_nr) + " (" + r.type + " v"
               + std::to_string(r.version) + ") does not decode";
      st.state = A::evolve(std::move(st.state), *e);
      st.seq_nr = r.seq_nr;
      st.last_position = r.position;
      if (!r.command_id.empty()) {
        if (groups.empty() || groups.back().command_id != r.command_id
            || groups.back().end != events.size())
          groups.push_back({r.command_id, events.size(), events.size(), 0, 0});
        auto& g = groups.back();
        g.end = events.size() + 1;
        g.seq_nr = r.seq_nr;
        g.position = r.position;
      }
      events.push_back(std::move(*e));
    }
    auto cap = st.deps.cfg.recent_commands;
    auto first = groups.size() > cap ? groups.size() - cap : 0;
    for (auto i = first; i < groups.size(); ++i) {
      auto& g = groups[i];
      std::vector<event_type> slice(events.begin() + g.begin,
                                    events.begin() + g.end);
      st.recent.add(
        g.command_id,
        A::reply_for(st.id, slice, g.seq_nr, g.position).SerializeAsString());
    }
    return {};
  }

  // -- commands ---------------------------------------------------------------

  static void process_next(pointer self) {
    auto& st = self->state;
    if (st.ph != phase::ready)
      return;
    if (st.queue.empty()) {
      if (st.passivate)
        stop(self);
      return;
    }
    st.ph = phase::busy;
    execute(self);
  }

  static void execute(pointer self) {
    auto& st = self->state;
    // References into the front element stay valid: std::deque::push_back
    // never moves existing elements, and the front is popped only by finish.
    auto& cmd = A::command_of(st.queue.front().envelope);
    if (auto* first = st.recent.find(A::command_id(cmd))) {
      if (auto* m = st.deps.metrics)
        m->duplicate.Increment();
      finish(self, as_duplicate(*first));
      return;
    }
    gather_facts(self, {}, 0);
  }

  /// Asks needs() for the facts it wants given those `known` so far (it only
  /// ever appends), resolves the new ones — stable ones from this command's
  /// earlier attempts when it has them — and repeats until needs() asks for
  /// nothing new; then decides.
  static void gather_facts(pointer self, std::vector<fact> known, int round) {
    constexpr int max_rounds = 8;
    auto& st = self->state;
    auto& p = st.queue.front();
    auto requests = A::needs(st.state, A::command_of(p.envelope), known,
                             *st.deps.env);
    if (requests.size() <= known.size()) {
      known.resize(requests.size());
      decide(self, known);
      return;
    }
    if (round == max_rounds) {
      finish(self, rejection_reply(v1::REJECTION_CODE_INTERNAL, "",
                                   "internal: the facts needed never settled"));
      return;
    }
    std::vector<fact_request> ask;
    std::vector<std::size_t> slots; // index in `known` of each of `ask`
    for (auto i = known.size(); i < requests.size(); ++i) {
      auto& r = requests[i];
      auto kept = std::find_if(p.stable.begin(), p.stable.end(),
                               [&](auto& s) { return s.first == r; });
      if (kept != p.stable.end()) {
        known.push_back(kept->second);
        continue;
      }
      p.holds_claims = p.holds_claims || r.exclusive;
      slots.push_back(known.size());
      known.emplace_back();
      ask.push_back(r);
    }
    if (ask.empty()) {
      gather_facts(self, std::move(known), round + 1);
      return;
    }
    self
      ->request(st.deps.resolver, st.deps.cfg.io_timeout, facts_atom::value,
                ask)
      .then(
        [=](std::vector<fact>& got) mutable {
          auto& p = self->state.queue.front();
          for (std::size_t j = 0; j < got.size() && j < slots.size(); ++j) {
            if (is_stable(ask[j].kind))
              p.stable.emplace_back(ask[j], got[j]);
            known[slots[j]] = std::move(got[j]);
          }
          gather_facts(self, std::move(known), round + 1);
        },
        [=](caf::error& err) {
          finish(self, rejection_reply(v1::REJECTION_CODE_UNAVAILABLE, "",
                                       "could not check the command: "
                                         + render(self, err)));
        });
  }

  static void decide(pointer self, const std::vector<fact>& facts) {
    auto& st = self->state;
    auto& pending = st.queue.front();
    auto& cmd = A::command_of(pending.envelope);
    auto command_id = A::command_id(cmd);
    auto eff = A::decide(st.state, cmd, facts, *st.deps.env);
    if (eff.rejected()) {
      v1::EntityReply r;
      *r.mutable_rejection() = *eff.rejection;
      // Invalid input was never applied before: answer directly.
      if (eff.rejection->code() == v1::REJECTION_CODE_INVALID_ARGUMENT) {
        if (auto* m = st.deps.metrics)
          m->rejected.Increment();
        finish(self, r.SerializeAsString());
        return;
      }
      answer_unless_applied_before(self, command_id, r.SerializeAsString());
      return;
    }
    // Appending events, or — for a no-op — recording the reply, goes through
    // the journal, whose transaction also detects an earlier execution of
    // the command id however old.
    journal::journal_write w;
    w.persistence_id = st.persistence_id;
    w.command_id = command_id;
    w.correlation_id = pending.envelope.correlation_id();
    w.causation_id = pending.envelope.causation_id();
    auto seq = st.seq_nr;
    for (auto& e : eff.events) {
      auto enc = A::encode_event(e);
      w.events.push_back({++seq, std::move(enc.type), enc.version,
                          std::move(enc.payload), command_id, 0});
    }
    if (eff.events.empty())
      w.noop_reply = A::reply_for(st.id, {}, st.seq_nr, st.last_position)
                       .SerializeAsString();
    w.claims = std::move(eff.claims);
    w.releases = std::move(eff.releases);
    w.guards = std::move(eff.guards);
    w.shard = st.deps.shard;
    w.lease_epoch = st.deps.lease_epoch;
    auto noop_reply = w.noop_reply;
    // No timeout of our own: the journal answers every write within its
    // write_timeout (as in doubt if need be), a bound it keeps for all
    // writes at once — a timed request here cost a clock entry, and later a
    // stale timeout message, per command.
    self
      ->request(st.deps.journal, caf::infinite, write_atom::value, std::move(w))
      .then(
        [=, events = std::move(eff.events)](journal::write_outcome& out) {
          written(self, command_id, events, noop_reply, out);
        },
        [=](caf::error& err) {
          fail_all(self, v1::REJECTION_CODE_UNAVAILABLE,
                   "write outcome unknown (" + render(self, err)
                     + "); retry with the same command_id");
        });
  }

  static void written(pointer self, const std::string& command_id,
                      const std::vector<event_type>& events,
                      const std::string& noop_reply,
                      journal::write_outcome& out) {
    auto& st = self->state;
    switch (out.status) {
      case journal::write_status::ok: {
        if (events.empty()) {
          st.recent.add(command_id, noop_reply);
          if (auto* m = st.deps.metrics)
            m->noop.Increment();
          finish(self, noop_reply);
          return;
        }
        for (auto& e : events)
          st.state = A::evolve(std::move(st.state), e);
        st.seq_nr += static_cast<int64_t>(events.size());
        st.last_position = out.positions.back();
        auto reply = A::reply_for(st.id, events, st.seq_nr, st.last_position)
                       .SerializeAsString();
        st.recent.add(command_id, reply);
        if (auto* m = st.deps.metrics)
          m->applied.Increment();
        maybe_snapshot(self);
        finish(self, std::move(reply));
        return;
      }
      case journal::write_status::duplicate:
        answer_from_original(self, command_id,
                             {std::move(out.original),
                              std::move(out.original_reply)});
        return;
      case journal::write_status::precondition_failed:
        if (++st.queue.front().attempts < st.deps.cfg.max_attempts) {
          if (auto* m = st.deps.metrics)
            m->fact_retries.Increment();
          execute(self);
        } else {
          finish(self,
                 rejection_reply(v1::REJECTION_CODE_UNAVAILABLE, "",
                                 "contention on " + out.detail + "; retry"));
        }
        return;
      case journal::write_status::conflict:
      case journal::write_status::unavailable:
        fail_all(self, v1::REJECTION_CODE_UNAVAILABLE,
                 out.detail + "; retry with the same command_id");
        return;
      case journal::write_status::fenced:
        // Nothing was written: the router may send it on safely.
        fail_all(self, v1::REJECTION_CODE_MOVED, out.detail);
        return;
    }
  }

  /// Before answering a rejection: was this command id applied earlier
  /// than the recent-command window reaches? Then its first result is the
  /// answer (G4).
  static void answer_unless_applied_before(pointer self,
                                           const std::string& command_id,
                                           std::string rejection) {
    auto& st = self->state;
    self
      ->request(st.deps.store, st.deps.cfg.io_timeout, lookup_atom::value,
                st.persistence_id, command_id)
      .then(
        [=](journal::command_lookup& earlier) {
          if (earlier.found()) {
            answer_from_original(self, command_id, std::move(earlier));
            return;
          }
          if (auto* m = self->state.deps.metrics)
            m->rejected.Increment();
          finish(self, rejection);
        },
        [=](caf::error& err) {
          finish(self, rejection_reply(v1::REJECTION_CODE_UNAVAILABLE, "",
                                       "could not check command_id: "
                                         + render(self, err)));
        });
  }

  /// Answers a retry with the first execution's result. If that execution
  /// appended events this incarnation has not seen, its state is stale (an
  /// earlier incarnation's write committed after it recovered): it answers,
  /// then stops so that the next command recovers afresh.
  static void answer_from_original(pointer self, const std::string& command_id,
                                   journal::command_lookup earlier) {
    auto& st = self->state;
    std::string reply;
    bool stale = false;
    if (earlier.events.empty()) {
      reply = std::move(earlier.noop_reply);
    } else {
      std::vector<event_type> events;
      for (auto& r : earlier.events) {
        auto e = A::decode_event(r.type, r.version, r.payload);
        if (!e) {
          finish(self,
                 rejection_reply(v1::REJECTION_CODE_INTERNAL, "",
                                 "internal: stored event does not decode"));
          return;
        }
        events.push_back(std::move(*e));
      }
      auto& last = earlier.events.back();
      reply = A::reply_for(st.id, events, last.seq_nr, last.position)
                .SerializeAsString();
      stale = last.seq_nr > st.seq_nr;
    }
    st.recent.add(command_id, reply);
    if (auto* m = st.deps.metrics)
      m->duplicate.Increment();
    if (!stale) {
      finish(self, as_duplicate(reply));
      return;
    }
    log_warn("entity", st.persistence_id
                         + ": state behind the journal; recovering again");
    st.queue.front().promise.deliver(as_duplicate(reply));
    st.queue.pop_front();
    fail_all(self, v1::REJECTION_CODE_UNAVAILABLE,
             "entity restarting; retry with the same command_id");
  }

  static void maybe_snapshot(pointer self) {
    auto& st = self->state;
    auto every = st.deps.cfg.snapshot_every;
    if (every <= 0 || st.seq_nr - st.snapshot_seq < every)
      return;
    caf::anon_send(st.deps.store, snapshot_atom::value, snapshot_now(self));
    if (auto* m = st.deps.metrics)
      m->snapshots.Increment();
  }

  /// Stops; after a hand-off, once a snapshot of the current state is
  /// stored (or could not be: recovery then reads the events instead).
  static void stop(pointer self) {
    auto& st = self->state;
    st.ph = phase::stopping;
    if (!st.snapshot_on_stop || st.seq_nr == st.snapshot_seq) {
      self->quit();
      return;
    }
    if (auto* m = st.deps.metrics)
      m->snapshots.Increment();
    self
      ->request(st.deps.store, st.deps.cfg.io_timeout, snapshot_atom::value,
                snapshot_now(self))
      .then([=](bool) { self->quit(); },
            [=](caf::error& err) {
              log_warn("entity", self->state.persistence_id
                                   + ": hand-off snapshot not stored: "
                                   + render(self, err));
              self->quit();
            });
  }

  /// The current state as a snapshot record.
  static journal::snapshot_record snapshot_now(pointer self) {
    auto& st = self->state;
    v1::EntitySnapshot snap;
    snap.set_seq_nr(st.seq_nr);
    snap.set_last_position(st.last_position);
    st.recent.for_each([&](const std::string& id, const std::string& reply) {
      auto* rc = snap.add_recent_commands();
      rc->set_command_id(id);
      rc->set_reply(reply);
    });
    snap.set_state(A::encode_state(st.state));
    st.snapshot_seq = st.seq_nr;
    return {st.persistence_id, st.seq_nr, 1, snap.SerializeAsString()};
  }

  /// Answers the command in progress and moves on to the next.
  static void finish(pointer self, std::string reply) {
    auto& st = self->state;
    if (st.queue.front().holds_claims)
      self->send(st.deps.resolver, release_atom::value);
    st.queue.front().promise.deliver(std::move(reply));
    st.queue.pop_front();
    st.ph = phase::ready;
    process_next(self);
  }

  /// Answers everything queued with an error and stops; the region starts
  /// a fresh incarnation (which recovers from the journal) on demand.
  static void fail_all(pointer self, v1::RejectionCode code,
                       const std::string& message) {
    auto& st = self->state;
    if (st.ph != phase::recovering)
      if (auto* m = st.deps.metrics)
        m->write_failures.Increment();
    auto reply = rejection_reply(code, "", message);
    for (auto& p : st.queue)
      p.promise.deliver(reply);
    st.queue.clear();
    st.ph = phase::stopping;
    self->quit();
  }
};

} // namespace shoutflow::entity
