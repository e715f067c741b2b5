#include "actors/cluster/cluster_actors.hpp"

#include <caf/all.hpp>

#include <deque>
#include <memory>
#include <set>
#include <tuple>

#include "actors/common/log.hpp"
#include "actors/journal/journal_actors.hpp"

namespace shoutflow::cluster {

namespace {

constexpr const char* component = "cluster";

using clock_type = std::chrono::steady_clock;
using lease_key = std::pair<std::string, int32_t>;

std::string label(const lease_grant& g) {
  return g.resource + "#" + std::to_string(g.part) + " (epoch "
         + std::to_string(g.epoch) + ")";
}

// -- worker: the blocking SQL -------------------------------------------------

using worker_actor = caf::typed_actor<
  caf::replies_to<round_atom, bool,
                  std::vector<lease_grant>>::with<round_result>,
  caf::replies_to<release_atom, lease_grant>::with<bool>,
  caf::replies_to<join_atom>::with<bool>>;

struct worker_state {
  std::unique_ptr<membership_table> table;
  static inline const char* name = "cluster-worker";
};

worker_actor::behavior_type
worker(worker_actor::stateful_pointer<worker_state> self,
       membership_config cfg) {
  self->state.table = std::make_unique<membership_table>(std::move(cfg));
  return {
    [=](round_atom, bool leaving, const std::vector<lease_grant>& give_back)
      -> caf::result<round_result> {
      round_result out;
      auto r = self->state.table->round(leaving, give_back, out);
      if (!r)
        return journal::make_error(journal::db_errc::unavailable, r.detail);
      return out;
    },
    [=](release_atom, const lease_grant& g) -> caf::result<bool> {
      auto r = self->state.table->release(g);
      if (!r)
        return journal::make_error(journal::db_errc::unavailable, r.detail);
      return true;
    },
    [=](join_atom) -> caf::result<bool> {
      try {
        auto ttl = self->state.table->config().lease_ttl;
        self->state.table->join(ttl * 3);
        return true;
      } catch (const std::exception& e) {
        return journal::make_error(journal::db_errc::unavailable, e.what());
      }
    },
  };
}

// -- keeper -------------------------------------------------------------------

struct held_lease {
  int64_t epoch = 0;
  clock_type::time_point valid_until;
  bool handing_off = false;
};

struct join_waiter {
  caf::typed_response_promise<bool> promise;
  clock_type::time_point deadline;
};

struct keeper_state {
  keeper_config cfg;
  worker_actor worker;
  std::map<lease_key, held_lease> held;
  /// (resource, part, epoch) released after a hand-off: a round that
  /// started before the release must not grant it again.
  std::set<std::tuple<std::string, int32_t, int64_t>> released;
  /// Leases stopped because their renewal was overdue, to be freed by the
  /// next round (also in `released`: a late renewal must not grant one
  /// again at the epoch its revoked holder may still be writing under).
  std::vector<lease_grant> give_back;
  bool leaving = false;
  bool left_round = false;
  bool in_round = false;
  bool rejoining = false;
  /// Another node released leases during a round: run one more after it.
  bool wake_pending = false;
  /// Hand-offs waiting for a slot, and how many run (at most
  /// cfg.parallel_handoffs): a shard's commands wait only for its own
  /// entities' snapshots, not for those of every shard moving at once.
  std::deque<lease_grant> handoff_queue;
  std::size_t handoffs_running = 0;
  member_state state = member_state::joining;
  cluster_view view;
  std::vector<join_waiter> join_waiters;
  std::vector<caf::typed_response_promise<bool>> leave_waiters;
  static inline const char* name = "cluster-keeper";
};

using pointer = keeper_actor::stateful_pointer<keeper_state>;

lease_holder_actor holder_of(pointer self, const std::string& resource) {
  auto it = self->state.cfg.holders.find(resource);
  return it == self->state.cfg.holders.end() ? lease_holder_actor{}
                                             : it->second;
}

void revoke(pointer self, const lease_grant& g) {
  if (auto h = holder_of(self, g.resource))
    self->send(h, revoke_atom::value, g);
}

void check_waiters(pointer self) {
  auto& st = self->state;
  auto now = clock_type::now();
  for (auto it = st.join_waiters.begin(); it != st.join_waiters.end();) {
    if (st.state == member_state::up) {
      it->promise.deliver(true);
    } else if (now >= it->deadline) {
      it->promise.deliver(false);
    } else {
      ++it;
      continue;
    }
    it = st.join_waiters.erase(it);
  }
  if (st.leaving && st.left_round && st.held.empty()) {
    for (auto& p : st.leave_waiters)
      p.deliver(true);
    st.leave_waiters.clear();
  }
}

/// The leases held here, by resource, into the owned gauges.
void count_owned(pointer self) {
  auto* m = self->state.cfg.metrics;
  if (m == nullptr)
    return;
  std::map<std::string, int> owned;
  for (auto& [key, h] : self->state.held)
    ++owned[key.first];
  m->shards_owned.Set(owned[shard_resource]);
  for (auto& [resource, holder] : self->state.cfg.holders)
    if (!projection_of(resource).empty())
      m->partitions_owned(resource).Set(owned[resource]);
}

void lost(pointer self, std::size_t n) {
  if (auto* m = self->state.cfg.metrics; m != nullptr && n > 0)
    m->leases_lost.Increment(static_cast<double>(n));
}

/// `handoff_started`: when its hand-off was asked for (epoch: not a
/// hand-off).
void release(pointer self, const lease_grant& g,
             clock_type::time_point handoff_started = {}) {
  auto& st = self->state;
  self->request(st.worker, st.cfg.membership.lease_ttl, release_atom::value, g)
    .then(
      [=](bool) {
        auto& st = self->state;
        auto it = st.held.find({g.resource, g.part});
        if (it != st.held.end() && it->second.epoch == g.epoch)
          st.held.erase(it);
        st.released.emplace(g.resource, g.part, g.epoch);
        log_debug(component, "released " + label(g));
        if (st.cfg.metrics != nullptr
            && handoff_started != clock_type::time_point{})
          st.cfg.metrics->handoff_seconds.Observe(
            std::chrono::duration<double>(clock_type::now() - handoff_started)
              .count());
        count_owned(self);
        // Every release, at once: the new owner takes it in the round this
        // starts instead of waiting for its timer (receivers coalesce).
        if (st.cfg.nudge) {
          caf::anon_send(st.cfg.nudge, round_atom::value);
        }
        check_waiters(self);
      },
      [=](caf::error& err) {
        // Still held in the database: the next round hands it off again
        // (the holder answers at once, having stopped already).
        auto it = self->state.held.find({g.resource, g.part});
        if (it != self->state.held.end())
          it->second.handing_off = false;
        log_warn(component, "could not release " + label(g) + ": "
                              + self->system().render(err));
      });
}

void start_hand_off(pointer self, const lease_grant& g);

/// Starts queued hand-offs while slots are free; skips leases lost while
/// they waited.
void pump_hand_offs(pointer self) {
  auto& st = self->state;
  while (st.handoffs_running < st.cfg.parallel_handoffs
         && !st.handoff_queue.empty()) {
    auto g = st.handoff_queue.front();
    st.handoff_queue.pop_front();
    auto it = st.held.find({g.resource, g.part});
    if (it == st.held.end() || it->second.epoch != g.epoch
        || !it->second.handing_off)
      continue;
    start_hand_off(self, g);
  }
}

void start_hand_off(pointer self, const lease_grant& g) {
  auto& st = self->state;
  auto holder = holder_of(self, g.resource);
  if (!holder) {
    release(self, g);
    return;
  }
  ++st.handoffs_running;
  log_debug(component, "handing off " + label(g));
  auto done = [=] {
    --self->state.handoffs_running;
    pump_hand_offs(self);
  };
  auto started = clock_type::now();
  self->request(holder, st.cfg.handoff_timeout, handoff_atom::value, g)
    .then(
      [=](bool) {
        release(self, g, started);
        done();
      },
      [=](caf::error& err) {
        if (auto* m = self->state.cfg.metrics)
          m->handoff_failures.Increment();
        log_warn(component, "hand-off of " + label(g) + " failed ("
                              + self->system().render(err)
                              + "); stopping it at once");
        revoke(self, g);
        release(self, g);
        done();
      });
}

void hand_off(pointer self, const lease_grant& g) {
  auto& st = self->state;
  auto& h = st.held[{g.resource, g.part}];
  if (h.handing_off)
    return;
  h.handing_off = true;
  st.handoff_queue.push_back(g);
  pump_hand_offs(self);
}

void revoke_all(pointer self, const std::string& why) {
  auto& st = self->state;
  for (auto& [key, h] : st.held) {
    lease_grant g{key.first, key.second, h.epoch};
    log_warn(component, "lost " + label(g) + ": " + why);
    revoke(self, g);
  }
  lost(self, st.held.size());
  st.held.clear();
  count_owned(self);
}

void publish(pointer self) {
  for (auto& s : self->state.cfg.subscribers)
    caf::anon_send(s, view_atom::value, self->state.view);
}

void apply_round(pointer self, round_result& r,
                 clock_type::time_point started) {
  auto& st = self->state;
  if (!r.member) {
    revoke_all(self, "this node was declared down by the cluster");
    if (st.rejoining)
      return;
    st.rejoining = true;
    log_warn(component, "declared down by the cluster; joining again");
    self->request(st.worker, st.cfg.membership.lease_ttl * 4, join_atom::value)
      .then([=](bool) { self->state.rejoining = false; },
            [=](caf::error& err) {
              self->state.rejoining = false;
              log_error(component,
                        "cannot join again: " + self->system().render(err));
            });
    return;
  }
  for (auto down : r.declared_down)
    log_warn(component, "declared node " + std::to_string(down)
                          + " down: no heartbeat within the lease TTL");
  if (st.state != r.state)
    log_info(component, std::string{"this node is "} + to_string(r.state));
  st.state = r.state;
  st.view = std::move(r.view);
  if (auto* m = st.cfg.metrics) {
    std::vector<int> by_state(m->members.size(), 0);
    for (auto& mem : st.view.members)
      ++by_state[static_cast<std::size_t>(mem.state)];
    for (std::size_t i = 0; i < by_state.size(); ++i)
      m->members[i]->Set(by_state[i]);
    std::size_t renewed = 0;
    for (auto& g : r.held) {
      auto it = st.held.find({g.resource, g.part});
      renewed += it != st.held.end() && it->second.epoch == g.epoch;
    }
    m->renewals.Increment(static_cast<double>(renewed));
    for (auto seconds : r.failover_seconds)
      m->failover_seconds.Observe(seconds);
  }
  if (st.leaving)
    st.left_round = true;
  auto valid_until = started + st.cfg.membership.lease_ttl
                     - st.cfg.safety_margin;
  std::map<lease_key, int64_t> now;
  for (auto& g : r.held)
    now[{g.resource, g.part}] = g.epoch;
  for (auto it = st.held.begin(); it != st.held.end();) {
    auto n = now.find(it->first);
    if (n != now.end() && n->second == it->second.epoch) {
      ++it;
      continue;
    }
    lease_grant g{it->first.first, it->first.second, it->second.epoch};
    log_warn(component,
             "lost " + label(g) + ": not renewed (it expired in the database)");
    revoke(self, g);
    lost(self, 1);
    it = st.held.erase(it);
  }
  std::size_t acquired = 0;
  for (auto& g : r.held) {
    if (st.released.count({g.resource, g.part, g.epoch}) > 0)
      continue;
    auto [it, fresh] = st.held.try_emplace({g.resource, g.part});
    it->second.valid_until = valid_until;
    if (!fresh)
      continue;
    it->second.epoch = g.epoch;
    if (auto h = holder_of(self, g.resource))
      self->send(h, grant_atom::value, g);
    log_debug(component, "acquired " + label(g));
    ++acquired;
  }
  std::size_t handing_off = 0;
  for (auto& g : r.give_up)
    if (st.released.count({g.resource, g.part, g.epoch}) == 0
        && !st.held[{g.resource, g.part}].handing_off) {
      hand_off(self, g);
      ++handing_off;
    }
  if (acquired > 0 || handing_off > 0)
    log_info(component, "acquired " + std::to_string(acquired)
                          + " leases, handing off "
                          + std::to_string(handing_off) + "; holding "
                          + std::to_string(st.held.size()));
  if (st.released.size() > 100000)
    st.released.clear();
  count_owned(self);
  publish(self);
  check_waiters(self);
}

void run_round(pointer self) {
  auto& st = self->state;
  if (st.in_round) {
    st.wake_pending = true;
    return;
  }
  if (st.rejoining)
    return;
  st.wake_pending = false;
  st.in_round = true;
  auto started = clock_type::now();
  auto give_back = st.give_back;
  self
    ->request(st.worker, st.cfg.membership.lease_ttl, round_atom::value,
              st.leaving, give_back)
    .then(
      [=](round_result& r) {
        auto& back = self->state.give_back;
        back.erase(back.begin(),
                   back.begin()
                     + static_cast<std::ptrdiff_t>(give_back.size()));
        self->state.in_round = false;
        apply_round(self, r, started);
        if (self->state.wake_pending)
          run_round(self);
      },
      [=](caf::error& err) {
        self->state.in_round = false;
        self->state.wake_pending = false;
        if (auto* m = self->state.cfg.metrics)
          m->renewal_failures.Increment();
        log_warn(component,
                 "membership round failed: " + self->system().render(err));
      });
}

/// Stops serving every lease whose renewal is overdue: the database may
/// let another node take it soon.
void check_validity(pointer self) {
  auto& st = self->state;
  auto now = clock_type::now();
  for (auto it = st.held.begin(); it != st.held.end();) {
    if (it->second.valid_until > now) {
      ++it;
      continue;
    }
    lease_grant g{it->first.first, it->first.second, it->second.epoch};
    log_error(component,
              "could not renew " + label(g) + " in time: stopping it");
    revoke(self, g);
    lost(self, 1);
    it = st.held.erase(it);
    // The round still running may renew it at this epoch all the same,
    // while the revoked holder finishes what it was writing: a grant at
    // the same epoch would let a new holder write beside it, unfenced.
    st.released.emplace(g.resource, g.part, g.epoch);
    st.give_back.push_back(g);
    count_owned(self);
  }
  check_waiters(self);
}

keeper_actor::behavior_type keeper(pointer self, keeper_config cfg) {
  auto& st = self->state;
  st.worker = self->spawn<caf::detached + caf::linked>(worker, cfg.membership);
  st.cfg = std::move(cfg);
  auto check_every = std::max<std::chrono::milliseconds>(
    std::chrono::milliseconds(20), st.cfg.interval / 2);
  self->send(self, round_atom::value);
  self->delayed_send(self, check_every, check_atom::value);
  return {
    [=](round_atom) {
      run_round(self);
      self->delayed_send(self, self->state.cfg.interval, round_atom::value);
    },
    [=](wake_atom) { run_round(self); },
    [=](check_atom) {
      check_validity(self);
      self->delayed_send(self, check_every, check_atom::value);
    },
    [=](join_atom, caf::timespan timeout) {
      auto promise = self->make_response_promise<bool>();
      self->state.join_waiters.push_back(
        {promise,
         clock_type::now()
           + std::chrono::duration_cast<clock_type::duration>(timeout)});
      check_waiters(self);
      return promise;
    },
    [=](leave_atom) {
      auto& st = self->state;
      auto promise = self->make_response_promise<bool>();
      st.leave_waiters.push_back(promise);
      if (!st.leaving) {
        st.leaving = true;
        log_info(component, "leaving: handing everything off");
        run_round(self);
      }
      check_waiters(self);
      return promise;
    },
    [=](view_atom) { return self->state.view; },
  };
}

} // namespace

keeper_actor spawn_keeper(caf::actor_system& sys, keeper_config cfg) {
  return sys.spawn(keeper, std::move(cfg));
}

void add_message_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<member>("shoutflow.cluster.member");
  cfg.add_message_type<lease>("shoutflow.cluster.lease");
  cfg.add_message_type<lease_grant>("shoutflow.cluster.lease_grant");
  cfg.add_message_type<cluster_view>("shoutflow.cluster.view");
  cfg.add_message_type<round_result>("shoutflow.cluster.round_result");
}

} // namespace shoutflow::cluster
