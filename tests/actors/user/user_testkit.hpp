#pragma once

// A test kit for the pure user domain, in the style of Akka's
// EventSourcedBehaviorTestKit: no database, no actors.
//
//   user_testkit kit{"alice"};
//   auto r = kit.run(register_user_cmd("c1", "alice", "alice"),
//                    {no_owner(), hashed("$argon2id$...")});
//   EXPECT_FALSE(r.rejected());  // and r.events, r.reply, r.state_after ...
//   kit.restart();               // recovered state must equal the live one
//
// run() is one turn of the entity runtime: needs(), then decide() with the
// facts the test supplies (claim owners, password hash and verify results —
// the pure seam where the runtime would do I/O), then evolve() over the
// events when the command was not rejected. Commands that append nothing and
// rejections leave the state untouched, exactly as in persistent_entity.hpp.
//
// The kit owns the environment (a manual_clock and a sequential id
// generator), so tests control time and shout ids. Global positions are
// simulated: each appended event advances a counter by `position_stride`, as
// if other entities wrote in between.

#include <gtest/gtest.h>

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "actors/common/clock.hpp"
#include "actors/common/id_generator.hpp"
#include "actors/entity/effect.hpp"
#include "actors/user/user_codec.hpp"
#include "actors/user/user_domain.hpp"
#include "actors/user/user_state.hpp"

namespace shoutflow::user {

/// Readable gtest output for state comparisons.
inline void PrintTo(const user_state& s, std::ostream* os) {
  std::vector<std::string> following(s.following.begin(), s.following.end());
  std::sort(following.begin(), following.end());
  std::vector<std::pair<std::string, std::string>> likes(s.likes.begin(),
                                                         s.likes.end());
  std::sort(likes.begin(), likes.end());
  *os << "{registered=" << s.registered << " user_id=" << s.user_id
      << " handle=" << s.handle << " display_name=" << s.display_name
      << " email=" << s.email << " avatar_hash=" << s.avatar_hash
      << " bio=" << s.bio << " password_hash=" << s.password_hash
      << " registered_at_ms=" << s.registered_at_ms << " following=[";
  for (auto& f : following)
    *os << f << ",";
  *os << "] likes=[";
  for (auto& [shout, author] : likes)
    *os << shout << ":" << author << ",";
  *os << "] failed_login_ms=[";
  for (auto t : s.failed_login_ms)
    *os << t << ",";
  *os << "] locked_until_ms=" << s.locked_until_ms << "}";
}

} // namespace shoutflow::user

namespace shoutflow::journal {

inline void PrintTo(const claim_op& c, std::ostream* os) {
  *os << "(" << c.ns << ", " << c.key << ", " << c.owner;
  if (!c.value.empty())
    *os << ", value " << c.value;
  *os << ")";
}

} // namespace shoutflow::journal

namespace shoutflow::entity {

inline void PrintTo(const fact_request& r, std::ostream* os) {
  static const char* names[] = {"claim_owner", "password_hash",
                                "password_verify"};
  *os << "{" << names[static_cast<int>(r.kind)] << ", " << r.a << ", " << r.b
      << (r.exclusive ? ", exclusive" : "") << "}";
}

} // namespace shoutflow::entity

