#include "actors/entity/fact_resolver.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <deque>
#include <map>
#include <utility>

namespace shoutflow::entity {

namespace {

using hasher_actor = caf::typed_actor<
  caf::replies_to<hash_atom, std::string>::with<fact>,
  caf::replies_to<verify_atom, std::string, std::string>::with<fact>>;

hasher_actor::behavior_type hasher(hasher_actor::pointer,
                                   std::shared_ptr<const password_hasher> h,
                                   entity_metrics* metrics) {
  return {
    [=](hash_atom, const std::string& password) {
      if (metrics != nullptr)
        metrics->password_hashes.Increment();
      auto hashed = h->hash(password);
      return fact{fact_kind::password_hash, hashed.has_value(),
                  hashed.value_or("")};
    },
    [=](verify_atom, const std::string& password, const std::string& hash) {
      if (metrics != nullptr)
        metrics->password_verifies.Increment();
      return fact{fact_kind::password_verify, h->verify(password, hash), {}};
    },
  };
}

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

/// An exclusive claim lookup, answered once its key is this command's turn.
struct claim_turn {
  caf::actor_addr who;
  std::shared_ptr<gather> g;
  std::size_t index;
};

/// A key some command is about to claim: its holder, and the commands
/// waiting for their turn, in arrival order.
struct held_key {
  caf::actor_addr holder;
  std::deque<claim_turn> waiting;
};

using claim_key = std::pair<std::string, std::string>; // (namespace, key)

struct resolver_state {
  journal::store_actor store;
  std::vector<hasher_actor> hashers;
  std::size_t next = 0;
  resolver_config cfg;
  std::map<claim_key, held_key> held;
  static inline const char* name = "fact-resolver";
};

using resolver_pointer = resolver_actor::stateful_pointer<resolver_state>;

void lookup_claim(resolver_pointer self, const claim_key& key, claim_turn t);

/// `who` is done with the keys it holds (its command finished, or it is
/// gone): each passes to its next waiting command. Its own waiting turns
/// are dropped too (its request gave up).
void release_claims(resolver_pointer self, const caf::actor_addr& who) {
  auto& held = self->state.held;
  for (auto i = held.begin(); i != held.end();) {
    auto& h = i->second;
    h.waiting.erase(std::remove_if(h.waiting.begin(), h.waiting.end(),
                                   [&](auto& t) { return t.who == who; }),
                    h.waiting.end());
    if (h.holder != who) {
      ++i;
      continue;
    }
    if (h.waiting.empty()) {
      i = held.erase(i);
      continue;
    }
    auto next = std::move(h.waiting.front());
    h.waiting.pop_front();
    h.holder = next.who;
    lookup_claim(self, i->first, std::move(next));
    ++i;
  }
}

/// The owner of a claim. An exclusive lookup that finds the claim taken
/// lets the next command in at once: the key is no longer contended. (It
/// releases every key its command holds: a registration holds one.)
void lookup_claim(resolver_pointer self, const claim_key& key, claim_turn t) {
  auto& st = self->state;
  auto g = t.g;
  auto i = t.index;
  auto who = t.who;
  self
    ->request(st.store, st.cfg.timeout, claim_atom::value, key.first,
              key.second)
    .then(
      [=](journal::claim_lookup& c) {
        auto found = c.found;
        g->set(i, {fact_kind::claim_owner, c.found, std::move(c.owner),
                   std::move(c.value)});
        if (found && who) {
          auto h = self->state.held.find(key);
          if (h != self->state.held.end() && h->second.holder == who)
            release_claims(self, who);
        }
      },
      [=](caf::error& err) { g->fail(std::move(err)); });
}

/// An exclusive lookup: now if no other command holds the key, else once
/// the commands before it are done with it.
void take_turn(resolver_pointer self, const claim_key& key, claim_turn t) {
  auto& h = self->state.held[key];
  if (!h.holder || h.holder == t.who) {
    h.holder = t.who;
    self->monitor(t.who);
    lookup_claim(self, key, std::move(t));
    return;
  }
  if (auto* m = self->state.cfg.metrics)
    m->claim_waits.Increment();
  self->monitor(t.who);
  h.waiting.push_back(std::move(t));
}

resolver_actor::behavior_type
resolver(resolver_pointer self, journal::store_actor store,
         std::shared_ptr<const password_hasher> h, resolver_config cfg) {
  auto& st = self->state;
  st.store = std::move(store);
  for (std::size_t i = 0; i < std::max<std::size_t>(cfg.hashers, 1); ++i)
    st.hashers.push_back(
      self->spawn<caf::detached + caf::linked>(hasher, h, cfg.metrics));
  st.cfg = cfg;
  self->set_down_handler(
    [=](caf::down_msg& dm) { release_claims(self, dm.source); });
  return {
    [=](facts_atom, std::vector<fact_request>& requests) {
      auto& st = self->state;
      // Before make_response_promise, which takes the sender over.
      auto who = caf::actor_cast<caf::actor_addr>(self->current_sender());
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
            if (r.exclusive && who)
              take_turn(self, {r.a, r.b}, {who, g, i});
            else
              lookup_claim(self, {r.a, r.b}, {{}, g, i});
            break;
          case fact_kind::password_hash:
            self
              ->request(st.hashers[st.next++ % st.hashers.size()],
                        st.cfg.timeout, hash_atom::value, r.a)
              .then([g, i](fact& f) { g->set(i, std::move(f)); }, on_error);
            break;
          case fact_kind::password_verify:
            self
              ->request(st.hashers[st.next++ % st.hashers.size()],
                        st.cfg.timeout, verify_atom::value, r.a, r.b)
              .then([g, i](fact& f) { g->set(i, std::move(f)); }, on_error);
            break;
        }
      }
      return g->promise;
    },
    [=](release_atom) {
      release_claims(self,
                     caf::actor_cast<caf::actor_addr>(self->current_sender()));
    },
  };
}

} // namespace

resolver_actor
spawn_fact_resolver(caf::actor_system& sys, journal::store_actor store,
                    std::shared_ptr<const password_hasher> hasher,
                    resolver_config cfg) {
  return sys.spawn(resolver, std::move(store), std::move(hasher), cfg);
}

} // namespace shoutflow::entity
