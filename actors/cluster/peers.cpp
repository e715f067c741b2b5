#include "actors/cluster/peers.hpp"

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>

#include <deque>
#include <map>

#include "actors/common/log.hpp"
#include "actors/entity/persistent_entity.hpp"

namespace shoutflow::cluster {

namespace {

constexpr const char* component = "peers";

// -- endpoint -----------------------------------------------------------------

struct endpoint_state {
  /// This node's keeper, once it runs (the endpoint is published first).
  caf::actor keeper;
  static inline const char* name = "endpoint";
};

caf::behavior endpoint(caf::stateful_actor<endpoint_state>* self,
                       endpoint_targets t) {
  return {
    [=](subscribe_atom, const caf::actor& keeper) {
      self->state.keeper = keeper;
    },
    [=](round_atom) {
      // Another node released leases: run a round now rather than at the
      // next tick, so hand-offs pause commands for less.
      if (self->state.keeper)
        caf::anon_send(self->state.keeper, wake_atom::value);
    },
    [=](cmd_atom a, std::string& id,
        std::string& bytes) -> caf::result<std::string> {
      if (!t.region)
        return entity::rejection_reply(v1::REJECTION_CODE_MOVED, "",
                                       "this node owns no shards");
      auto promise = self->make_response_promise<std::string>();
      promise.delegate(t.region, a, std::move(id), std::move(bytes));
      return promise;
    },
    [=](batch_atom a, std::string& bytes) {
      if (t.hub)
        self->send(t.hub, a, std::move(bytes));
    },
    [=](wake_atom a) {
      if (t.manager)
        self->send(t.manager, a);
    },
    [=](retry_atom a, std::string& projection, int32_t generation,
        std::string& key) -> caf::result<caf::message> {
      if (!t.manager)
        return caf::make_error(caf::sec::invalid_argument,
                               "this node runs no projections");
      auto promise = self->make_response_promise();
      promise.delegate(t.manager, a, std::move(projection), generation,
                       std::move(key));
      return promise;
    },
  };
}

// -- peers --------------------------------------------------------------------

/// Read-side messages kept for a member not connected (yet, or again): a
/// hub that misses one must tell its Watch streams to resubscribe, so they
/// wait here until the connection is up. Beyond this many the oldest go
/// (the hub then notices the gap).
constexpr std::size_t max_queued = 10000;

struct peer {
  member info;
  caf::actor handle;
  bool connecting = false;
  std::deque<std::string> queued;
};

struct peers_state {
  peers_config cfg;
  std::map<int32_t, peer> peers;
  std::vector<caf::actor> subscribers;
  std::vector<caf::actor> woken;
  static inline const char* name = "peers";
};

using pointer = peers_actor::stateful_pointer<peers_state>;

void push(pointer self) {
  std::vector<std::pair<int32_t, caf::actor>> out;
  for (auto& [id, p] : self->state.peers)
    if (p.handle)
      out.emplace_back(id, p.handle);
  for (auto& s : self->state.subscribers)
    caf::anon_send(s, peers_atom::value, out);
}

void connect(pointer self, int32_t node) {
  auto& p = self->state.peers[node];
  if (p.connecting || p.handle)
    return;
  p.connecting = true;
  auto incarnation = p.info.incarnation;
  auto host = p.info.host;
  auto port = static_cast<uint16_t>(p.info.caf_port);
  auto mm = self->system().middleman().actor_handle();
  self
    ->request(mm, self->state.cfg.connect_timeout, caf::connect_atom::value,
              host, port)
    .then(
      [=](const caf::node_id&, caf::strong_actor_ptr& ptr,
          const std::set<std::string>&) {
        auto it = self->state.peers.find(node);
        if (it == self->state.peers.end()
            || it->second.info.incarnation != incarnation) {
          return; // left, or restarted, meanwhile
        }
        it->second.connecting = false;
        if (!ptr) {
          log_warn(component, "node " + std::to_string(node)
                                + " published no endpoint at " + host + ":"
                                + std::to_string(port));
          return;
        }
        it->second.handle = caf::actor_cast<caf::actor>(ptr);
        self->monitor(it->second.handle);
        log_info(component, "connected to node " + std::to_string(node) + " at "
                              + host + ":" + std::to_string(port));
        for (auto& bytes : it->second.queued)
          caf::anon_send(it->second.handle, batch_atom::value,
                         std::move(bytes));
        it->second.queued.clear();
        push(self);
      },
      [=](caf::error& err) {
        auto it = self->state.peers.find(node);
        if (it != self->state.peers.end()
            && it->second.info.incarnation == incarnation)
          it->second.connecting = false;
        log_warn(component, "cannot connect to node " + std::to_string(node)
                              + " at " + host + ":" + std::to_string(port)
                              + ": " + self->system().render(err));
      });
}

void on_view(pointer self, const cluster_view& v) {
  auto& st = self->state;
  bool changed = false;
  std::map<int32_t, const member*> live;
  for (auto& m : v.members)
    if (m.node_id != st.cfg.self && m.state != member_state::down)
      live[m.node_id] = &m;
  for (auto it = st.peers.begin(); it != st.peers.end();) {
    auto l = live.find(it->first);
    if (l != live.end() && l->second->incarnation == it->second.info.incarnation
        && l->second->host == it->second.info.host
        && l->second->caf_port == it->second.info.caf_port) {
      it->second.info = *l->second;
      ++it;
      continue;
    }
    if (it->second.handle) {
      self->demonitor(it->second.handle);
      changed = true;
    }
    it = st.peers.erase(it);
  }
  for (auto& [id, m] : live) {
    auto [it, fresh] = st.peers.try_emplace(id);
    if (fresh)
      it->second.info = *m;
    if (!it->second.handle)
      connect(self, id);
  }
  if (changed)
    push(self);
}

peers_actor::behavior_type peers(pointer self, peers_config cfg) {
  self->state.cfg = std::move(cfg);
  self->set_down_handler([=](caf::down_msg& dm) {
    for (auto& [id, p] : self->state.peers)
      if (p.handle && p.handle.address() == dm.source) {
        log_warn(component, "lost the connection to node " + std::to_string(id)
                              + ": " + self->system().render(dm.reason));
        p.handle = nullptr;
        push(self);
        return;
      }
  });
  return {
    [=](view_atom, const cluster_view& v) { on_view(self, v); },
    [=](subscribe_atom, const caf::actor& who, bool wakes) {
      self->state.subscribers.push_back(who);
      if (wakes)
        self->state.woken.push_back(who);
      push(self);
    },
    [=](batch_atom a, const std::string& bytes) {
      auto& st = self->state;
      if (st.cfg.local_hub)
        caf::anon_send(st.cfg.local_hub, a, bytes);
      for (auto& [id, p] : st.peers) {
        if (!p.info.has_role("query"))
          continue;
        if (p.handle) {
          caf::anon_send(p.handle, a, bytes);
          continue;
        }
        p.queued.push_back(bytes);
        if (p.queued.size() > max_queued)
          p.queued.pop_front();
      }
    },
    [=](round_atom a) {
      for (auto& [id, p] : self->state.peers)
        if (p.handle)
          caf::anon_send(p.handle, a);
    },
    [=](wake_atom a) {
      for (auto& w : self->state.woken)
        caf::anon_send(w, a);
      for (auto& [id, p] : self->state.peers)
        if (p.handle && p.info.has_role("projections"))
          caf::anon_send(p.handle, a);
    },
  };
}

} // namespace

peers_actor spawn_peers(caf::actor_system& sys, peers_config cfg) {
  return sys.spawn(peers, std::move(cfg));
}

caf::actor spawn_endpoint(caf::actor_system& sys, endpoint_targets targets) {
  return sys.spawn(endpoint, std::move(targets));
}

} // namespace shoutflow::cluster
