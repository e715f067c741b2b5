#pragma once

// The one place where ShoutFlow outcomes become gRPC statuses (G5).

#include <grpcpp/support/status.h>

#include <string>

#include "shoutflow/v1/entity.pb.h"

namespace caf {
class error;
class actor_system;
} // namespace caf

namespace shoutflow::services {

grpc::Status to_status(const v1::Rejection& rejection);

/// CANCELLED with `why`: the client ended the call. Nothing was refused,
/// so it is not a rejection.
grpc::Status cancelled(std::string why);

/// A failed request inside the node (timeout, actor gone, ...) as a
/// rejection: DEADLINE_EXCEEDED for timeouts, UNAVAILABLE otherwise.
v1::Rejection rejection_from(const caf::error& err, caf::actor_system& sys);

/// Lower-case gRPC code name for metrics labels ("ok", "not_found", ...):
/// status_code_name in lower case for the codes the services answer with,
/// "internal" for the others (UNKNOWN, ABORTED, DATA_LOSS, ...).
std::string code_label(grpc::StatusCode code);

} // namespace shoutflow::services
