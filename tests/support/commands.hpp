#pragma once

// Builders for the CommandService requests that the test support sends:
// over gRPC (the cluster load driver, the Watch probe) and, wrapped in the
// entity's v1::UserCommand, through an in-process node's router
// (test_node::send). What every request starts with (command_id, user_id)
// and what a test user registers with (email, password) are set here only,
// so that tests which log in or read a profile back can rely on them.

#include <string>

#include "shoutflow/v1/commands.pb.h"
#include "shoutflow/v1/entity.pb.h"

namespace shoutflow::testing {

/// The password every test user registers with.
inline constexpr char test_password[] = "correct horse";

/// A CommandService request with its command_id and user_id set; the
/// caller sets the rest.
template <class Request>
Request
command_request(const std::string& command_id, const std::string& user_id) {
  Request r;
  r.set_command_id(command_id);
  r.set_user_id(user_id);
  return r;
}

/// A request that names another user: Follow, Unfollow.
template <class Request>
Request target_request(const std::string& command_id,
                       const std::string& user_id,
                       const std::string& target_user_id) {
  auto r = command_request<Request>(command_id, user_id);
  r.set_target_user_id(target_user_id);
  return r;
}

/// A request that names a shout: LikeShout, UnlikeShout, DeleteShout.
template <class Request>
Request shout_request(const std::string& command_id, const std::string& user_id,
                      const std::string& shout_id) {
  auto r = command_request<Request>(command_id, user_id);
  r.set_shout_id(shout_id);
  return r;
}

/// Email `<user_id>@example.com`, no avatar.
v1::RegisterUserRequest
register_user_request(const std::string& command_id, const std::string& user_id,
                      const std::string& handle,
                      const std::string& display_name,
                      const std::string& password = test_password);

/// A top-level shout: for a reply, the caller sets reply_to_shout_id.
v1::PostShoutRequest post_shout_request(const std::string& command_id,
                                        const std::string& user_id,
                                        const std::string& text);

/// The same as entity commands, for test_node::send; a registration's
/// display name is "User <user_id>".
v1::UserCommand register_user(const std::string& command_id,
                              const std::string& user_id,
                              const std::string& handle,
                              const std::string& password = test_password);
v1::UserCommand post_shout(const std::string& command_id,
                           const std::string& user_id, const std::string& text);
v1::UserCommand follow(const std::string& command_id,
                       const std::string& user_id, const std::string& target);

} // namespace shoutflow::testing
