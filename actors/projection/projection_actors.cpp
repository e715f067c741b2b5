#include "actors/projection/projection_actors.hpp"

#include <caf/actor_system_config.hpp>

#include "actors/projection/watch_hub.hpp"

namespace shoutflow::projection {

const char* to_string(generation_role role) {
  switch (role) {
    case generation_role::live:
      return "live";
    case generation_role::building:
      return "building";
    case generation_role::point_in_time:
      return "point-in-time";
  }
  return "unknown";
}

const char* generation_state(generation_role role) {
  return role == generation_role::live ? "live" : "building";
}

void add_message_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<cursor>("shoutflow.cursor");
  cfg.add_message_type<raw_event>("shoutflow.raw_event");
  cfg.add_message_type<change>("shoutflow.change");
  cfg.add_message_type<std::vector<change>>("std::vector<shoutflow.change>");
  cfg.add_message_type<keyed_ref>("shoutflow.keyed_ref");
  cfg.add_message_type<partition_batch>("shoutflow.partition_batch");
  cfg.add_message_type<partition_ack>("shoutflow.partition_ack");
  cfg.add_message_type<retry_result>("shoutflow.retry_result");
  cfg.add_message_type<fetch_result>("shoutflow.fetch_result");
  cfg.add_message_type<reader_status>("shoutflow.reader_status");
  cfg.add_message_type<std::vector<reader_status>>(
    "std::vector<shoutflow.reader_status>");
  cfg.add_message_type<subscription>("shoutflow.subscription");
}

} // namespace shoutflow::projection
