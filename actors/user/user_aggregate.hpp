#pragma once

// Binds the user domain to the generic entity runtime
// (actors/entity/persistent_entity.hpp lists the traits).

#include <optional>
#include <string>
#include <vector>

#include "actors/entity/effect.hpp"
#include "actors/user/user_codec.hpp"
#include "actors/user/user_domain.hpp"
#include "actors/user/user_state.hpp"
#include "actors/user/user_validation.hpp"

namespace shoutflow::user {

struct user_aggregate {
  using state_type = user_state;
  using command_type = v1::UserCommand;
  using event_type = v1::UserEvent;
  using environment = user_environment;

  static std::string persistence_id(const std::string& user_id) {
    return "user|" + user_id;
  }

  static const command_type& command_of(const v1::EntityCommand& envelope) {
    return envelope.user();
  }

  static std::string command_id(const command_type& c) {
    return command_id_of(c);
  }

  static std::vector<entity::fact_request>
  needs(const state_type& s, const command_type& c, const entity::facts& known,
        const environment& env) {
    return user::needs(s, c, known, env);
  }

  static user_effect decide(const state_type& s, const command_type& c,
                            const entity::facts& f, const environment& env) {
    return user::decide(s, c, f, env);
  }

  static state_type evolve(state_type s, const event_type& e) {
    return user::evolve(std::move(s), e);
  }

  static v1::EntityReply reply_for(const std::string& id,
                                   const std::vector<event_type>& events,
                                   int64_t seq_nr, int64_t position) {
    return user::reply_for(id, events, seq_nr, position);
  }

  static encoded_event encode_event(const event_type& e) {
    return user::encode_event(e);
  }

  static std::optional<event_type> decode_event(const std::string& type,
                                                int version,
                                                const std::string& payload) {
    return user::decode_event(type, version, payload);
  }

  static std::string encode_state(const state_type& s) {
    return user::encode_state(s);
  }

  static std::optional<state_type> decode_state(const std::string& bytes) {
    return user::decode_state(bytes);
  }
};

} // namespace shoutflow::user
