#pragma once

// CommandService (shared/API.md) on the gRPC callback API. Per request:
// validate (messages name the field), wrap the request in a v1::EntityCommand,
// ask the router with the client's deadline (bounded by request_timeout),
// map the reply once (services/common/grpc_status.hpp), record metrics. No
// business logic lives here.
//
// The CAF side is asked from the service's actor edge
// (services/common/actor_edge.hpp), so no gRPC thread ever blocks on the
// actor system.

#include <chrono>

#include <caf/actor_system.hpp>

#include "actors/entity/entity_actors.hpp"
#include "services/command/command_metrics.hpp"
#include "services/common/actor_edge.hpp"
#include "shoutflow/v1/commands.grpc.pb.h"
#include "shoutflow/v1/entity.pb.h"

namespace shoutflow::services {

struct command_service_config {
  /// Upper bound for one request inside the node; a client deadline can
  /// only shorten it.
  std::chrono::milliseconds request_timeout{std::chrono::seconds(5)};
  /// Long-lived actors that ask the router for the gRPC threads.
  std::size_t edge_actors = 4;
};

/// Every method takes raw bytes (see services/common/lenient_proto.hpp).
using command_service_base
  = v1::CommandService::WithRawCallbackMethod_RegisterUser<
    v1::CommandService::WithRawCallbackMethod_UpdateProfile<
      v1::CommandService::WithRawCallbackMethod_Follow<
        v1::CommandService::WithRawCallbackMethod_Unfollow<
          v1::CommandService::WithRawCallbackMethod_PostShout<
            v1::CommandService::WithRawCallbackMethod_DeleteShout<
              v1::CommandService::WithRawCallbackMethod_LikeShout<
                v1::CommandService::WithRawCallbackMethod_UnlikeShout<
                  v1::CommandService::WithRawCallbackMethod_Login<
                    v1::CommandService::Service>>>>>>>>>;

class command_service final : public command_service_base {
public:
  command_service(caf::actor_system& sys, entity::router_actor router,
                  command_service_config cfg, command_metrics* metrics);

  using raw = grpc::ServerUnaryReactor*;
  using ctx = grpc::CallbackServerContext;
  using buf = grpc::ByteBuffer;

  raw RegisterUser(ctx* c, const buf* req, buf* resp) override;
  raw UpdateProfile(ctx* c, const buf* req, buf* resp) override;
  raw Follow(ctx* c, const buf* req, buf* resp) override;
  raw Unfollow(ctx* c, const buf* req, buf* resp) override;
  raw PostShout(ctx* c, const buf* req, buf* resp) override;
  raw DeleteShout(ctx* c, const buf* req, buf* resp) override;
  raw LikeShout(ctx* c, const buf* req, buf* resp) override;
  raw UnlikeShout(ctx* c, const buf* req, buf* resp) override;
  raw Login(ctx* c, const buf* req, buf* resp) override;

private:
  /// `command` names the UserCommand oneof field the request fills.
  raw dispatch(ctx* c, const char* method, const char* command,
               const buf* request, buf* response);

  caf::actor_system& sys_;
  entity::router_actor router_;
  command_service_config cfg_;
  command_metrics* metrics_;
  actor_edge edge_;
};

} // namespace shoutflow::services
