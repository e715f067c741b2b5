#include "services/common/request_intake.hpp"

#include <grpcpp/server_context.h>

#include <string>

#include "actors/entity/effect.hpp"
#include "services/common/lenient_proto.hpp"

namespace shoutflow::services {

user::rejection read_request(const grpc::ByteBuffer& in,
                             google::protobuf::Message* out) {
  std::string bytes;
  if (!buffer_bytes(in, &bytes) || !parse_lenient(bytes, out))
    return entity::make_rejection(v1::REJECTION_CODE_INVALID_ARGUMENT,
                                  "request",
                                  "request: not a valid "
                                    + out->GetDescriptor()->name());
  if (auto field = invalid_utf8_field(*out); !field.empty())
    return entity::make_rejection(v1::REJECTION_CODE_INVALID_ARGUMENT, field,
                                  field + ": must be valid UTF-8");
  return std::nullopt;
}

user::rejection fit_to_deadline(const grpc::ServerContextBase& call,
                                std::chrono::milliseconds* timeout) {
  auto deadline = call.deadline();
  if (deadline == std::chrono::system_clock::time_point::max())
    return std::nullopt;
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
    deadline - std::chrono::system_clock::now());
  if (left.count() <= 0)
    return entity::make_rejection(v1::REJECTION_CODE_DEADLINE_EXCEEDED, "",
                                  "deadline already passed");
  if (left < *timeout)
    *timeout = left;
  return std::nullopt;
}

} // namespace shoutflow::services
