#pragma once

// AdminService (shared/API.md) for shoutflowctl and operators: cluster and
// shard map, projection status and lag, rebuilds, raw streams, dead letters.
//
// Low-traffic and operator-facing, so each call runs on a thread of its own
// (blocking SQL and waits on the projection manager are fine there; never on
// the CAF scheduler) and answers through the callback API.

#include <caf/actor_system.hpp>

#include <string>
#include <vector>

#include "actors/projection/manager.hpp"
#include "shoutflow/v1/admin.grpc.pb.h"

namespace shoutflow::services {

struct admin_node_info {
  std::string node_id;
  std::string address;
  std::vector<std::string> roles;
  uint32_t shards = 0;
};

/// The calls with string fields take raw bytes, parsed leniently
/// (services/common/lenient_proto.hpp), so invalid UTF-8 gets a named
/// INVALID_ARGUMENT instead of gRPC's bare UNIMPLEMENTED.
using admin_service_base = v1::AdminService::WithRawCallbackMethod_ReadStream<
  v1::AdminService::WithRawCallbackMethod_RebuildProjection<
    v1::AdminService::WithRawCallbackMethod_ListDeadLetters<
      v1::AdminService::CallbackService>>>;

class admin_service final : public admin_service_base {
public:
  /// `manager` may be invalid (no projections role on this node).
  admin_service(caf::actor_system& sys, std::string db_url,
                admin_node_info node, projection::manager_actor manager);

  using ctx = grpc::CallbackServerContext;
  using reactor = grpc::ServerUnaryReactor;
  using buf = grpc::ByteBuffer;

  reactor* GetClusterStatus(ctx* c, const v1::GetClusterStatusRequest* req,
                            v1::ClusterStatus* resp) override;
  reactor* GetProjectionStatus(ctx* c,
                               const v1::GetProjectionStatusRequest* req,
                               v1::ProjectionStatus* resp) override;
  reactor* RebuildProjection(ctx* c, const buf* req, buf* resp) override;
  reactor* ReadStream(ctx* c, const buf* req, buf* resp) override;
  reactor* ListDeadLetters(ctx* c, const buf* req, buf* resp) override;
  reactor* RetryDeadLetter(ctx* c, const v1::RetryDeadLetterRequest* req,
                           v1::RetryDeadLetterResponse* resp) override;

private:
  caf::actor_system& sys_;
  std::string db_url_;
  admin_node_info node_;
  projection::manager_actor manager_;
};

} // namespace shoutflow::services
