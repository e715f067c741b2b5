#include "actors/entity/shard_region.hpp"

#include <caf/all.hpp>

#include <deque>
#include <list>
#include <unordered_map>

namespace shoutflow::entity {

namespace {

using clock_type = std::chrono::steady_clock;

struct entry {
  entity_actor actor;
  clock_type::time_point last_used;
  bool passivating = false;
  /// Valid while not passivating.
  std::list<std::string>::iterator lru;
  std::deque<std::pair<std::string, caf::typed_response_promise<std::string>>>
    buffered;
};

struct region_state {
  entity_factory factory;
  region_config cfg;
  entity_metrics* metrics = nullptr;
  std::unordered_map<std::string, entry> entries;
  std::unordered_map<caf::actor_addr, std::string> ids;
  /// Entities not passivating, most recently used first.
  std::list<std::string> lru;
  region_stats stats;
  static inline const char* name = "shard-region";
};

using pointer = region_actor::stateful_pointer<region_state>;

void update_gauge(pointer self) {
  auto& st = self->state;
  st.stats.active = st.entries.size();
  if (st.metrics != nullptr)
    st.metrics->active.Set(static_cast<double>(st.entries.size()));
}

entry& start(pointer self, const std::string& id, entry& e) {
  auto& st = self->state;
  e.actor = st.factory(self->system(), id);
  self->monitor(e.actor);
  st.ids[e.actor.address()] = id;
  st.lru.push_front(id);
  e.lru = st.lru.begin();
  e.passivating = false;
  e.last_used = clock_type::now();
  ++st.stats.spawned;
  if (st.metrics != nullptr)
    st.metrics->spawned.Increment();
  return e;
}

void passivate(pointer self, entry& e) {
  auto& st = self->state;
  if (e.passivating)
    return;
  e.passivating = true;
  st.lru.erase(e.lru);
  ++st.stats.passivating;
  self->send(e.actor, passivate_atom::value);
}

void enforce_cap(pointer self) {
  auto& st = self->state;
  while (st.lru.size() > st.cfg.max_active)
    passivate(self, st.entries.at(st.lru.back()));
}

void passivate_idle(pointer self) {
  auto& st = self->state;
  auto cutoff = clock_type::now() - st.cfg.passivate_after;
  while (!st.lru.empty()) {
    auto& e = st.entries.at(st.lru.back());
    if (e.last_used > cutoff)
      break;
    passivate(self, e);
  }
}

} // namespace

region_actor::behavior_type region(pointer self, entity_factory factory,
                                   region_config cfg,
                                   entity_metrics* metrics) {
  auto& st = self->state;
  st.factory = std::move(factory);
  st.cfg = cfg;
  st.metrics = metrics;
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& st = self->state;
    auto id_it = st.ids.find(dm.source);
    if (id_it == st.ids.end())
      return;
    auto id = std::move(id_it->second);
    st.ids.erase(id_it);
    auto& e = st.entries.at(id);
    if (e.passivating) {
      --st.stats.passivating;
      ++st.stats.passivated;
      if (st.metrics != nullptr)
        st.metrics->passivated.Increment();
    } else {
      st.lru.erase(e.lru); // stopped on its own (a failed write)
    }
    if (e.buffered.empty()) {
      st.entries.erase(id);
    } else {
      auto buffered = std::move(e.buffered);
      e.buffered.clear();
      start(self, id, e);
      for (auto& [bytes, promise] : buffered)
        promise.delegate(e.actor, cmd_atom::value, std::move(bytes));
      enforce_cap(self);
    }
    update_gauge(self);
  });
  // Entities are monitored, not linked (one failing must not take the
  // region down), so the region takes them along when it is told to exit.
  self->set_exit_handler([=](caf::exit_msg& msg) {
    for (auto& kv : self->state.entries)
      self->send_exit(kv.second.actor, msg.reason);
    self->quit(msg.reason);
  });
  auto tick = std::max<std::chrono::milliseconds>(
    std::chrono::milliseconds(10), cfg.passivate_after / 4);
  self->delayed_send(self, tick, tick_atom::value);
  return {
    [=](cmd_atom, const std::string& id, std::string& bytes) {
      auto& st = self->state;
      auto promise = self->make_response_promise<std::string>();
      auto [it, fresh] = st.entries.try_emplace(id);
      auto& e = it->second;
      if (fresh) {
        start(self, id, e);
        update_gauge(self);
      }
      e.last_used = clock_type::now();
      if (e.passivating) {
        e.buffered.emplace_back(std::move(bytes), promise);
      } else {
        st.lru.splice(st.lru.begin(), st.lru, e.lru);
        promise.delegate(e.actor, cmd_atom::value, std::move(bytes));
      }
      if (fresh)
        enforce_cap(self);
      return promise;
    },
    [=](stats_atom) {
      update_gauge(self);
      return self->state.stats;
    },
    [=](passivate_atom, const std::string& id) {
      auto it = self->state.entries.find(id);
      if (it != self->state.entries.end())
        passivate(self, it->second);
    },
    [=](tick_atom) {
      passivate_idle(self);
      self->delayed_send(self, tick, tick_atom::value);
    },
  };
}

region_actor spawn_shard_region(caf::actor_system& sys, entity_factory factory,
                                region_config cfg, entity_metrics* metrics) {
  return sys.spawn(region, std::move(factory), cfg, metrics);
}

} // namespace shoutflow::entity
