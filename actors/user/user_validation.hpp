#pragma once

// Input validation for user commands (shared/API.md identifiers and limits).
// Pure; used by the gRPC edge to fail fast and by decide() again, because a
// command may arrive from another node.
//
// Every rejection is INVALID_ARGUMENT and names the offending field.

#include <optional>
#include <string>

#include "shoutflow/v1/entity.pb.h"

namespace shoutflow::user {

constexpr std::size_t max_user_id = 64;
constexpr std::size_t max_handle = 15;
constexpr std::size_t max_command_id = 64;
constexpr std::size_t max_text = 280;        // code points
constexpr std::size_t max_display_name = 50; // code points
constexpr std::size_t max_bio = 160;         // code points
constexpr std::size_t max_email = 254;       // bytes
constexpr std::size_t max_avatar_hash = 128; // bytes
constexpr std::size_t min_password = 8;      // bytes, at registration
constexpr std::size_t max_password = 256;    // bytes
constexpr std::size_t max_client_ip = 45;    // bytes (IPv6 text form)
constexpr std::size_t max_user_agent = 512;  // bytes

using rejection = std::optional<v1::Rejection>;

rejection check_user_id(const std::string& field, const std::string& value);
rejection check_handle(const std::string& field, const std::string& value);
rejection check_command_id(const std::string& value);
rejection check_shout_id(const std::string& field, const std::string& value);

/// Validates a whole command (every field of its request).
rejection validate(const v1::UserCommand& command);

/// The user id a command addresses; empty for a login by handle.
std::string target_user_id(const v1::UserCommand& command);

/// The command's idempotency key (empty when none is set).
std::string command_id_of(const v1::UserCommand& command);

} // namespace shoutflow::user
