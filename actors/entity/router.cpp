#include "actors/entity/router.hpp"

#include <caf/all.hpp>

#include "actors/entity/persistent_entity.hpp"
#include "actors/entity/sharding.hpp"

namespace shoutflow::entity {

namespace {

struct router_state {
  router_config cfg;
  /// shard -> owning region
  std::vector<region_actor> owners;
  journal::store_actor store;
  static inline const char* name = "router";
};

using pointer = router_actor::stateful_pointer<router_state>;

const region_actor& owner_of(pointer self, const std::string& id) {
  auto& st = self->state;
  return st.owners[shard_of(id, static_cast<uint32_t>(st.owners.size()))];
}

router_actor::behavior_type router(pointer self, router_config cfg,
                                   region_actor local,
                                   journal::store_actor store) {
  auto& st = self->state;
  st.cfg = cfg;
  st.owners.assign(std::max<uint32_t>(cfg.shards, 1), local);
  st.store = std::move(store);
  return {
    [=](cmd_atom a, std::string& id, std::string& bytes) {
      return self->delegate(owner_of(self, id), a, std::move(id),
                            std::move(bytes));
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
            promise.delegate(owner_of(self, c.owner), cmd_atom::value, c.owner,
                             std::move(bytes));
          },
          [=](caf::error& err) mutable {
            promise.deliver(rejection_reply(
              v1::REJECTION_CODE_UNAVAILABLE, "",
              "could not resolve " + field + ": "
                + self->system().render(err)));
          });
      return promise;
    },
  };
}

} // namespace

router_actor spawn_router(caf::actor_system& sys, router_config cfg,
                          region_actor local, journal::store_actor store) {
  return sys.spawn(router, cfg, std::move(local), std::move(store));
}

} // namespace shoutflow::entity
