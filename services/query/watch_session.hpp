#pragma once

// QueryService.Watch (shared/API.md): a session actor per stream subscribes
// to the watch hub, sends the current document of each subject, then one
// DocumentChange per change, in order per subject. The stream's outbox is
// bounded: a consumer that falls `watch_buffer` messages behind is ended
// with RESOURCE_EXHAUSTED, and a cancelled stream frees its actor and
// subscription. A stream whose hub can no longer vouch for every change (a
// partition owner died between a commit and its broadcast) ends with
// UNAVAILABLE: the client resubscribes.

#include <caf/actor_system.hpp>
#include <grpcpp/grpcpp.h>

#include <cstddef>

#include "actors/projection/watch_hub.hpp"
#include "services/query/query_metrics.hpp"
#include "services/query/query_workers.hpp"

namespace shoutflow::services {

/// Validates a WatchRequest (the field is named) and starts its stream.
/// `hub` may be invalid (the stream is refused UNAVAILABLE); `metrics` may
/// be null and outlives the stream.
grpc::ServerWriteReactor<grpc::ByteBuffer>*
start_watch(caf::actor_system& sys, query_actor workers,
            projection::hub_actor hub, std::size_t watch_buffer,
            query_metrics* metrics, const grpc::ByteBuffer* request);

} // namespace shoutflow::services
