#include "services/shoutflowctl/projection_lookup.hpp"

#include <set>

namespace shoutflow::ctl {

std::string known_projections(const v1::ProjectionStatus& status) {
  std::set<std::string> names;
  for (auto& g : status.projections())
    if (g.state() == "live")
      names.insert(g.projection());
  std::string out;
  for (auto& n : names)
    out += (out.empty() ? "" : ", ") + n;
  return out;
}

exit_code check_projection(const std::string& subcommand,
                           const v1::ProjectionStatus& status,
                           const std::string& name) {
  if (live_generation(status, name))
    return exit_code::ok;
  return fail(subcommand, exit_code::not_found,
              "unknown projection '" + name + "' (NAME: one of "
                + known_projections(status) + ")");
}

const v1::ProjectionGeneration*
find_generation(const v1::ProjectionStatus& status, const std::string& name,
                int32_t generation) {
  for (auto& g : status.projections())
    if (g.projection() == name && g.generation() == generation)
      return &g;
  return nullptr;
}

std::optional<int32_t> live_generation(const v1::ProjectionStatus& status,
                                       const std::string& name) {
  for (auto& g : status.projections())
    if (g.projection() == name && g.state() == "live")
      return g.generation();
  return std::nullopt;
}

} // namespace shoutflow::ctl
