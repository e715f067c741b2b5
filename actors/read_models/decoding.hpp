#pragma once

// Decoding log events for the read models: the single decoding point
// (actors/user/user_codec) plus the exception the projection engine turns
// into a dead letter.

#include <google/protobuf/timestamp.pb.h>
#include <google/protobuf/util/time_util.h>

#include <stdexcept>
#include <string>

#include "actors/projection/projection.hpp"
#include "actors/user/user_codec.hpp"

namespace shoutflow::read_models {

inline v1::UserEvent decode_or_throw(const projection::raw_event& e) {
  auto decoded = user::decode_event(e.type, e.version, e.payload);
  if (!decoded)
    throw std::runtime_error("cannot decode event " + e.persistence_id + "#"
                             + std::to_string(e.seq_nr) + " (" + e.type + " v"
                             + std::to_string(e.version) + ")");
  return std::move(*decoded);
}

inline int64_t millis(const google::protobuf::Timestamp& t) {
  return google::protobuf::util::TimeUtil::TimestampToMilliseconds(t);
}

} // namespace shoutflow::read_models
