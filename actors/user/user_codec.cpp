#include "actors/user/user_codec.hpp"

#include <algorithm>

namespace shoutflow::user {

namespace {

using google::protobuf::FieldDescriptor;

const google::protobuf::OneofDescriptor& event_oneof() {
  static auto* oneof = v1::UserEvent::descriptor()->FindOneofByName("event");
  return *oneof;
}

/// The UserEvent field whose message type is named `type`, if any.
const FieldDescriptor* field_for_type(const std::string& type) {
  auto& oneof = event_oneof();
  for (int i = 0; i < oneof.field_count(); ++i)
    if (oneof.field(i)->message_type()->name() == type)
      return oneof.field(i);
  return nullptr;
}

} // namespace

std::vector<std::string> event_types() {
  std::vector<std::string> out;
  auto& oneof = event_oneof();
  for (int i = 0; i < oneof.field_count(); ++i)
    out.push_back(oneof.field(i)->message_type()->name());
  return out;
}

encoded_event encode_event(const v1::UserEvent& event) {
  auto* refl = event.GetReflection();
  auto* field = refl->GetOneofFieldDescriptor(event, &event_oneof());
  // An empty event is a programming error in decide(), never input.
  if (field == nullptr)
    return {"", current_event_version, {}};
  auto& msg = refl->GetMessage(event, field);
  return {msg.GetDescriptor()->name(), current_event_version,
          msg.SerializeAsString()};
}

std::optional<v1::UserEvent> decode_event(const std::string& type, int version,
                                          const std::string& payload) {
  if (version != current_event_version)
    return std::nullopt;
  auto* field = field_for_type(type);
  if (field == nullptr)
    return std::nullopt;
  v1::UserEvent event;
  auto* msg = event.GetReflection()->MutableMessage(&event, field);
  if (!msg->ParseFromString(payload))
    return std::nullopt;
  return event;
}

std::string encode_state(const user_state& s) {
  v1::UserState out;
  out.set_registered(s.registered);
  out.set_user_id(s.user_id);
  out.set_handle(s.handle);
  out.set_display_name(s.display_name);
  out.set_email(s.email);
  out.set_avatar_hash(s.avatar_hash);
  out.set_bio(s.bio);
  out.set_password_hash(s.password_hash);
  out.set_registered_at_ms(s.registered_at_ms);
  // Sorted, so equal states encode to equal bytes.
  std::vector<std::string> following(s.following.begin(), s.following.end());
  std::sort(following.begin(), following.end());
  for (auto& f : following)
    out.add_following(f);
  std::vector<std::pair<std::string, std::string>> likes(s.likes.begin(),
                                                         s.likes.end());
  std::sort(likes.begin(), likes.end());
  for (auto& [shout, author] : likes) {
    auto* like = out.add_likes();
    like->set_shout_id(shout);
    like->set_author_id(author);
  }
  for (auto t : s.failed_login_ms)
    out.add_failed_login_ms(t);
  out.set_locked_until_ms(s.locked_until_ms);
  return out.SerializeAsString();
}

std::optional<user_state> decode_state(const std::string& bytes) {
  v1::UserState in;
  if (!in.ParseFromString(bytes))
    return std::nullopt;
  user_state s;
  s.registered = in.registered();
  s.user_id = in.user_id();
  s.handle = in.handle();
  s.display_name = in.display_name();
  s.email = in.email();
  s.avatar_hash = in.avatar_hash();
  s.bio = in.bio();
  s.password_hash = in.password_hash();
  s.registered_at_ms = in.registered_at_ms();
  s.following.insert(in.following().begin(), in.following().end());
  for (auto& like : in.likes())
    s.likes.emplace(like.shout_id(), like.author_id());
  s.failed_login_ms.assign(in.failed_login_ms().begin(),
                           in.failed_login_ms().end());
  s.locked_until_ms = in.locked_until_ms();
  return s;
}

bool operator==(const user_state& a, const user_state& b) {
  return a.registered == b.registered && a.user_id == b.user_id
         && a.handle == b.handle && a.display_name == b.display_name
         && a.email == b.email && a.avatar_hash == b.avatar_hash
         && a.bio == b.bio && a.password_hash == b.password_hash
         && a.registered_at_ms == b.registered_at_ms
         && a.following == b.following && a.likes == b.likes
         && a.failed_login_ms == b.failed_login_ms
         && a.locked_until_ms == b.locked_until_ms;
}

} // namespace shoutflow::user
