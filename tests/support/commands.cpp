#include "tests/support/commands.hpp"

namespace shoutflow::testing {

v1::RegisterUserRequest register_user_request(const std::string& command_id,
                                              const std::string& user_id,
                                              const std::string& handle,
                                              const std::string& display_name,
                                              const std::string& password) {
  auto r = command_request<v1::RegisterUserRequest>(command_id, user_id);
  r.set_handle(handle);
  r.set_display_name(display_name);
  r.set_email(user_id + "@example.com");
  r.set_password(password);
  return r;
}

v1::PostShoutRequest post_shout_request(const std::string& command_id,
                                        const std::string& user_id,
                                        const std::string& text) {
  auto r = command_request<v1::PostShoutRequest>(command_id, user_id);
  r.set_text(text);
  return r;
}

v1::UserCommand
register_user(const std::string& command_id, const std::string& user_id,
              const std::string& handle, const std::string& password) {
  v1::UserCommand c;
  *c.mutable_register_user() = register_user_request(
    command_id, user_id, handle, "User " + user_id, password);
  return c;
}

v1::UserCommand post_shout(const std::string& command_id,
                           const std::string& user_id,
                           const std::string& text) {
  v1::UserCommand c;
  *c.mutable_post_shout() = post_shout_request(command_id, user_id, text);
  return c;
}

v1::UserCommand follow(const std::string& command_id,
                       const std::string& user_id, const std::string& target) {
  v1::UserCommand c;
  *c.mutable_follow() = target_request<v1::FollowRequest>(command_id, user_id,
                                                          target);
  return c;
}

} // namespace shoutflow::testing
