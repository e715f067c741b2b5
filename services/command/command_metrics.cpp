#include "services/command/command_metrics.hpp"

namespace shoutflow::services {

command_metrics::command_metrics(prometheus::Registry& r)
  : requests(r, "shoutflow_command", "CommandService",
             {"RegisterUser", "UpdateProfile", "Follow", "Unfollow",
              "PostShout", "DeleteShout", "LikeShout", "UnlikeShout",
              "Login"}) {
}

} // namespace shoutflow::services
