#pragma once

// QueryService (shared/API.md) on the gRPC callback API.
//
// Unary reads: parse leniently (services/common/lenient_proto.hpp), validate
// (the field is named), then — when the request carries `min_position` —
// wait until every read model the method reads has applied that position
// (G6): the position is resolved to its log cursor and this node's watch
// hub answers once every partition of each projection has committed past
// it, wherever those partitions run (watch_hub.hpp). The wait
// is bounded by the client's deadline and `max_wait`; past it the answer is
// DEADLINE_EXCEEDED. Then the query pool reads, in one statement (one
// snapshot), and finishes the RPC from its thread. A first page of a home
// timeline may be answered from memory instead (`pages`), when the watch
// hub has released every change up to the read's min_position (and, for a
// read without one, knows of no committed change it has not released).
//
// Watch: watch_session.hpp.

#include <caf/actor_system.hpp>

#include <chrono>
#include <cstddef>
#include <memory>

#include "actors/projection/watch_hub.hpp"
#include "services/query/query_metrics.hpp"
#include "services/query/query_workers.hpp"
#include "shoutflow/v1/queries.grpc.pb.h"

namespace shoutflow::services {

struct query_service_config {
  /// Upper bound for a read, including a min_position wait.
  std::chrono::milliseconds max_wait{std::chrono::seconds(5)};
  /// DocumentChanges a Watch stream may have unsent.
  std::size_t watch_buffer = 256;
  /// Optional; outlives the service.
  query_metrics* metrics = nullptr;
  /// First timeline pages answered from memory, kept exact by the watch hub
  /// (page_cache.hpp); null: every read goes to the pool.
  std::shared_ptr<projection::page_cache> pages;
};

using query_service_base = v1::QueryService::WithRawCallbackMethod_GetUser<
  v1::QueryService::WithRawCallbackMethod_GetShout<
    v1::QueryService::WithRawCallbackMethod_GetTimeline<
      v1::QueryService::WithRawCallbackMethod_GetUserShouts<
        v1::QueryService::WithRawCallbackMethod_ListFollowers<
          v1::QueryService::WithRawCallbackMethod_ListFollowing<
            v1::QueryService::WithRawCallbackMethod_GetLoginHistory<
              v1::QueryService::WithRawCallbackMethod_SearchUsers<
                v1::QueryService::WithRawCallbackMethod_Watch<
                  v1::QueryService::Service>>>>>>>>>;

class query_service final : public query_service_base {
public:
  /// `hub` (watch_hub.hpp) answers min_position waits and feeds Watch
  /// streams; without it both answer UNAVAILABLE.
  query_service(caf::actor_system& sys, std::shared_ptr<query_pool> pool,
                query_actor workers, projection::hub_actor hub,
                query_service_config cfg);

  using raw = grpc::ServerUnaryReactor*;
  using ctx = grpc::CallbackServerContext;
  using buf = grpc::ByteBuffer;

  raw GetUser(ctx* c, const buf* req, buf* resp) override;
  raw GetShout(ctx* c, const buf* req, buf* resp) override;
  raw GetTimeline(ctx* c, const buf* req, buf* resp) override;
  raw GetUserShouts(ctx* c, const buf* req, buf* resp) override;
  raw ListFollowers(ctx* c, const buf* req, buf* resp) override;
  raw ListFollowing(ctx* c, const buf* req, buf* resp) override;
  raw GetLoginHistory(ctx* c, const buf* req, buf* resp) override;
  raw SearchUsers(ctx* c, const buf* req, buf* resp) override;
  grpc::ServerWriteReactor<buf>* Watch(ctx* c, const buf* req) override;

private:
  raw dispatch(ctx* c, const char* method, const buf* request, buf* response);

  caf::actor_system& sys_;
  std::shared_ptr<query_pool> pool_;
  query_actor workers_;
  projection::hub_actor hub_;
  query_service_config cfg_;
};

} // namespace shoutflow::services
