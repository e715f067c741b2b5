#pragma once

// The user aggregate's state: everything decide() needs about one user, and
// nothing else. Built only by folding evolve() over events (live or replayed).

#include <cstdint>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace shoutflow::user {

struct user_state {
  bool registered = false;
  std::string user_id;
  std::string handle;
  std::string display_name;
  std::string email;
  std::string avatar_hash;
  std::string bio;
  std::string password_hash;
  int64_t registered_at_ms = 0;
  std::unordered_set<std::string> following;
  /// shout_id -> author_id of every shout this user currently likes.
  std::unordered_map<std::string, std::string> likes;
  /// Failed logins since the last success or lock, oldest first (bounded).
  std::vector<int64_t> failed_login_ms;
  int64_t locked_until_ms = 0;
};

bool operator==(const user_state& a, const user_state& b);
inline bool operator!=(const user_state& a, const user_state& b) {
  return !(a == b);
}

} // namespace shoutflow::user
