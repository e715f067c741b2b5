#pragma once

// What every gRPC request goes through before a service reads its content,
// in one place for the three services: its bytes parse as the request type
// (leniently, lenient_proto.hpp), no string field holds invalid UTF-8, and
// the client's deadline leaves time to work. A refusal is a rejection value
// like the validators' (G5), mapped to a status by `to_status`
// (grpc_status.hpp) with the rest.

#include <google/protobuf/message.h>
#include <grpcpp/support/byte_buffer.h>

#include <chrono>

#include "actors/user/user_validation.hpp"

namespace grpc {
class ServerContextBase;
} // namespace grpc

namespace shoutflow::services {

/// Parses `in` into `out`: INVALID_ARGUMENT naming `request` when the bytes
/// are not `out`'s type, or the first string field that is not valid UTF-8.
user::rejection read_request(const grpc::ByteBuffer& in,
                             google::protobuf::Message* out);

/// Cuts `*timeout`, the longest the service lets a call take, to the
/// client's time left when that is shorter. DEADLINE_EXCEEDED when the
/// client's deadline has passed already.
user::rejection fit_to_deadline(const grpc::ServerContextBase& call,
                                std::chrono::milliseconds* timeout);

} // namespace shoutflow::services
