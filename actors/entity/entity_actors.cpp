#include "actors/entity/entity_actors.hpp"

#include <caf/actor_system_config.hpp>

#include "actors/entity/persistent_entity.hpp"

namespace shoutflow::entity {

std::string rejection_reply(v1::RejectionCode code, std::string field,
                            std::string message) {
  v1::EntityReply reply;
  auto* r = reply.mutable_rejection();
  r->set_code(code);
  r->set_field(std::move(field));
  r->set_message(std::move(message));
  return reply.SerializeAsString();
}

std::string as_duplicate(const std::string& bytes) {
  v1::EntityReply reply;
  if (!reply.ParseFromString(bytes))
    return bytes;
  if (reply.has_result())
    reply.mutable_result()->set_duplicate(true);
  else if (reply.has_login())
    reply.mutable_login()->mutable_result()->set_duplicate(true);
  return reply.SerializeAsString();
}

void add_message_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<fact_request>("shoutflow.fact_request");
  cfg.add_message_type<std::vector<fact_request>>(
    "std::vector<shoutflow.fact_request>");
  cfg.add_message_type<fact>("shoutflow.fact");
  cfg.add_message_type<std::vector<fact>>("std::vector<shoutflow.fact>");
  cfg.add_message_type<region_stats>("shoutflow.region_stats");
}

} // namespace shoutflow::entity
