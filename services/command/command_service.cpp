#include "services/command/command_service.hpp"

#include <caf/all.hpp>

#include "actors/common/text.hpp"
#include "actors/user/user_domain.hpp"
#include "actors/user/user_validation.hpp"
#include "services/common/grpc_status.hpp"

namespace shoutflow::services {

namespace {

using clock_type = std::chrono::steady_clock;

/// Copies a successful reply into the response, or maps its rejection.
grpc::Status fill(const v1::EntityReply& reply, v1::CommandResult* out) {
  if (reply.has_rejection())
    return to_status(reply.rejection());
  if (!reply.has_result())
    return {grpc::StatusCode::INTERNAL, "internal: unexpected reply"};
  *out = reply.result();
  return grpc::Status::OK;
}

grpc::Status fill(const v1::EntityReply& reply, v1::LoginResult* out) {
  if (reply.has_rejection())
    return to_status(reply.rejection());
  if (!reply.has_login())
    return {grpc::StatusCode::INTERNAL, "internal: unexpected reply"};
  *out = reply.login();
  return grpc::Status::OK;
}

/// Client metadata value, or empty.
std::string metadata(grpc::CallbackServerContext* ctx, const char* key) {
  auto& md = ctx->client_metadata();
  auto it = md.find(key);
  if (it == md.end())
    return {};
  return std::string(it->second.data(), it->second.size());
}

} // namespace

command_service::command_service(caf::actor_system& sys,
                                 entity::router_actor router,
                                 command_service_config cfg,
                                 command_metrics* metrics)
  : sys_(sys), router_(std::move(router)), cfg_(cfg), metrics_(metrics) {
}

template <class Response>
grpc::ServerUnaryReactor*
command_service::dispatch(grpc::CallbackServerContext* ctx, const char* method,
                          v1::EntityCommand command, Response* response) {
  auto* reactor = ctx->DefaultReactor();
  auto started = clock_type::now();
  auto finish = [reactor, started, method,
                 metrics = metrics_](const grpc::Status& status) {
    if (metrics != nullptr)
      metrics->record(method, code_label(status.error_code()),
                      std::chrono::duration<double>(clock_type::now() - started)
                        .count());
    reactor->Finish(status);
  };
  if (auto invalid = user::validate(command.user())) {
    finish(to_status(*invalid));
    return reactor;
  }
  // The client's deadline, bounded by our own upper limit.
  auto timeout = cfg_.request_timeout;
  auto deadline = ctx->deadline();
  if (deadline != std::chrono::system_clock::time_point::max()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::system_clock::now());
    if (left.count() <= 0) {
      finish({grpc::StatusCode::DEADLINE_EXCEEDED, "deadline already passed"});
      return reactor;
    }
    timeout = std::min(timeout, left);
  }
  auto command_id = user::command_id_of(command.user());
  auto correlation = metadata(ctx, "x-correlation-id");
  command.set_correlation_id(correlation.empty() ? command_id : correlation);
  command.set_causation_id(command_id);
  auto user_id = user::target_user_id(command.user());
  command.set_entity_id(user_id);
  std::string handle;
  if (command.user().has_login() && command.user().login().has_handle())
    handle = ascii_lower(command.user().login().handle());
  auto bytes = command.SerializeAsString();
  auto on_reply = [finish, response](std::string& reply_bytes) {
    v1::EntityReply reply;
    if (!reply.ParseFromString(reply_bytes)) {
      finish({grpc::StatusCode::INTERNAL, "internal: malformed reply"});
      return;
    }
    finish(fill(reply, response));
  };
  auto* sys = &sys_;
  auto on_error = [finish, sys](caf::error& err) {
    finish(to_status(rejection_from(err, *sys)));
  };
  auto router = router_;
  sys_.spawn([=](caf::event_based_actor* self) {
    if (handle.empty())
      self->request(router, timeout, cmd_atom::value, user_id, bytes)
        .then(on_reply, on_error);
    else
      self
        ->request(router, timeout, alias_atom::value,
                  std::string{user::handle_claim}, handle,
                  std::string{"handle"}, bytes)
        .then(on_reply, on_error);
  });
  return reactor;
}

grpc::ServerUnaryReactor*
command_service::RegisterUser(grpc::CallbackServerContext* ctx,
                              const v1::RegisterUserRequest* req,
                              v1::CommandResult* resp) {
  v1::EntityCommand c;
  *c.mutable_user()->mutable_register_user() = *req;
  return dispatch(ctx, "RegisterUser", std::move(c), resp);
}

grpc::ServerUnaryReactor*
command_service::UpdateProfile(grpc::CallbackServerContext* ctx,
                               const v1::UpdateProfileRequest* req,
                               v1::CommandResult* resp) {
  v1::EntityCommand c;
  *c.mutable_user()->mutable_update_profile() = *req;
  return dispatch(ctx, "UpdateProfile", std::move(c), resp);
}

grpc::ServerUnaryReactor*
command_service::Follow(grpc::CallbackServerContext* ctx,
                        const v1::FollowRequest* req, v1::CommandResult* resp) {
  v1::EntityCommand c;
  *c.mutable_user()->mutable_follow() = *req;
  return dispatch(ctx, "Follow", std::move(c), resp);
}

grpc::ServerUnaryReactor*
command_service::Unfollow(grpc::CallbackServerContext* ctx,
                          const v1::UnfollowRequest* req,
                          v1::CommandResult* resp) {
  v1::EntityCommand c;
  *c.mutable_user()->mutable_unfollow() = *req;
  return dispatch(ctx, "Unfollow", std::move(c), resp);
}

grpc::ServerUnaryReactor*
command_service::PostShout(grpc::CallbackServerContext* ctx,
                           const v1::PostShoutRequest* req,
                           v1::CommandResult* resp) {
  v1::EntityCommand c;
  *c.mutable_user()->mutable_post_shout() = *req;
  return dispatch(ctx, "PostShout", std::move(c), resp);
}

grpc::ServerUnaryReactor*
command_service::DeleteShout(grpc::CallbackServerContext* ctx,
                             const v1::DeleteShoutRequest* req,
                             v1::CommandResult* resp) {
  v1::EntityCommand c;
  *c.mutable_user()->mutable_delete_shout() = *req;
  return dispatch(ctx, "DeleteShout", std::move(c), resp);
}

grpc::ServerUnaryReactor*
command_service::LikeShout(grpc::CallbackServerContext* ctx,
                           const v1::LikeShoutRequest* req,
                           v1::CommandResult* resp) {
  v1::EntityCommand c;
  *c.mutable_user()->mutable_like_shout() = *req;
  return dispatch(ctx, "LikeShout", std::move(c), resp);
}

grpc::ServerUnaryReactor*
command_service::UnlikeShout(grpc::CallbackServerContext* ctx,
                             const v1::UnlikeShoutRequest* req,
                             v1::CommandResult* resp) {
  v1::EntityCommand c;
  *c.mutable_user()->mutable_unlike_shout() = *req;
  return dispatch(ctx, "UnlikeShout", std::move(c), resp);
}

grpc::ServerUnaryReactor*
command_service::Login(grpc::CallbackServerContext* ctx,
                       const v1::LoginRequest* req, v1::LoginResult* resp) {
  v1::EntityCommand c;
  *c.mutable_user()->mutable_login() = *req;
  return dispatch(ctx, "Login", std::move(c), resp);
}

} // namespace shoutflow::services
