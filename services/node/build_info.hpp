#pragma once

// shoutflow_build_info{version, git_commit, build_type} 1 — the usual
// constant gauge: join it onto other series to see which build runs where
// (a rolling update shows two values side by side).

#include <prometheus/registry.h>

namespace shoutflow::node {

void register_build_info(prometheus::Registry& registry);

} // namespace shoutflow::node
