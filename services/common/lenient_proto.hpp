#pragma once

// Request parsing that lets our validators, not the protobuf runtime, judge
// string contents.
//
// protobuf 3.21 refuses to parse a proto3 `string` field holding invalid
// UTF-8, and gRPC's callback API answers such a request with a bare
// UNIMPLEMENTED — no field named, G5 broken. The services therefore take raw
// bytes (WithRawCallbackMethod_*) and parse them here: the wire format is
// read schema-less (UnknownFieldSet) and copied into the typed message
// through reflection, which does not check UTF-8. Everything else about the
// message is as protobuf would have it; unknown fields are dropped (forward
// compatibility), a wire-type mismatch fails the parse.

#include <google/protobuf/message.h>
#include <grpcpp/support/byte_buffer.h>

#include <string>

namespace shoutflow::services {

/// False only for bytes that are not protobuf wire format for `out`.
bool parse_lenient(const std::string& bytes, google::protobuf::Message* out);

/// The buffer's bytes (false if gRPC cannot read it).
bool buffer_bytes(const grpc::ByteBuffer& buffer, std::string* out);

grpc::ByteBuffer to_buffer(const google::protobuf::Message& message);

/// The path ("a.b") of the first string field of `m` that is not
/// well-formed UTF-8; empty when there is none. Validators that know a
/// field better check it themselves; this is the floor for every request.
std::string invalid_utf8_field(const google::protobuf::Message& m);

} // namespace shoutflow::services
