#pragma once

// The read side's node-to-node messages (protos/shoutflow/v1/
// projection.proto) to and from the engine's C++ values: the one place
// they are encoded and decoded.

#include <optional>
#include <string>
#include <vector>

#include "actors/projection/projection.hpp"
#include "shoutflow/v1/projection.pb.h"

namespace shoutflow::projection {

v1::LogCursor to_proto(const cursor& c);
cursor from_proto(const v1::LogCursor& c);

v1::ReadModelChange to_proto(const change& c);
/// Fills `out` in place (on its arena, if it has one).
void to_proto(const change& c, v1::ReadModelChange* out);
/// Nothing for a change kind this version does not know.
std::optional<change> from_proto(const v1::ReadModelChange& c);

/// A serialized ReadSideMessage holding one ChangeBatch.
std::string
encode_batch(const std::string& projection, int32_t generation,
             int32_t partition_count, const std::vector<int32_t>& partitions,
             const cursor& after, const cursor& to,
             const std::vector<change>& changes, bool changes_lost = false);

/// A serialized ReadSideMessage holding one GenerationSwap.
std::string encode_swap(const std::string& projection, int32_t retired,
                        int32_t live,
                        const std::vector<cursor>& retired_offsets);

} // namespace shoutflow::projection
