#pragma once

// CommandService (shared/API.md) on the gRPC callback API. Per request:
// validate (messages name the field), wrap the request in a v1::EntityCommand,
// ask the router with the client's deadline (bounded by request_timeout),
// map the reply once (services/common/grpc_status.hpp), record metrics. No
// business logic lives here.
//
// The CAF side is asked from a short-lived actor per request, so no gRPC
// thread ever blocks on the actor system.

#include <chrono>

#include <caf/actor_system.hpp>

#include "actors/entity/entity_actors.hpp"
#include "services/command/command_metrics.hpp"
#include "shoutflow/v1/commands.grpc.pb.h"
#include "shoutflow/v1/entity.pb.h"

namespace shoutflow::services {

struct command_service_config {
  /// Upper bound for one request inside the node; a client deadline can
  /// only shorten it.
  std::chrono::milliseconds request_timeout{std::chrono::seconds(5)};
};

class command_service final : public v1::CommandService::CallbackService {
public:
  command_service(caf::actor_system& sys, entity::router_actor router,
                  command_service_config cfg, command_metrics* metrics);

  grpc::ServerUnaryReactor* RegisterUser(grpc::CallbackServerContext* ctx,
                                         const v1::RegisterUserRequest* req,
                                         v1::CommandResult* resp) override;
  grpc::ServerUnaryReactor* UpdateProfile(grpc::CallbackServerContext* ctx,
                                          const v1::UpdateProfileRequest* req,
                                          v1::CommandResult* resp) override;
  grpc::ServerUnaryReactor* Follow(grpc::CallbackServerContext* ctx,
                                   const v1::FollowRequest* req,
                                   v1::CommandResult* resp) override;
  grpc::ServerUnaryReactor* Unfollow(grpc::CallbackServerContext* ctx,
                                     const v1::UnfollowRequest* req,
                                     v1::CommandResult* resp) override;
  grpc::ServerUnaryReactor* PostShout(grpc::CallbackServerContext* ctx,
                                      const v1::PostShoutRequest* req,
                                      v1::CommandResult* resp) override;
  grpc::ServerUnaryReactor* DeleteShout(grpc::CallbackServerContext* ctx,
                                        const v1::DeleteShoutRequest* req,
                                        v1::CommandResult* resp) override;
  grpc::ServerUnaryReactor* LikeShout(grpc::CallbackServerContext* ctx,
                                      const v1::LikeShoutRequest* req,
                                      v1::CommandResult* resp) override;
  grpc::ServerUnaryReactor* UnlikeShout(grpc::CallbackServerContext* ctx,
                                        const v1::UnlikeShoutRequest* req,
                                        v1::CommandResult* resp) override;
  grpc::ServerUnaryReactor* Login(grpc::CallbackServerContext* ctx,
                                  const v1::LoginRequest* req,
                                  v1::LoginResult* resp) override;

private:
  template <class Response>
  grpc::ServerUnaryReactor* dispatch(grpc::CallbackServerContext* ctx,
                                     const char* method,
                                     v1::EntityCommand command,
                                     Response* response);

  caf::actor_system& sys_;
  entity::router_actor router_;
  command_service_config cfg_;
  command_metrics* metrics_;
};

} // namespace shoutflow::services
