#include "services/node/build_info.hpp"

#include <prometheus/gauge.h>

// Set by services/CMakeLists.txt at configure time.
#ifndef SHOUTFLOW_VERSION
#  define SHOUTFLOW_VERSION "unknown"
#endif
#ifndef SHOUTFLOW_GIT_COMMIT
#  define SHOUTFLOW_GIT_COMMIT "unknown"
#endif
#ifndef SHOUTFLOW_BUILD_TYPE
#  define SHOUTFLOW_BUILD_TYPE "unknown"
#endif

namespace shoutflow::node {

void register_build_info(prometheus::Registry& r) {
  prometheus::BuildGauge()
    .Name("shoutflow_build_info")
    .Help("The build of this node (always 1)")
    .Register(r)
    .Add({{"version", SHOUTFLOW_VERSION},
          {"git_commit", SHOUTFLOW_GIT_COMMIT},
          {"build_type", SHOUTFLOW_BUILD_TYPE}})
    .Set(1);
}

} // namespace shoutflow::node
