#include "actors/user/user_validation.hpp"

#include <arpa/inet.h>

#include "actors/common/id_generator.hpp"
#include "actors/common/text.hpp"
#include "actors/entity/effect.hpp"

namespace shoutflow::user {

namespace {

using entity::make_rejection;

v1::Rejection invalid(const std::string& field, const std::string& why) {
  return make_rejection(v1::REJECTION_CODE_INVALID_ARGUMENT, field,
                        field + ": " + why);
}

bool all_of_charset(const std::string& s, bool allow_dash) {
  for (auto c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '_' || (allow_dash && c == '-');
    if (!ok)
      return false;
  }
  return true;
}

/// Valid UTF-8 of at most `max` code points (and at least `min`).
rejection check_text(const std::string& field, const std::string& value,
                     std::size_t min, std::size_t max) {
  auto n = utf8_length(value);
  if (!n)
    return invalid(field, "must be valid UTF-8");
  if (*n < min)
    return invalid(field, min == 1 ? "must not be empty"
                                   : "must have at least " + std::to_string(min)
                                       + " characters");
  if (*n > max)
    return invalid(field, "must be at most " + std::to_string(max)
                            + " characters (has " + std::to_string(*n) + ")");
  return std::nullopt;
}

/// Printable ASCII without spaces, at most `max` bytes.
rejection check_token(const std::string& field, const std::string& value,
                      std::size_t max) {
  if (value.size() > max)
    return invalid(field, "must be at most " + std::to_string(max) + " bytes");
  for (auto c : value)
    if (c <= 0x20 || c >= 0x7F)
      return invalid(field, "must be printable ASCII without spaces");
  return std::nullopt;
}

rejection check_email(const std::string& field, const std::string& value) {
  if (auto r = check_token(field, value, max_email))
    return r;
  auto at = value.find('@');
  if (at == std::string::npos || at == 0 || at + 1 >= value.size()
      || value.find('@', at + 1) != std::string::npos)
    return invalid(field, "must look like name@domain");
  return std::nullopt;
}

rejection check_password(const std::string& value, std::size_t min) {
  if (value.size() < min)
    return invalid("password",
                   "must have at least " + std::to_string(min) + " bytes");
  if (value.size() > max_password)
    return invalid("password", "must be at most " + std::to_string(max_password)
                                 + " bytes");
  if (!utf8_length(value))
    return invalid("password", "must be valid UTF-8");
  return std::nullopt;
}

rejection check_client_ip(const std::string& value) {
  if (value.empty())
    return std::nullopt;
  if (value.size() > max_client_ip)
    return invalid("client_ip", "must be an IPv4 or IPv6 address");
  unsigned char buf[16];
  if (inet_pton(AF_INET, value.c_str(), buf) == 1
      || inet_pton(AF_INET6, value.c_str(), buf) == 1)
    return std::nullopt;
  return invalid("client_ip", "must be an IPv4 or IPv6 address");
}

/// The first rejection among `checks`, evaluated in order.
template <class... Checks>
rejection first_of(Checks&&... checks) {
  rejection result;
  // Fold with short-circuit: stop at the first check that rejects.
  static_cast<void>(((result = checks()).has_value() || ...));
  return result;
}

template <class Request>
rejection check_common(const Request& req) {
  return first_of([&] { return check_command_id(req.command_id()); },
                  [&] { return check_user_id("user_id", req.user_id()); });
}

} // namespace

rejection check_user_id(const std::string& field, const std::string& value) {
  if (value.empty())
    return invalid(field, "must not be empty");
  if (value.size() > max_user_id)
    return invalid(field, "must be at most 64 characters");
  if (!all_of_charset(value, true))
    return invalid(field, "may contain only A-Z, a-z, 0-9, '_' and '-'");
  return std::nullopt;
}

rejection check_handle(const std::string& field, const std::string& value) {
  if (value.empty())
    return invalid(field, "must not be empty");
  if (value.size() > max_handle)
    return invalid(field, "must be at most 15 characters");
  if (!all_of_charset(value, false))
    return invalid(field, "may contain only A-Z, a-z, 0-9 and '_'");
  return std::nullopt;
}

rejection check_command_id(const std::string& value) {
  if (value.empty())
    return invalid("command_id", "is required (a client idempotency key)");
  if (value.size() > max_command_id)
    return invalid("command_id", "must be at most 64 characters");
  for (auto c : value)
    if (c < 0x20 || c >= 0x7F)
      return invalid("command_id", "must be printable ASCII");
  return std::nullopt;
}

rejection check_shout_id(const std::string& field, const std::string& value) {
  if (value.empty())
    return invalid(field, "must not be empty");
  if (!snowflake_generator::well_formed(value))
    return invalid(field, "is not a shout id (13 characters of Crockford "
                          "base32, as returned by PostShout)");
  return std::nullopt;
}

rejection validate(const v1::UserCommand& command) {
  switch (command.command_case()) {
    case v1::UserCommand::kRegisterUser: {
      auto& r = command.register_user();
      return first_of(
        [&] { return check_common(r); },
        [&] { return check_handle("handle", r.handle()); },
        [&] {
          return check_text("display_name", r.display_name(), 0,
                            max_display_name);
        },
        [&] {
          return r.email().empty() ? rejection{invalid("email", "is required")}
                                   : check_email("email", r.email());
        },
        [&] {
          return check_token("avatar_hash", r.avatar_hash(), max_avatar_hash);
        },
        [&] { return check_password(r.password(), min_password); });
    }
    case v1::UserCommand::kUpdateProfile: {
      auto& r = command.update_profile();
      return first_of(
        [&] { return check_common(r); },
        [&]() -> rejection {
          if (!r.has_display_name() && !r.has_avatar_hash() && !r.has_bio()
              && !r.has_email())
            return invalid("display_name",
                           "nothing to update: set at least one of "
                           "display_name, avatar_hash, bio, email");
          return std::nullopt;
        },
        [&] {
          return r.has_display_name()
                   ? check_text("display_name", r.display_name(), 0,
                                max_display_name)
                   : rejection{};
        },
        [&] {
          return r.has_avatar_hash()
                   ? check_token("avatar_hash", r.avatar_hash(),
                                 max_avatar_hash)
                   : rejection{};
        },
        [&] {
          return r.has_bio() ? check_text("bio", r.bio(), 0, max_bio)
                             : rejection{};
        },
        [&] {
          return r.has_email() ? check_email("email", r.email()) : rejection{};
        });
    }
    case v1::UserCommand::kFollow: {
      auto& r = command.follow();
      return first_of(
        [&] { return check_common(r); },
        [&] { return check_user_id("target_user_id", r.target_user_id()); },
        [&]() -> rejection {
          if (r.target_user_id() == r.user_id())
            return invalid("target_user_id", "a user cannot follow itself");
          return std::nullopt;
        });
    }
    case v1::UserCommand::kUnfollow: {
      auto& r = command.unfollow();
      return first_of(
        [&] { return check_common(r); },
        [&] { return check_user_id("target_user_id", r.target_user_id()); },
        [&]() -> rejection {
          if (r.target_user_id() == r.user_id())
            return invalid("target_user_id", "a user cannot unfollow itself");
          return std::nullopt;
        });
    }
    case v1::UserCommand::kPostShout: {
      auto& r = command.post_shout();
      return first_of([&] { return check_common(r); },
                      [&] { return check_text("text", r.text(), 1, max_text); },
                      [&] {
                        return r.reply_to_shout_id().empty()
                                 ? rejection{}
                                 : check_shout_id("reply_to_shout_id",
                                                  r.reply_to_shout_id());
                      });
    }
    case v1::UserCommand::kDeleteShout: {
      auto& r = command.delete_shout();
      return first_of([&] { return check_common(r); },
                      [&] { return check_shout_id("shout_id", r.shout_id()); });
    }
    case v1::UserCommand::kLikeShout: {
      auto& r = command.like_shout();
      return first_of([&] { return check_common(r); },
                      [&] { return check_shout_id("shout_id", r.shout_id()); });
    }
    case v1::UserCommand::kUnlikeShout: {
      auto& r = command.unlike_shout();
      return first_of([&] { return check_common(r); },
                      [&] { return check_shout_id("shout_id", r.shout_id()); });
    }
    case v1::UserCommand::kLogin: {
      auto& r = command.login();
      return first_of(
        [&] { return check_command_id(r.command_id()); },
        [&]() -> rejection {
          switch (r.account_case()) {
            case v1::LoginRequest::kUserId:
              return check_user_id("user_id", r.user_id());
            case v1::LoginRequest::kHandle:
              return check_handle("handle", r.handle());
            default:
              return invalid("user_id", "set user_id or handle");
          }
        },
        [&] { return check_password(r.password(), 1); },
        [&] { return check_client_ip(r.client_ip()); },
        [&]() -> rejection {
          if (r.user_agent().size() > max_user_agent)
            return invalid("user_agent", "must be at most "
                                           + std::to_string(max_user_agent)
                                           + " bytes");
          return check_text("user_agent", r.user_agent(), 0, max_user_agent);
        });
    }
    case v1::UserCommand::COMMAND_NOT_SET:
      break;
  }
  return invalid("command", "no command set");
}

namespace {

/// The string field `name` of the request set in the command's oneof (every
/// request has `command_id`; all but a login by handle have `user_id`).
std::string request_field(const v1::UserCommand& command, const char* name) {
  auto* oneof = command.GetDescriptor()->FindOneofByName("command");
  auto* set = command.GetReflection()->GetOneofFieldDescriptor(command, oneof);
  if (set == nullptr)
    return {};
  auto& request = command.GetReflection()->GetMessage(command, set);
  auto* field = request.GetDescriptor()->FindFieldByName(name);
  if (field == nullptr
      || field->type() != google::protobuf::FieldDescriptor::TYPE_STRING)
    return {};
  return request.GetReflection()->GetString(request, field);
}

} // namespace

std::string target_user_id(const v1::UserCommand& command) {
  return request_field(command, "user_id");
}

std::string command_id_of(const v1::UserCommand& command) {
  return request_field(command, "command_id");
}

} // namespace shoutflow::user
