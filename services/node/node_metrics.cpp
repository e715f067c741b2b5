#include "services/node/node_metrics.hpp"

#include "actors/user/user_codec.hpp"
#include "services/node/build_info.hpp"

namespace shoutflow::node {

node_metrics::node_metrics()
  : registry(std::make_shared<prometheus::Registry>()),
    journal(*registry, user::event_types()),
    entity(*registry),
    command(*registry),
    query(*registry),
    in_flight(*registry),
    projections(*registry),
    cluster(*registry) {
  register_build_info(*registry);
}

} // namespace shoutflow::node
