#include "actors/user/user_domain.hpp"

#include <google/protobuf/util/time_util.h>

#include <algorithm>

#include "actors/common/text.hpp"
#include "actors/user/user_validation.hpp"

namespace shoutflow::user {

namespace {

using entity::fact;
using entity::fact_kind;
using entity::fact_request;
using entity::make_rejection;
using google::protobuf::Timestamp;
using google::protobuf::util::TimeUtil;

Timestamp timestamp(int64_t ms) {
  return TimeUtil::MillisecondsToTimestamp(ms);
}

user_effect reject(v1::RejectionCode code, std::string field,
                   std::string message) {
  user_effect e;
  e.rejection = make_rejection(code, std::move(field), std::move(message));
  return e;
}

user_effect not_registered(const std::string& field = "user_id") {
  return reject(v1::REJECTION_CODE_NOT_FOUND, field, field + ": no such user");
}

/// The first fact of `kind`; decide asks for at most one of each kind.
const fact* find_fact(const entity::facts& facts, fact_kind kind) {
  for (auto& f : facts)
    if (f.kind == kind)
      return &f;
  return nullptr;
}

user_effect missing_fact() {
  return reject(v1::REJECTION_CODE_INTERNAL, "",
                "internal: a fact needed to decide was not resolved");
}

user_effect with_event(v1::UserEvent event) {
  user_effect e;
  e.events.push_back(std::move(event));
  return e;
}

bool locked(const user_state& s, int64_t now) {
  return s.locked_until_ms > now;
}

// -- one decide function per command -----------------------------------------

user_effect
decide_register(const user_state& s, const v1::RegisterUserRequest& r,
                const entity::facts& facts, const user_environment& env) {
  if (s.registered)
    return reject(v1::REJECTION_CODE_ALREADY_EXISTS, "user_id",
                  "user_id: '" + r.user_id() + "' is already registered");
  auto* owner = find_fact(facts, fact_kind::claim_owner);
  if (owner == nullptr)
    return missing_fact();
  if (owner->found && owner->value != r.user_id())
    return reject(v1::REJECTION_CODE_ALREADY_EXISTS, "handle",
                  "handle: '" + r.handle() + "' is taken");
  auto* hash = find_fact(facts, fact_kind::password_hash);
  if (hash == nullptr)
    return missing_fact();
  if (!hash->found)
    return reject(v1::REJECTION_CODE_UNAVAILABLE, "password",
                  "password: hashing failed (out of memory); retry");
  v1::UserEvent ev;
  auto* e = ev.mutable_user_registered();
  e->set_user_id(r.user_id());
  e->set_handle(r.handle());
  e->set_display_name(r.display_name());
  e->set_email(r.email());
  e->set_avatar_hash(r.avatar_hash());
  e->set_password_hash(hash->value);
  *e->mutable_registered_at() = timestamp(env.clk->now_ms());
  auto eff = with_event(std::move(ev));
  eff.claims.push_back({user_claim, r.user_id(), r.user_id()});
  eff.claims.push_back({handle_claim, ascii_lower(r.handle()), r.user_id()});
  return eff;
}

user_effect decide_update(const user_state& s,
                          const v1::UpdateProfileRequest& r,
                          const user_environment& env) {
  if (!s.registered)
    return not_registered();
  v1::UserEvent ev;
  auto* e = ev.mutable_profile_updated();
  e->set_user_id(r.user_id());
  if (r.has_display_name() && r.display_name() != s.display_name)
    e->set_display_name(r.display_name());
  if (r.has_avatar_hash() && r.avatar_hash() != s.avatar_hash)
    e->set_avatar_hash(r.avatar_hash());
  if (r.has_bio() && r.bio() != s.bio)
    e->set_bio(r.bio());
  if (r.has_email() && r.email() != s.email)
    e->set_email(r.email());
  bool changed = e->has_display_name() || e->has_avatar_hash() || e->has_bio()
                 || e->has_email();
  if (!changed)
    return {}; // no-op success
  *e->mutable_updated_at() = timestamp(env.clk->now_ms());
  return with_event(std::move(ev));
}

user_effect decide_follow(const user_state& s, const v1::FollowRequest& r,
                          const entity::facts& facts,
                          const user_environment& env) {
  if (!s.registered)
    return not_registered();
  if (s.following.count(r.target_user_id()) > 0)
    return {}; // already following: no-op success
  auto* target = find_fact(facts, fact_kind::claim_owner);
  if (target == nullptr)
    return missing_fact();
  if (!target->found)
    return reject(v1::REJECTION_CODE_NOT_FOUND, "target_user_id",
                  "target_user_id: no such user '" + r.target_user_id() + "'");
  v1::UserEvent ev;
  auto* e = ev.mutable_user_followed();
  e->set_user_id(r.user_id());
  e->set_target_user_id(r.target_user_id());
  *e->mutable_followed_at() = timestamp(env.clk->now_ms());
  auto eff = with_event(std::move(ev));
  eff.guards.push_back({user_claim, r.target_user_id(), r.target_user_id()});
  return eff;
}

user_effect decide_unfollow(const user_state& s, const v1::UnfollowRequest& r,
                            const user_environment& env) {
  if (!s.registered)
    return not_registered();
  if (s.following.count(r.target_user_id()) == 0)
    return {}; // not following: no-op success
  v1::UserEvent ev;
  auto* e = ev.mutable_user_unfollowed();
  e->set_user_id(r.user_id());
  e->set_target_user_id(r.target_user_id());
  *e->mutable_unfollowed_at() = timestamp(env.clk->now_ms());
  return with_event(std::move(ev));
}

user_effect decide_post(const user_state& s, const v1::PostShoutRequest& r,
                        const entity::facts& facts,
                        const user_environment& env) {
  if (!s.registered)
    return not_registered();
  std::string reply_author;
  if (!r.reply_to_shout_id().empty()) {
    auto* parent = find_fact(facts, fact_kind::claim_owner);
    if (parent == nullptr)
      return missing_fact();
    if (!parent->found)
      return reject(v1::REJECTION_CODE_NOT_FOUND, "reply_to_shout_id",
                    "reply_to_shout_id: no such shout '" + r.reply_to_shout_id()
                      + "'");
    reply_author = parent->value;
  }
  v1::UserEvent ev;
  auto* e = ev.mutable_shout_posted();
  e->set_shout_id(env.ids->next_id());
  e->set_author_id(r.user_id());
  e->set_text(r.text());
  e->set_reply_to_shout_id(r.reply_to_shout_id());
  e->set_reply_to_author_id(reply_author);
  *e->mutable_posted_at() = timestamp(env.clk->now_ms());
  auto eff = with_event(ev);
  eff.claims.push_back(
    {shout_claim, e->shout_id(), r.user_id(), r.reply_to_shout_id()});
  if (!reply_author.empty())
    eff.guards.push_back({shout_claim, r.reply_to_shout_id(), reply_author});
  return eff;
}

user_effect decide_delete(const user_state& s, const v1::DeleteShoutRequest& r,
                          const entity::facts& facts,
                          const user_environment& env) {
  if (!s.registered)
    return not_registered();
  auto* shout = find_fact(facts, fact_kind::claim_owner);
  if (shout == nullptr)
    return missing_fact();
  if (!shout->found)
    return reject(v1::REJECTION_CODE_NOT_FOUND, "shout_id",
                  "shout_id: no such shout '" + r.shout_id() + "'");
  if (shout->value != r.user_id())
    return reject(v1::REJECTION_CODE_PERMISSION_DENIED, "shout_id",
                  "shout_id: only the author may delete shout '" + r.shout_id()
                    + "'");
  v1::UserEvent ev;
  auto* e = ev.mutable_shout_deleted();
  e->set_shout_id(r.shout_id());
  e->set_author_id(r.user_id());
  e->set_reply_to_shout_id(shout->detail);
  *e->mutable_deleted_at() = timestamp(env.clk->now_ms());
  auto eff = with_event(std::move(ev));
  eff.releases.push_back({shout_claim, r.shout_id(), r.user_id()});
  return eff;
}

user_effect decide_like(const user_state& s, const v1::LikeShoutRequest& r,
                        const entity::facts& facts,
                        const user_environment& env) {
  if (!s.registered)
    return not_registered();
  if (s.likes.count(r.shout_id()) > 0)
    return {}; // already liked: no-op success
  auto* shout = find_fact(facts, fact_kind::claim_owner);
  if (shout == nullptr)
    return missing_fact();
  if (!shout->found)
    return reject(v1::REJECTION_CODE_NOT_FOUND, "shout_id",
                  "shout_id: no such shout '" + r.shout_id() + "'");
  v1::UserEvent ev;
  auto* e = ev.mutable_shout_liked();
  e->set_user_id(r.user_id());
  e->set_shout_id(r.shout_id());
  e->set_author_id(shout->value);
  *e->mutable_liked_at() = timestamp(env.clk->now_ms());
  auto eff = with_event(std::move(ev));
  eff.guards.push_back({shout_claim, r.shout_id(), shout->value});
  return eff;
}

user_effect decide_unlike(const user_state& s, const v1::UnlikeShoutRequest& r,
                          const user_environment& env) {
  if (!s.registered)
    return not_registered();
  auto liked = s.likes.find(r.shout_id());
  if (liked == s.likes.end())
    return {}; // not liked: no-op success
  v1::UserEvent ev;
  auto* e = ev.mutable_shout_unliked();
  e->set_user_id(r.user_id());
  e->set_shout_id(r.shout_id());
  e->set_author_id(liked->second);
  *e->mutable_unliked_at() = timestamp(env.clk->now_ms());
  return with_event(std::move(ev));
}

user_effect decide_login(const user_state& s, const v1::LoginRequest& r,
                         const entity::facts& facts,
                         const user_environment& env) {
  auto by_handle = r.account_case() == v1::LoginRequest::kHandle;
  auto field = by_handle ? "handle" : "user_id";
  if (!s.registered
      || (by_handle && ascii_lower(r.handle()) != ascii_lower(s.handle)))
    return not_registered(field);
  auto now = env.clk->now_ms();
  v1::UserEvent ev;
  if (locked(s, now)) {
    auto* e = ev.mutable_login_failed();
    e->set_user_id(s.user_id);
    e->set_client_ip(r.client_ip());
    e->set_user_agent(r.user_agent());
    e->set_reason(v1::LOGIN_FAILURE_REASON_LOCKED);
    *e->mutable_locked_until() = timestamp(s.locked_until_ms);
    *e->mutable_failed_at() = timestamp(now);
    return with_event(std::move(ev));
  }
  auto* verified = find_fact(facts, fact_kind::password_verify);
  if (verified == nullptr) {
    // needs() saw the account locked and the lock ran out before decide():
    // the attempt arrived while locked, so it fails as locked.
    if (s.locked_until_ms > 0) {
      auto* e = ev.mutable_login_failed();
      e->set_user_id(s.user_id);
      e->set_client_ip(r.client_ip());
      e->set_user_agent(r.user_agent());
      e->set_reason(v1::LOGIN_FAILURE_REASON_LOCKED);
      *e->mutable_locked_until() = timestamp(s.locked_until_ms);
      *e->mutable_failed_at() = timestamp(now);
      return with_event(std::move(ev));
    }
    return missing_fact();
  }
  if (verified->found) {
    auto* e = ev.mutable_user_logged_in();
    e->set_user_id(s.user_id);
    e->set_client_ip(r.client_ip());
    e->set_user_agent(r.user_agent());
    *e->mutable_logged_in_at() = timestamp(now);
    return with_event(std::move(ev));
  }
  auto window_start = now - env.policy.failure_window_ms;
  auto recent = std::count_if(s.failed_login_ms.begin(),
                              s.failed_login_ms.end(),
                              [&](int64_t t) { return t >= window_start; });
  auto* e = ev.mutable_login_failed();
  e->set_user_id(s.user_id);
  e->set_client_ip(r.client_ip());
  e->set_user_agent(r.user_agent());
  e->set_reason(v1::LOGIN_FAILURE_REASON_WRONG_PASSWORD);
  if (recent + 1 >= env.policy.max_failed_logins)
    *e->mutable_locked_until() = timestamp(now + env.policy.lock_ms);
  *e->mutable_failed_at() = timestamp(now);
  return with_event(std::move(ev));
}

} // namespace

std::vector<fact_request>
needs(const user_state& s, const v1::UserCommand& command,
      const entity::facts& known, const user_environment& env) {
  auto claim = [](const char* ns, std::string key) {
    return std::vector<fact_request>{
      {fact_kind::claim_owner, ns, std::move(key)}};
  };
  switch (command.command_case()) {
    case v1::UserCommand::kRegisterUser: {
      auto& r = command.register_user();
      if (s.registered)
        return {};
      // The owner first: a taken handle is refused without hashing, and
      // contenders for one handle queue behind each other (exclusive).
      std::vector<fact_request> asked{
        {fact_kind::claim_owner, handle_claim, ascii_lower(r.handle()), true}};
      auto* owner = find_fact(known, fact_kind::claim_owner);
      if (owner == nullptr || (owner->found && owner->value != r.user_id()))
        return asked;
      asked.push_back({fact_kind::password_hash, r.password(), {}});
      return asked;
    }
    case v1::UserCommand::kFollow: {
      auto& r = command.follow();
      if (!s.registered || s.following.count(r.target_user_id()) > 0)
        return {};
      return claim(user_claim, r.target_user_id());
    }
    case v1::UserCommand::kPostShout: {
      auto& r = command.post_shout();
      if (!s.registered || r.reply_to_shout_id().empty())
        return {};
      return claim(shout_claim, r.reply_to_shout_id());
    }
    case v1::UserCommand::kDeleteShout:
      if (!s.registered)
        return {};
      return claim(shout_claim, command.delete_shout().shout_id());
    case v1::UserCommand::kLikeShout: {
      auto& r = command.like_shout();
      if (!s.registered || s.likes.count(r.shout_id()) > 0)
        return {};
      return claim(shout_claim, r.shout_id());
    }
    case v1::UserCommand::kLogin:
      if (!s.registered || locked(s, env.clk->now_ms()))
        return {};
      return {{fact_kind::password_verify, command.login().password(),
               s.password_hash}};
    default:
      return {};
  }
}

user_effect decide(const user_state& s, const v1::UserCommand& command,
                   const entity::facts& facts, const user_environment& env) {
  if (auto invalid = validate(command)) {
    user_effect e;
    e.rejection = std::move(invalid);
    return e;
  }
  switch (command.command_case()) {
    case v1::UserCommand::kRegisterUser:
      return decide_register(s, command.register_user(), facts, env);
    case v1::UserCommand::kUpdateProfile:
      return decide_update(s, command.update_profile(), env);
    case v1::UserCommand::kFollow:
      return decide_follow(s, command.follow(), facts, env);
    case v1::UserCommand::kUnfollow:
      return decide_unfollow(s, command.unfollow(), env);
    case v1::UserCommand::kPostShout:
      return decide_post(s, command.post_shout(), facts, env);
    case v1::UserCommand::kDeleteShout:
      return decide_delete(s, command.delete_shout(), facts, env);
    case v1::UserCommand::kLikeShout:
      return decide_like(s, command.like_shout(), facts, env);
    case v1::UserCommand::kUnlikeShout:
      return decide_unlike(s, command.unlike_shout(), env);
    case v1::UserCommand::kLogin:
      return decide_login(s, command.login(), facts, env);
    case v1::UserCommand::COMMAND_NOT_SET:
      break;
  }
  // validate() rejects COMMAND_NOT_SET, so this is unreachable.
  return reject(v1::REJECTION_CODE_INVALID_ARGUMENT, "command",
                "command: no command set");
}

user_state evolve(user_state s, const v1::UserEvent& event) {
  auto ms = [](const Timestamp& t) {
    return TimeUtil::TimestampToMilliseconds(t);
  };
  switch (event.event_case()) {
    case v1::UserEvent::kUserRegistered: {
      auto& e = event.user_registered();
      s.registered = true;
      s.user_id = e.user_id();
      s.handle = e.handle();
      s.display_name = e.display_name();
      s.email = e.email();
      s.avatar_hash = e.avatar_hash();
      s.password_hash = e.password_hash();
      s.registered_at_ms = ms(e.registered_at());
      break;
    }
    case v1::UserEvent::kProfileUpdated: {
      auto& e = event.profile_updated();
      if (e.has_display_name())
        s.display_name = e.display_name();
      if (e.has_avatar_hash())
        s.avatar_hash = e.avatar_hash();
      if (e.has_bio())
        s.bio = e.bio();
      if (e.has_email())
        s.email = e.email();
      break;
    }
    case v1::UserEvent::kUserFollowed:
      s.following.insert(event.user_followed().target_user_id());
      break;
    case v1::UserEvent::kUserUnfollowed:
      s.following.erase(event.user_unfollowed().target_user_id());
      break;
    case v1::UserEvent::kShoutLiked:
      s.likes[event.shout_liked().shout_id()] = event.shout_liked().author_id();
      break;
    case v1::UserEvent::kShoutUnliked:
      s.likes.erase(event.shout_unliked().shout_id());
      break;
    case v1::UserEvent::kUserLoggedIn:
      s.failed_login_ms.clear();
      s.locked_until_ms = 0;
      break;
    case v1::UserEvent::kLoginFailed: {
      auto& e = event.login_failed();
      if (e.reason() != v1::LOGIN_FAILURE_REASON_WRONG_PASSWORD)
        break;
      if (e.has_locked_until()) {
        // The lock starts a fresh count of failures.
        s.locked_until_ms = ms(e.locked_until());
        s.failed_login_ms.clear();
        break;
      }
      s.failed_login_ms.push_back(ms(e.failed_at()));
      if (s.failed_login_ms.size() > max_login_failures_limit)
        s.failed_login_ms.erase(s.failed_login_ms.begin());
      break;
    }
    case v1::UserEvent::kShoutPosted:
    case v1::UserEvent::kShoutDeleted:
    case v1::UserEvent::EVENT_NOT_SET:
      break;
  }
  return s;
}

v1::EntityReply reply_for(const std::string& user_id,
                          const std::vector<v1::UserEvent>& events,
                          int64_t seq_nr, int64_t position) {
  v1::CommandResult result;
  result.set_user_id(user_id);
  result.set_seq_nr(seq_nr);
  result.set_global_position(position);
  for (auto& e : events)
    if (e.has_shout_posted())
      result.set_shout_id(e.shout_posted().shout_id());
  v1::EntityReply reply;
  if (!events.empty() && events.back().has_user_logged_in()) {
    auto* login = reply.mutable_login();
    login->set_success(true);
    *login->mutable_result() = std::move(result);
  } else if (!events.empty() && events.back().has_login_failed()) {
    auto* login = reply.mutable_login();
    login->set_success(false);
    auto& failed = events.back().login_failed();
    if (failed.has_locked_until())
      *login->mutable_locked_until() = failed.locked_until();
    *login->mutable_result() = std::move(result);
  } else {
    *reply.mutable_result() = std::move(result);
  }
  return reply;
}

} // namespace shoutflow::user