namespace shoutflow::user::testkit {

using entity::fact;
using entity::fact_kind;
using entity::fact_request;
using journal::claim_op;

/// A fixed, readable start time: 2023-11-14T22:13:20Z.
inline constexpr int64_t start_ms = 1700000000000;
inline constexpr int64_t minute_ms = 60 * 1000;

// -- facts, as the fact resolver would answer them ---------------------------

inline fact owner(std::string who) {
  return {fact_kind::claim_owner, true, std::move(who)};
}
inline fact no_owner() {
  return {fact_kind::claim_owner, false, {}};
}
inline fact hashed(std::string hash) {
  return {fact_kind::password_hash, true, std::move(hash)};
}
inline fact hash_failed() {
  return {fact_kind::password_hash, false, {}};
}
inline fact verified(bool matches) {
  return {fact_kind::password_verify, matches, {}};
}

// -- commands ----------------------------------------------------------------

inline v1::UserCommand
register_user_cmd(const std::string& command_id, const std::string& user_id,
                  const std::string& handle,
                  const std::string& password = "correct horse") {
  v1::UserCommand c;
  auto* r = c.mutable_register_user();
  r->set_command_id(command_id);
  r->set_user_id(user_id);
  r->set_handle(handle);
  r->set_display_name("Display " + handle);
  r->set_email(user_id + "@example.com");
  r->set_avatar_hash("avatar-" + user_id);
  r->set_password(password);
  return c;
}

/// An UpdateProfile with no field set; callers set the ones they change.
inline v1::UserCommand update_profile_cmd(const std::string& command_id,
                                          const std::string& user_id) {
  v1::UserCommand c;
  auto* r = c.mutable_update_profile();
  r->set_command_id(command_id);
  r->set_user_id(user_id);
  return c;
}

inline v1::UserCommand follow_cmd(const std::string& command_id,
                                  const std::string& user_id,
                                  const std::string& target) {
  v1::UserCommand c;
  auto* r = c.mutable_follow();
  r->set_command_id(command_id);
  r->set_user_id(user_id);
  r->set_target_user_id(target);
  return c;
}

inline v1::UserCommand unfollow_cmd(const std::string& command_id,
                                    const std::string& user_id,
                                    const std::string& target) {
  v1::UserCommand c;
  auto* r = c.mutable_unfollow();
  r->set_command_id(command_id);
  r->set_user_id(user_id);
  r->set_target_user_id(target);
  return c;
}

inline v1::UserCommand
post_shout_cmd(const std::string& command_id, const std::string& user_id,
               const std::string& text, const std::string& reply_to = {}) {
  v1::UserCommand c;
  auto* r = c.mutable_post_shout();
  r->set_command_id(command_id);
  r->set_user_id(user_id);
  r->set_text(text);
  r->set_reply_to_shout_id(reply_to);
  return c;
}

inline v1::UserCommand delete_shout_cmd(const std::string& command_id,
                                        const std::string& user_id,
                                        const std::string& shout_id) {
  v1::UserCommand c;
  auto* r = c.mutable_delete_shout();
  r->set_command_id(command_id);
  r->set_user_id(user_id);
  r->set_shout_id(shout_id);
  return c;
}

inline v1::UserCommand like_shout_cmd(const std::string& command_id,
                                      const std::string& user_id,
                                      const std::string& shout_id) {
  v1::UserCommand c;
  auto* r = c.mutable_like_shout();
  r->set_command_id(command_id);
  r->set_user_id(user_id);
  r->set_shout_id(shout_id);
  return c;
}

inline v1::UserCommand unlike_shout_cmd(const std::string& command_id,
                                        const std::string& user_id,
                                        const std::string& shout_id) {
  v1::UserCommand c;
  auto* r = c.mutable_unlike_shout();
  r->set_command_id(command_id);
  r->set_user_id(user_id);
  r->set_shout_id(shout_id);
  return c;
}

inline v1::UserCommand login_cmd(const std::string& command_id,
                                 const std::string& user_id,
                                 const std::string& password) {
  v1::UserCommand c;
  auto* r = c.mutable_login();
  r->set_command_id(command_id);
  r->set_user_id(user_id);
  r->set_password(password);
  r->set_client_ip("192.0.2.7");
  r->set_user_agent("testkit/1.0");
  return c;
}

inline v1::UserCommand login_by_handle_cmd(const std::string& command_id,
                                           const std::string& handle,
                                           const std::string& password) {
  auto c = login_cmd(command_id, "x", password);
  c.mutable_login()->set_handle(handle); // replaces user_id in the oneof
  return c;
}

inline int64_t ms_of(const google::protobuf::Timestamp& t) {
  return google::protobuf::util::TimeUtil::TimestampToMilliseconds(t);
}

// -- the kit -----------------------------------------------------------------

/// Everything one command did, asserted together by tests.
struct run_result {
  std::vector<fact_request> needs;
  std::optional<v1::Rejection> rejection;
  std::vector<v1::UserEvent> events;
  std::vector<claim_op> claims;
  std::vector<claim_op> releases;
  std::vector<claim_op> guards;
  /// A rejection reply, or reply_for() of the appended events (none for a
  /// no-op), exactly as the entity runtime would answer.
  v1::EntityReply reply;
  user_state state_after;

  bool rejected() const {
    return rejection.has_value();
  }
  v1::RejectionCode code() const {
    return rejection ? rejection->code() : v1::REJECTION_CODE_UNSPECIFIED;
  }
  std::string field() const {
    return rejection ? rejection->field() : "";
  }
};

/// How restart() recovers the state.
enum class recovery {
  /// Fold the in-memory events from an empty state.
  in_memory,
  /// Fold events after an encode_event/decode_event round trip (the journal).
  through_codec,
  /// Decode a snapshot (encode_state) taken half-way through the history,
  /// then fold the rest of the events through the codec.
  through_snapshot,
};

class user_testkit {
public:
  /// Simulated global positions advance this much per event.
  static constexpr int64_t position_stride = 3;

