#include "services/common/grpc_status.hpp"

#include <caf/actor_system.hpp>
#include <caf/error.hpp>
#include <caf/sec.hpp>

#include <utility>

#include "actors/common/text.hpp"
#include "actors/entity/effect.hpp"
#include "services/common/status_code_name.hpp"

namespace shoutflow::services {

grpc::Status to_status(const v1::Rejection& r) {
  auto code = grpc::StatusCode::INTERNAL;
  switch (r.code()) {
    case v1::REJECTION_CODE_INVALID_ARGUMENT:
      code = grpc::StatusCode::INVALID_ARGUMENT;
      break;
    case v1::REJECTION_CODE_NOT_FOUND:
      code = grpc::StatusCode::NOT_FOUND;
      break;
    case v1::REJECTION_CODE_ALREADY_EXISTS:
      code = grpc::StatusCode::ALREADY_EXISTS;
      break;
    case v1::REJECTION_CODE_FAILED_PRECONDITION:
      code = grpc::StatusCode::FAILED_PRECONDITION;
      break;
    case v1::REJECTION_CODE_UNAUTHENTICATED:
      code = grpc::StatusCode::UNAUTHENTICATED;
      break;
    case v1::REJECTION_CODE_PERMISSION_DENIED:
      code = grpc::StatusCode::PERMISSION_DENIED;
      break;
    case v1::REJECTION_CODE_RESOURCE_EXHAUSTED:
      code = grpc::StatusCode::RESOURCE_EXHAUSTED;
      break;
    case v1::REJECTION_CODE_UNAVAILABLE:
    // The router retries a moved command until the deadline; one that is
    // still moved then had no owner to reach in time.
    case v1::REJECTION_CODE_MOVED:
      code = grpc::StatusCode::UNAVAILABLE;
      break;
    case v1::REJECTION_CODE_DEADLINE_EXCEEDED:
      code = grpc::StatusCode::DEADLINE_EXCEEDED;
      break;
    case v1::REJECTION_CODE_INTERNAL:
    case v1::REJECTION_CODE_UNSPECIFIED:
    default:
      code = grpc::StatusCode::INTERNAL;
      break;
  }
  return {code, r.message()};
}

grpc::Status cancelled(std::string why) {
  return {grpc::StatusCode::CANCELLED, std::move(why)};
}

v1::Rejection rejection_from(const caf::error& err, caf::actor_system& sys) {
  if (err == caf::sec::invalid_argument) {
    // Raised by our own actors for a request they refuse (the context
    // holds the reason, e.g. "unknown projection x").
    std::string why = "invalid argument";
    if (err.context().match_elements<std::string>())
      why = err.context().get_as<std::string>(0);
    return entity::make_rejection(v1::REJECTION_CODE_INVALID_ARGUMENT, "", why);
  }
  if (err == caf::sec::request_timeout)
    return entity::make_rejection(v1::REJECTION_CODE_DEADLINE_EXCEEDED, "",
                                  "deadline exceeded inside the node; the "
                                  "command may still apply: retry with the "
                                  "same command_id");
  return entity::make_rejection(v1::REJECTION_CODE_UNAVAILABLE, "",
                                "unavailable: " + sys.render(err)
                                  + "; retry with the same command_id");
}

std::string code_label(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::NOT_FOUND:
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
    case grpc::StatusCode::CANCELLED:
      return ascii_lower(status_code_name(code));
    default:
      return "internal";
  }
}

} // namespace shoutflow::services
