#include "actors/entity/fact_resolver.hpp"

#include <caf/all.hpp>

namespace shoutflow::entity {

namespace {

using hasher_actor = caf::typed_actor<
  caf::replies_to<hash_atom, std::string>::with<fact>,
  caf::replies_to<verify_atom, std::string, std::string>::with<fact>>;

hasher_actor::behavior_type
hasher(hasher_actor::pointer, std::shared_ptr<const password_hasher> h) {
  return {
    [=](hash_atom, const std::string& password) {
      auto hashed = h->hash(password);
      return fact{fact_kind::password_hash, hashed.has_value(),
                  hashed.value_or("")};
    },
    [=](verify_atom, const std::string& password, const std::string& hash) {
      return fact{fact_kind::password_verify, h->verify(password, hash), {}};
    },
  };
}

struct resolver_state {
  journal::store_actor store;
  std::vector<hasher_actor> hashers;
  std::size_t next = 0;
  resolver_config cfg;
  static inline const char* name = "fact-resolver";
};

using resolver_pointer = resolver_actor::stateful_pointer<resolver_state>;

/// Collects the answers of one batch; delivers when all are in, or the first
/// error.
struct gather {
  caf::typed_response_promise<std::vector<fact>> promise;
  std::vector<fact> results;
  std::size_t remaining;

  void set(std::size_t i, fact f) {
    results[i] = std::move(f);
    if (--remaining == 0 && promise.pending())
      promise.deliver(std::move(results));
  }
  void fail(caf::error err) {
    if (promise.pending())
      promise.deliver(std::move(err));
  }
};

resolver_actor::behavior_type resolver(resolver_pointer self,
                                       journal::store_actor store,
                                       std::shared_ptr<const password_hasher> h,
                                       resolver_config cfg) {
  auto& st = self->state;
  st.store = std::move(store);
  for (std::size_t i = 0; i < std::max<std::size_t>(cfg.hashers, 1); ++i)
    st.hashers.push_back(self->spawn<caf::detached + caf::linked>(hasher, h));
  st.cfg = cfg;
  return {
    [=](facts_atom, std::vector<fact_request>& requests) {
      auto& st = self->state;
      auto g = std::make_shared<gather>();
      g->promise = self->make_response_promise<std::vector<fact>>();
      g->results.resize(requests.size());
      g->remaining = requests.size();
      if (requests.empty()) {
        g->promise.deliver(std::vector<fact>{});
        return g->promise;
      }
      auto on_error = [g](caf::error& err) { g->fail(std::move(err)); };
      for (std::size_t i = 0; i < requests.size(); ++i) {
        auto& r = requests[i];
        switch (r.kind) {
          case fact_kind::claim_owner:
            self->request(st.store, st.cfg.timeout, claim_atom::value, r.a, r.b)
              .then(
                [g, i](journal::claim_lookup& c) {
                  g->set(i, {fact_kind::claim_owner, c.found,
                             std::move(c.owner), std::move(c.value)});
                },
                on_error);
            break;
          case fact_kind::password_hash:
            self->request(st.hashers[st.next++ % st.hashers.size()],
                          st.cfg.timeout, hash_atom::value, r.a)
              .then([g, i](fact& f) { g->set(i, std::move(f)); }, on_error);
            break;
          case fact_kind::password_verify:
            self->request(st.hashers[st.next++ % st.hashers.size()],
                          st.cfg.timeout, verify_atom::value, r.a, r.b)
              .then([g, i](fact& f) { g->set(i, std::move(f)); }, on_error);
            break;
        }
      }
      return g->promise;
    },
  };
}

} // namespace

resolver_actor spawn_fact_resolver(caf::actor_system& sys,
                                   journal::store_actor store,
                                   std::shared_ptr<const password_hasher> hasher,
                                   resolver_config cfg) {
  return sys.spawn(resolver, std::move(store), std::move(hasher), cfg);
}

} // namespace shoutflow::entity
