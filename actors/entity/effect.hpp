#pragma once

// The vocabulary between an aggregate's pure functions and the generic entity
// runtime (no CAF, libpqxx or gRPC here).
//
//   needs(state, command, known)   -> fact requests (may be empty)
//   decide(state, command, facts)  -> effect: a rejection, or events plus the
//                                     claims/releases/guards that must hold
//                                     in the same transaction
//   evolve(state, event)           -> state
//
// Facts are what an entity cannot know alone: who owns a claim (a handle, a
// user id, a shout id), and the results of slow password hashing. The runtime
// resolves them off the actor scheduler, then calls decide. Because facts may
// be stale by the time the events are written, every fact decide relies on is
// restated as a guard, claim or release; if the journal finds it no longer
// holds, the runtime resolves the facts again and decides again.
//
// needs() sees the facts resolved so far and is asked again until it wants
// nothing new, so an expensive fact can wait for a cheap one: registration
// asks for the handle's owner first and hashes the password only if the
// handle is free. Facts that depend on their request alone (is_stable) are
// kept across the attempts of one command: it hashes its password once.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "actors/journal/journal_types.hpp"
#include "shoutflow/v1/entity.pb.h"

namespace shoutflow::entity {

using journal::claim_op;

enum class fact_kind : uint8_t {
  /// a = namespace, b = key -> found, value = owner, detail = claim value
  claim_owner,
  /// a = password -> value = hash string (found = false if hashing failed)
  password_hash,
  /// a = password, b = stored hash -> found = matches
  password_verify,
};

/// Whether a fact follows from its request alone and so never goes stale
/// (a hash, a verification); claim owners change.
inline bool is_stable(fact_kind k) {
  return k != fact_kind::claim_owner;
}

struct fact_request {
  fact_kind kind = fact_kind::claim_owner;
  std::string a;
  std::string b;
  /// claim_owner only: the command takes this claim if it is free. On one
  /// node, one such command per key goes ahead at a time and the others
  /// wait until it has finished (fact_resolver.hpp), so a contended key is
  /// decided once instead of by every contender in parallel.
  bool exclusive = false;

  bool operator==(const fact_request& o) const {
    return kind == o.kind && a == o.a && b == o.b && exclusive == o.exclusive;
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, fact_request& x) {
  return f(x.kind, x.a, x.b, x.exclusive);
}

struct fact {
  fact_kind kind = fact_kind::claim_owner;
  bool found = false;
  std::string value;
  std::string detail = {};
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, fact& x) {
  return f(x.kind, x.found, x.value, x.detail);
}

/// Facts in the order of the requests that produced them.
using facts = std::vector<fact>;

template <class Event>
struct effect {
  std::optional<v1::Rejection> rejection;
  std::vector<Event> events;
  std::vector<claim_op> claims;
  std::vector<claim_op> releases;
  std::vector<claim_op> guards;

  bool rejected() const {
    return rejection.has_value();
  }
};

inline v1::Rejection make_rejection(v1::RejectionCode code, std::string field,
                                    std::string message) {
  v1::Rejection r;
  r.set_code(code);
  r.set_field(std::move(field));
  r.set_message(std::move(message));
  return r;
}

} // namespace shoutflow::entity
