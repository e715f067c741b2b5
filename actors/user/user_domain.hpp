#pragma once

// The user aggregate's domain logic: pure functions, no I/O, no actors.
//
//   needs(state, command, known, env)   facts to resolve before deciding,
//                                       given those resolved so far
//   decide(state, command, facts, env)  -> rejection | events + claims
//   evolve(state, event)                -> state (total: never fails)
//   reply_for(user, events, seq, pos)   the reply a command's events imply
//
// Cross-entity facts and how they stay correct (docs/write-path.md):
//   * handle uniqueness: claim ("handle", lower(handle)) in the event's
//     transaction; a concurrent winner makes the write fail, and the retry
//     sees the handle taken -> ALREADY_EXISTS.
//   * follow target exists: guard ("user", target) — registration claims it.
//   * like / reply target exists and is not deleted, and its author: guard
//     ("shout", id, author) — posting claims it (its value: the shout it
//     replies to, so a deletion can name the parent), deleting releases it.
//   * only the author deletes: release ("shout", id, author) must match.

#include <cstdint>
#include <string>
#include <vector>

#include "actors/common/clock.hpp"
#include "actors/common/id_generator.hpp"
#include "actors/entity/effect.hpp"
#include "actors/user/user_state.hpp"
#include "shoutflow/v1/entity.pb.h"
#include "shoutflow/v1/events.pb.h"

namespace shoutflow::user {

/// Claim namespaces.
inline constexpr const char* user_claim = "user";
inline constexpr const char* handle_claim = "handle";
inline constexpr const char* shout_claim = "shout";

/// The most failed logins a user's state remembers, hence the largest
/// sensible `user_policy::max_failed_logins`.
inline constexpr std::size_t max_login_failures_limit = 64;

struct user_policy {
  /// Failed logins within `failure_window_ms` that lock the account.
  int max_failed_logins = 5;
  int64_t failure_window_ms = 15 * 60 * 1000;
  int64_t lock_ms = 15 * 60 * 1000;
};

/// What decide may consult besides state, command and facts: injected seams.
struct user_environment {
  const clock* clk = nullptr;
  id_generator* ids = nullptr;
  user_policy policy;
};

using user_effect = entity::effect<v1::UserEvent>;

/// Every fact decide() will need, in a stable order; asked again with the
/// answers so far (`known`, in request order) until it asks for nothing new.
std::vector<entity::fact_request>
needs(const user_state& state, const v1::UserCommand& command,
      const entity::facts& known, const user_environment& env);

user_effect decide(const user_state& state, const v1::UserCommand& command,
                   const entity::facts& facts, const user_environment& env);

user_state evolve(user_state state, const v1::UserEvent& event);

/// The reply for a command that appended `events` (none for a no-op),
/// leaving the user at `seq_nr` with its last event at `position`.
v1::EntityReply reply_for(const std::string& user_id,
                          const std::vector<v1::UserEvent>& events,
                          int64_t seq_nr, int64_t position);

} // namespace shoutflow::user
