#pragma once

// Looking up projections in a ProjectionStatus, shared by `projections`
// and `rebuild`: the names a node knows are those with a live generation.

#include <optional>
#include <string>

#include "services/shoutflowctl/cli.hpp"
#include "shoutflow/v1/admin.pb.h"

namespace shoutflow::ctl {

/// "shouts, timelines, users": the projections with a live generation.
std::string known_projections(const v1::ProjectionStatus& status);

/// OK when `name` has a live generation; else reports "unknown projection"
/// naming the argument and the known names, and returns not_found.
exit_code check_projection(const std::string& subcommand,
                           const v1::ProjectionStatus& status,
                           const std::string& name);

/// The generation `generation` of `name`, if listed (live or building).
const v1::ProjectionGeneration*
find_generation(const v1::ProjectionStatus& status, const std::string& name,
                int32_t generation);

/// The live generation's number, if there is one.
std::optional<int32_t> live_generation(const v1::ProjectionStatus& status,
                                       const std::string& name);

} // namespace shoutflow::ctl
