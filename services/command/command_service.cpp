#include "services/command/command_service.hpp"

#include <caf/all.hpp>

#include <memory>
#include <utility>

#include "actors/common/log.hpp"
#include "actors/common/text.hpp"
#include "actors/entity/effect.hpp"
#include "actors/user/user_domain.hpp"
#include "actors/user/user_validation.hpp"
#include "services/common/grpc_status.hpp"
#include "services/common/lenient_proto.hpp"
#include "services/common/request_intake.hpp"

namespace shoutflow::services {

namespace {

using clock_type = std::chrono::steady_clock;

/// The response message a successful reply carries, or its rejection.
grpc::Status fill(const v1::EntityReply& reply, bool login,
                  grpc::ByteBuffer* out) {
  if (reply.has_rejection())
    return to_status(reply.rejection());
  if (login && reply.has_login())
    *out = to_buffer(reply.login());
  else if (!login && reply.has_result())
    *out = to_buffer(reply.result());
  else
    return to_status(entity::make_rejection(v1::REJECTION_CODE_INTERNAL, "",
                                            "internal: unexpected reply"));
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

/// Every refused command at debug level (business answers and transient
/// failures are the client's to handle), ours (INTERNAL, UNKNOWN) at warn.
void log_outcome(const char* method, const grpc::Status& status,
                 const std::string& correlation) {
  auto code = status.error_code();
  auto ours = code == grpc::StatusCode::INTERNAL
              || code == grpc::StatusCode::UNKNOWN
              || code == grpc::StatusCode::DATA_LOSS;
  auto level = ours ? log_level::warn : log_level::debug;
  if (!log_enabled(level))
    return;
  log(level, "command",
      std::string{method} + ": " + code_label(code) + " ("
        + status.error_message() + ")",
      correlation);
}

} // namespace

command_service::command_service(caf::actor_system& sys,
                                 entity::router_actor router,
                                 command_service_config cfg,
                                 command_metrics* metrics)
  : sys_(sys),
    router_(std::move(router)),
    cfg_(cfg),
    metrics_(metrics),
    edge_(sys, cfg.edge_actors) {
}

command_service::raw
command_service::dispatch(ctx* c, const char* method, const char* command_field,
                          const buf* request, buf* response) {
  auto* reactor = c->DefaultReactor();
  auto started = clock_type::now();
  // Set once the request is known valid, before it is sent anywhere.
  auto correlation_of_log = std::make_shared<std::string>();
  const auto* series = metrics_ != nullptr ? &metrics_->requests.method(method)
                                           : nullptr;
  auto finish = [reactor, started, method, series,
                 corr = correlation_of_log](const grpc::Status& status) {
    if (series != nullptr)
      series->record(
        status.error_code(),
        std::chrono::duration<double>(clock_type::now() - started).count());
    if (!status.ok())
      log_outcome(method, status, *corr);
    reactor->Finish(status);
  };
  v1::EntityCommand command;
  {
    auto* user = command.mutable_user();
    auto* field = user->GetDescriptor()->FindFieldByName(command_field);
    auto* typed = user->GetReflection()->MutableMessage(user, field);
    if (auto bad = read_request(*request, typed)) {
      finish(to_status(*bad));
      return reactor;
    }
  }
  if (auto invalid = user::validate(command.user())) {
    finish(to_status(*invalid));
    return reactor;
  }
  // The client's deadline, bounded by our own upper limit.
  auto timeout = cfg_.request_timeout;
  if (auto late = fit_to_deadline(*c, &timeout)) {
    finish(to_status(*late));
    return reactor;
  }
  auto command_id = user::command_id_of(command.user());
  auto correlation = metadata(c, "x-correlation-id");
  if (!correlation.empty() && user::check_command_id(correlation)) {
    finish(to_status(entity::make_rejection(
      v1::REJECTION_CODE_INVALID_ARGUMENT, "x-correlation-id",
      "x-correlation-id (metadata): must be 1-64 printable ASCII "
      "characters")));
    return reactor;
  }
  command.set_correlation_id(correlation.empty() ? command_id : correlation);
  command.set_causation_id(command_id);
  *correlation_of_log = command.correlation_id();
  auto user_id = user::target_user_id(command.user());
  command.set_entity_id(user_id);
  std::string handle;
  bool login = command.user().has_login();
  if (login && command.user().login().has_handle())
    handle = ascii_lower(command.user().login().handle());
  auto bytes = command.SerializeAsString();
  auto on_reply = [finish, response, login](std::string& reply_bytes) {
    v1::EntityReply reply;
    if (!reply.ParseFromString(reply_bytes)) {
      finish(to_status(entity::make_rejection(v1::REJECTION_CODE_INTERNAL, "",
                                              "internal: malformed reply")));
      return;
    }
    finish(fill(reply, login, response));
  };
  auto* sys = &sys_;
  auto on_error = [finish, sys](caf::error& err) {
    finish(to_status(rejection_from(err, *sys)));
  };
  // The reply and the deadline run in the same edge actor; the first one
  // ends the call. The request itself has no timeout (actor_edge.hpp).
  edge_.run(
    [=, router = router_](caf::event_based_actor* self, actor_edge::call call) {
      auto reply = [=](std::string& r) {
        if (call.finish())
          on_reply(r);
      };
      auto error = [=](caf::error& err) {
        if (call.finish())
          on_error(err);
      };
      if (handle.empty())
        self->request(router, caf::infinite, cmd_atom::value, user_id, bytes)
          .then(reply, error);
      else
        self
          ->request(router, caf::infinite, alias_atom::value,
                    std::string{user::handle_claim}, handle,
                    std::string{"handle"}, bytes)
          .then(reply, error);
    },
    clock_type::now() + timeout,
    [=](caf::event_based_actor*) {
      auto err = caf::make_error(caf::sec::request_timeout);
      on_error(err);
    });
  return reactor;
}

command_service::raw command_service::RegisterUser(ctx* c, const buf* req,
                                                   buf* resp) {
  return dispatch(c, "RegisterUser", "register_user", req, resp);
}

command_service::raw command_service::UpdateProfile(ctx* c, const buf* req,
                                                    buf* resp) {
  return dispatch(c, "UpdateProfile", "update_profile", req, resp);
}

command_service::raw command_service::Follow(ctx* c, const buf* req,
                                             buf* resp) {
  return dispatch(c, "Follow", "follow", req, resp);
}

command_service::raw command_service::Unfollow(ctx* c, const buf* req,
                                               buf* resp) {
  return dispatch(c, "Unfollow", "unfollow", req, resp);
}

command_service::raw command_service::PostShout(ctx* c, const buf* req,
                                                buf* resp) {
  return dispatch(c, "PostShout", "post_shout", req, resp);
}

command_service::raw command_service::DeleteShout(ctx* c, const buf* req,
                                                  buf* resp) {
  return dispatch(c, "DeleteShout", "delete_shout", req, resp);
}

command_service::raw command_service::LikeShout(ctx* c, const buf* req,
                                                buf* resp) {
  return dispatch(c, "LikeShout", "like_shout", req, resp);
}

command_service::raw command_service::UnlikeShout(ctx* c, const buf* req,
                                                  buf* resp) {
  return dispatch(c, "UnlikeShout", "unlike_shout", req, resp);
}

command_service::raw command_service::Login(ctx* c, const buf* req, buf* resp) {
  return dispatch(c, "Login", "login", req, resp);
}

} // namespace shoutflow::services
