#pragma once

// The single place where user events and user state are encoded to and
// decoded from their stored form (see protos/shoutflow/v1/events.proto for
// the on-disk format). Upcasters for future event versions go here.

#include <optional>
#include <string>
#include <vector>

#include "actors/user/user_state.hpp"
#include "shoutflow/v1/entity.pb.h"
#include "shoutflow/v1/events.pb.h"

namespace shoutflow::user {

struct encoded_event {
  std::string type;
  int version = 1;
  std::string payload;
};

constexpr int current_event_version = 1;
constexpr int current_state_version = 1;

encoded_event encode_event(const v1::UserEvent& event);

/// Every event type encode_event can name (the UserEvent oneof), for
/// metrics labelled by type.
std::vector<std::string> event_types();

/// Nothing for an unknown type, an unsupported version or a corrupt payload.
std::optional<v1::UserEvent> decode_event(const std::string& type, int version,
                                          const std::string& payload);

std::string encode_state(const user_state& state);
std::optional<user_state> decode_state(const std::string& bytes);

} // namespace shoutflow::user
