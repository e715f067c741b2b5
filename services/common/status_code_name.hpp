#pragma once

// The names of gRPC status codes, as people and scripts read them: the
// upper-snake names of grpc::StatusCode ("UNAVAILABLE"), the ones the gRPC
// documentation and other gRPC implementations print. shoutflow-bench's
// reports (the keys of errors_by_code, which scripts/bench copies into
// docs/benchmarks.md), shoutflowctl's error lines and the test harness's
// messages all take them from here, so a status reads the same in each;
// the metrics labels (grpc_status.hpp, code_label) are them in lower case.
//
// Not in grpc_status.hpp: naming a code chooses no status, and
// shoutflow-bench, a client, links this file pair with gRPC alone, without
// the node's CAF and PostgreSQL stack that grpc_status.cpp needs.

#include <grpcpp/support/status_code_enum.h>

#include <string>

namespace shoutflow::services {

/// "UNAVAILABLE" for grpc::StatusCode::UNAVAILABLE. A code gRPC does not
/// define is named by its number, "CODE_42", so a report key never reads as
/// a bare count.
std::string status_code_name(grpc::StatusCode code);

} // namespace shoutflow::services