  explicit user_testkit(std::string entity_id, user_policy policy = {})
    : id_(std::move(entity_id)), clock_(start_ms) {
    env_.clk = &clock_;
    env_.ids = &ids_;
    env_.policy = policy;
  }

  user_testkit(const user_testkit&) = delete;
  user_testkit& operator=(const user_testkit&) = delete;

  /// One command. By default the facts must answer needs() kind for kind (a
  /// test that supplies facts the domain did not ask for is a broken test);
  /// `check_facts = false` feeds decide() deliberately mismatched facts.
  /// needs() is asked as the runtime asks it: again with the answers so
  /// far (taken from `facts` in order) until it asks for nothing new.
  run_result run(const v1::UserCommand& command, entity::facts facts = {},
                 bool check_facts = true) {
    run_result out;
    entity::facts known;
    for (;;) {
      out.needs = needs(state_, command, known, env_);
      if (out.needs.size() <= known.size() || known.size() >= facts.size())
        break;
      known.push_back(facts[known.size()]);
    }
    if (check_facts) {
      std::vector<fact_kind> asked;
      std::vector<fact_kind> given;
      for (auto& r : out.needs)
        asked.push_back(r.kind);
      for (auto& f : facts)
        given.push_back(f.kind);
      EXPECT_EQ(asked, given) << "the test's facts do not answer needs() for "
                              << command.ShortDebugString();
    }
    auto eff = decide(state_, command, facts, env_);
    out.rejection = eff.rejection;
    out.events = eff.events;
    out.claims = eff.claims;
    out.releases = eff.releases;
    out.guards = eff.guards;
    if (eff.rejected()) {
      *out.reply.mutable_rejection() = *eff.rejection;
      EXPECT_TRUE(eff.events.empty()) << "a rejection carries no events";
    } else {
      for (auto& e : eff.events) {
        state_ = evolve(std::move(state_), e);
        events_.push_back(e);
        position_ += position_stride;
      }
      out.reply = reply_for(id_, eff.events, seq_nr(), position_);
    }
    out.state_after = state_;
    return out;
  }

  /// Recovers the state from the stored events alone, asserts that it equals
  /// the live state, and continues from the recovered state.
  user_state restart(recovery how = recovery::through_codec) {
    user_state recovered;
    std::size_t from = 0;
    if (how == recovery::through_snapshot) {
      from = events_.size() / 2;
      user_state half;
      for (std::size_t i = 0; i < from; ++i)
        half = evolve(std::move(half), events_[i]);
      auto decoded = decode_state(encode_state(half));
      EXPECT_TRUE(decoded.has_value()) << "snapshot did not decode";
      if (decoded) {
        EXPECT_EQ(*decoded, half) << "snapshot round trip changed the state";
        recovered = std::move(*decoded);
      }
    }
    for (std::size_t i = from; i < events_.size(); ++i) {
      if (how == recovery::in_memory) {
        recovered = evolve(std::move(recovered), events_[i]);
        continue;
      }
      auto enc = encode_event(events_[i]);
      auto dec = decode_event(enc.type, enc.version, enc.payload);
      EXPECT_TRUE(dec.has_value())
        << "event " << i << " (" << enc.type << ") did not decode";
      if (dec)
        recovered = evolve(std::move(recovered), *dec);
    }
    EXPECT_EQ(recovered, state_) << "recovered state differs from live state";
    state_ = recovered;
    return recovered;
  }

  const std::string& id() const {
    return id_;
  }
  const user_state& state() const {
    return state_;
  }
  const std::vector<v1::UserEvent>& events() const {
    return events_;
  }
  int64_t seq_nr() const {
    return static_cast<int64_t>(events_.size());
  }
  int64_t position() const {
    return position_;
  }
  manual_clock& clock() {
    return clock_;
  }
  int64_t now() const {
    return clock_.now_ms();
  }
  user_environment& env() {
    return env_;
  }

private:
  std::string id_;
  manual_clock clock_;
  sequential_id_generator ids_;
  user_environment env_;
  user_state state_;
  std::vector<v1::UserEvent> events_;
  int64_t position_ = 1000;
};

} // namespace shoutflow::user::testkit
