#include "actors/entity/shard_region.hpp"

#include <caf/all.hpp>

#include <deque>
#include <list>
#include <unordered_map>

#include "actors/common/log.hpp"
#include "actors/entity/persistent_entity.hpp"
#include "actors/entity/sharding.hpp"

namespace shoutflow::entity {

namespace {

using clock_type = std::chrono::steady_clock;

struct entry {
  entity_actor actor;
  int32_t shard = 0;
  clock_type::time_point last_used;
  bool passivating = false;
  /// Valid while not passivating.
  std::list<std::string>::iterator lru;
  std::deque<std::pair<std::string, caf::typed_response_promise<std::string>>>
    buffered;
};

/// A shard this region serves, or is handing off.
struct shard_lease {
  int64_t epoch = 0;
  bool leaving = false;
  std::vector<caf::typed_response_promise<bool>> handed_off;
};

struct region_state {
  entity_factory factory;
  region_config cfg;
  entity_metrics* metrics = nullptr;
  std::unordered_map<std::string, entry> entries;
  std::unordered_map<caf::actor_addr, std::string> ids;
  /// Entities not passivating, most recently used first.
  std::list<std::string> lru;
  std::unordered_map<int32_t, shard_lease> shards;
  /// Entities alive per shard (a hand-off ends when it reaches zero).
  std::unordered_map<int32_t, std::size_t> alive;
  region_stats stats;
  static inline const char* name = "shard-region";
};

using pointer = region_actor::stateful_pointer<region_state>;

std::string moved(int32_t shard) {
  return rejection_reply(v1::REJECTION_CODE_MOVED, "",
                         "shard " + std::to_string(shard)
                           + " is not served by this node");
}

/// The shard's lease if it is being served (not leaving).
const shard_lease* serving(pointer self, int32_t shard) {
  auto it = self->state.shards.find(shard);
  return it == self->state.shards.end() || it->second.leaving ? nullptr
                                                              : &it->second;
}

void update_gauge(pointer self) {
  auto& st = self->state;
  st.stats.active = st.entries.size();
  if (st.metrics != nullptr)
    st.metrics->active.Set(static_cast<double>(st.entries.size()));
}

entry& start(pointer self, const std::string& id, entry& e, int64_t epoch) {
  auto& st = self->state;
  e.actor = st.factory(self->system(), id, e.shard, epoch);
  self->monitor(e.actor);
  st.ids[e.actor.address()] = id;
  ++st.alive[e.shard];
  st.lru.push_front(id);
  e.lru = st.lru.begin();
  e.passivating = false;
  e.last_used = clock_type::now();
  ++st.stats.spawned;
  if (st.metrics != nullptr)
    st.metrics->spawned.Increment();
  return e;
}

void passivate(pointer self, entry& e, bool handoff = false) {
  auto& st = self->state;
  if (e.passivating)
    return;
  e.passivating = true;
  st.lru.erase(e.lru);
  ++st.stats.passivating;
  if (handoff)
    self->send(e.actor, handoff_atom::value);
  else
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

/// A leaving shard whose last entity stopped is handed off.
void finish_handoff(pointer self, int32_t shard) {
  auto& st = self->state;
  auto it = st.shards.find(shard);
  if (it == st.shards.end() || !it->second.leaving || st.alive[shard] > 0)
    return;
  for (auto& p : it->second.handed_off)
    p.deliver(true);
  st.shards.erase(it);
  st.alive.erase(shard);
  log_debug("region", "shard " + std::to_string(shard) + " handed off");
}

void on_down(pointer self, caf::down_msg& dm) {
  auto& st = self->state;
  auto id_it = st.ids.find(dm.source);
  if (id_it == st.ids.end())
    return;
  auto id = std::move(id_it->second);
  st.ids.erase(id_it);
  auto& e = st.entries.at(id);
  auto shard = e.shard;
  --st.alive[shard];
  if (e.passivating) {
    --st.stats.passivating;
    ++st.stats.passivated;
    if (st.metrics != nullptr)
      st.metrics->passivated.Increment();
  } else {
    st.lru.erase(e.lru); // stopped on its own (a failed write)
  }
  auto* lease = serving(self, shard);
  if (e.buffered.empty() || lease == nullptr) {
    for (auto& [bytes, promise] : e.buffered)
      promise.deliver(moved(shard));
    st.entries.erase(id);
  } else {
    auto buffered = std::move(e.buffered);
    e.buffered.clear();
    start(self, id, e, lease->epoch);
    for (auto& [bytes, promise] : buffered)
      promise.delegate(e.actor, cmd_atom::value, std::move(bytes));
    enforce_cap(self);
  }
  finish_handoff(self, shard);
  update_gauge(self);
}

/// Every entity of `shard`, passivated (with a snapshot) or killed.
void stop_entities(pointer self, int32_t shard, bool kill) {
  auto& st = self->state;
  for (auto& [id, e] : st.entries) {
    if (e.shard != shard)
      continue;
    if (kill) {
      if (!e.passivating) {
        e.passivating = true;
        st.lru.erase(e.lru);
        ++st.stats.passivating;
      }
      self->send_exit(e.actor, caf::exit_reason::kill);
    } else {
      passivate(self, e, true);
    }
  }
}

} // namespace

region_actor::behavior_type region(pointer self, entity_factory factory,
                                   region_config cfg, entity_metrics* metrics) {
  auto& st = self->state;
  st.factory = std::move(factory);
  st.cfg = cfg;
  st.metrics = metrics;
  self->set_down_handler([=](caf::down_msg& dm) { on_down(self, dm); });
  // Entities are monitored, not linked (one failing must not take the
  // region down), so the region takes them along when it is told to exit.
  self->set_exit_handler([=](caf::exit_msg& msg) {
    for (auto& kv : self->state.entries)
      self->send_exit(kv.second.actor, msg.reason);
    self->quit(msg.reason);
  });
  auto tick = std::max<std::chrono::milliseconds>(std::chrono::milliseconds(10),
                                                  cfg.passivate_after / 4);
  self->delayed_send(self, tick, tick_atom::value);
  return {
    [=](cmd_atom, const std::string& id, std::string& bytes) {
      auto& st = self->state;
      auto promise = self->make_response_promise<std::string>();
      auto shard = static_cast<int32_t>(
        shard_of(id, std::max<uint32_t>(st.cfg.shards, 1)));
      auto* lease = serving(self, shard);
      if (lease == nullptr) {
        promise.deliver(moved(shard));
        return promise;
      }
      auto [it, fresh] = st.entries.try_emplace(id);
      auto& e = it->second;
      if (fresh) {
        e.shard = shard;
        start(self, id, e, lease->epoch);
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
    [=](grant_atom, const cluster::lease_grant& g) {
      auto& lease = self->state.shards[g.part];
      lease.epoch = g.epoch;
      lease.leaving = false;
    },
    [=](handoff_atom, const cluster::lease_grant& g) -> caf::result<bool> {
      auto& st = self->state;
      auto it = st.shards.find(g.part);
      if (it == st.shards.end() || it->second.epoch != g.epoch)
        return true;
      auto promise = self->make_response_promise<bool>();
      it->second.leaving = true;
      it->second.handed_off.push_back(promise);
      stop_entities(self, g.part, false);
      finish_handoff(self, g.part);
      return promise;
    },
    [=](revoke_atom, const cluster::lease_grant& g) {
      auto& st = self->state;
      auto it = st.shards.find(g.part);
      if (it == st.shards.end() || it->second.epoch != g.epoch)
        return;
      for (auto& p : it->second.handed_off)
        p.deliver(true);
      st.shards.erase(it);
      stop_entities(self, g.part, true);
    },
  };
}

region_actor spawn_shard_region(caf::actor_system& sys, entity_factory factory,
                                region_config cfg, entity_metrics* metrics) {
  return sys.spawn(region, std::move(factory), cfg, metrics);
}

} // namespace shoutflow::entity
