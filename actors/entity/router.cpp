#include "actors/entity/router.hpp"

#include <caf/all.hpp>

#include <unordered_map>

#include "actors/entity/persistent_entity.hpp"
#include "actors/entity/sharding.hpp"

namespace shoutflow::entity {

namespace {

using clock_type = std::chrono::steady_clock;

struct routed_command {
  std::string id;
  std::string bytes;
  caf::typed_response_promise<std::string> promise;
  clock_type::time_point deadline;
  int32_t shard = 0;
};

struct router_state {
  router_config cfg;
  region_actor local;
  journal::store_actor store;
  /// shard -> node holding its lease (-1: none known).
  std::vector<int32_t> owners;
  std::unordered_map<int32_t, caf::actor> endpoints;
  std::unordered_map<uint64_t, routed_command> waiting;
  uint64_t next_waiting = 0;
  static inline const char* name = "router";
};

using pointer = router_actor::stateful_pointer<router_state>;

bool is_moved(const std::string& reply) {
  v1::EntityReply r;
  return r.ParseFromString(reply) && r.has_rejection()
         && r.rejection().code() == v1::REJECTION_CODE_MOVED;
}

void route(pointer self, routed_command cmd);

/// Routes `cmd` again after a pause (its shard is moving).
void park(pointer self, routed_command cmd, const std::string& why) {
  auto& st = self->state;
  if (clock_type::now() + st.cfg.retry_pause >= cmd.deadline) {
    cmd.promise.deliver(rejection_reply(
      v1::REJECTION_CODE_MOVED, "",
      "unavailable: shard " + std::to_string(cmd.shard) + " has no owner "
        + "that could take the command in time (" + why
        + "); retry with the same command_id"));
    return;
  }
  auto n = ++st.next_waiting;
  st.waiting.emplace(n, std::move(cmd));
  self->delayed_send(self, st.cfg.retry_pause, retry_atom::value, n);
}

template <class Handle>
void send_to(pointer self, const Handle& dest, caf::duration timeout,
             routed_command cmd) {
  auto promise = cmd.promise;
  self->request(dest, timeout, cmd_atom::value, cmd.id, cmd.bytes)
    .then(
      [=](std::string& reply) mutable {
        if (is_moved(reply))
          park(self, std::move(cmd), "it moved");
        else
          promise.deliver(std::move(reply));
      },
      [=](caf::error& err) mutable { promise.deliver(std::move(err)); });
}

void route(pointer self, routed_command cmd) {
  auto& st = self->state;
  auto owner = st.owners[static_cast<std::size_t>(cmd.shard)];
  if (owner == st.cfg.self && st.local) {
    // No timeout on the local hop: this node's entities answer every
    // command, and the caller's request carries the client's deadline.
    send_to(self, st.local, caf::infinite, std::move(cmd));
    return;
  }
  if (owner >= 0 && owner != st.cfg.self) {
    auto it = st.endpoints.find(owner);
    if (it != st.endpoints.end()) {
      send_to(self, it->second, caf::duration{st.cfg.hop_timeout},
              std::move(cmd));
      return;
    }
    park(self, std::move(cmd),
         "node " + std::to_string(owner) + " is not connected");
    return;
  }
  park(self, std::move(cmd), "no node holds its lease");
}

void start(pointer self, std::string id, std::string bytes,
           caf::typed_response_promise<std::string> promise) {
  auto& st = self->state;
  routed_command cmd;
  cmd.shard = static_cast<int32_t>(
    shard_of(id, static_cast<uint32_t>(st.owners.size())));
  cmd.id = std::move(id);
  cmd.bytes = std::move(bytes);
  cmd.promise = std::move(promise);
  cmd.deadline = clock_type::now() + st.cfg.route_timeout;
  route(self, std::move(cmd));
}

router_actor::behavior_type router(pointer self, router_config cfg,
                                   region_actor local,
                                   journal::store_actor store) {
  auto& st = self->state;
  st.cfg = cfg;
  st.owners.assign(std::max<uint32_t>(cfg.shards, 1), -1);
  st.local = std::move(local);
  st.store = std::move(store);
  return {
    [=](cmd_atom, std::string& id, std::string& bytes) {
      auto promise = self->make_response_promise<std::string>();
      start(self, std::move(id), std::move(bytes), promise);
      return promise;
    },
    [=](alias_atom, const std::string& ns, const std::string& key,
        const std::string& field, std::string& bytes) {
      auto promise = self->make_response_promise<std::string>();
      self
        ->request(self->state.store, self->state.cfg.lookup_timeout,
                  claim_atom::value, ns, key)
        .then(
          [=](journal::claim_lookup& c) mutable {
            if (!c.found) {
              promise.deliver(rejection_reply(
                v1::REJECTION_CODE_NOT_FOUND, field,
                field + ": no such " + field + " '" + key + "'"));
              return;
            }
            start(self, c.owner, std::move(bytes), promise);
          },
          [=](caf::error& err) mutable {
            promise.deliver(rejection_reply(v1::REJECTION_CODE_UNAVAILABLE, "",
                                            "could not resolve " + field + ": "
                                              + self->system().render(err)));
          });
      return promise;
    },
    [=](view_atom, const cluster::cluster_view& v) {
      auto& owners = self->state.owners;
      std::fill(owners.begin(), owners.end(), -1);
      for (auto& l : v.leases)
        if (l.valid && l.resource == cluster::shard_resource && l.part >= 0
            && static_cast<std::size_t>(l.part) < owners.size())
          owners[static_cast<std::size_t>(l.part)] = l.owner_node;
    },
    [=](peers_atom,
        const std::vector<std::pair<int32_t, caf::actor>>& endpoints) {
      auto& st = self->state;
      st.endpoints.clear();
      for (auto& [node, handle] : endpoints)
        st.endpoints[node] = handle;
    },
    [=](retry_atom, uint64_t n) {
      auto& st = self->state;
      auto it = st.waiting.find(n);
      if (it == st.waiting.end())
        return;
      auto cmd = std::move(it->second);
      st.waiting.erase(it);
      route(self, std::move(cmd));
    },
  };
}

} // namespace

router_actor spawn_router(caf::actor_system& sys, router_config cfg,
                          region_actor local, journal::store_actor store) {
  return sys.spawn(router, cfg, std::move(local), std::move(store));
}

} // namespace shoutflow::entity
