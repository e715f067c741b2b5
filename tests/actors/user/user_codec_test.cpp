// The stored forms of user events and user state (actors/user/user_codec.hpp,
// protos/shoutflow/v1/events.proto): every event type round-trips under its
// message name at version 1; anything the decoder does not understand is
// nothing, never a guess.

#include <gtest/gtest.h>

#include <google/protobuf/util/message_differencer.h>
#include <google/protobuf/util/time_util.h>

#include <functional>
#include <set>
#include <string>
#include <vector>

#include "actors/user/user_codec.hpp"
#include "actors/user/user_state.hpp"
#include "tests/actors/user/user_testkit.hpp"

namespace shoutflow::user {
namespace {

using google::protobuf::util::MessageDifferencer;
using google::protobuf::util::TimeUtil;

google::protobuf::Timestamp at(int64_t ms) {
  return TimeUtil::MillisecondsToTimestamp(ms);
}

/// One fully populated sample of every event type, with its message name.
std::vector<std::pair<std::string, v1::UserEvent>> samples() {
  std::vector<std::pair<std::string, v1::UserEvent>> out;
  v1::UserEvent e;

  auto* reg = e.mutable_user_registered();
  reg->set_user_id("alice");
  reg->set_handle("Alice_W");
  reg->set_display_name("Alice \xF0\x9F\x98\x80");
  reg->set_email("alice@example.com");
  reg->set_avatar_hash("abc123");
  reg->set_password_hash("$argon2id$v=19$m=8,t=1,p=1$c2FsdA$ZGlnZXN0");
  *reg->mutable_registered_at() = at(1700000000123);
  out.emplace_back("UserRegistered", e);

  e.Clear();
  auto* upd = e.mutable_profile_updated();
  upd->set_user_id("alice");
  upd->set_display_name("New name");
  upd->set_bio(""); // present and empty: "clear the bio"
  *upd->mutable_updated_at() = at(1700000000456);
  out.emplace_back("ProfileUpdated", e);

  e.Clear();
  auto* fol = e.mutable_user_followed();
  fol->set_user_id("alice");
  fol->set_target_user_id("bob");
  *fol->mutable_followed_at() = at(1);
  out.emplace_back("UserFollowed", e);

  e.Clear();
  auto* unf = e.mutable_user_unfollowed();
  unf->set_user_id("alice");
  unf->set_target_user_id("bob");
  *unf->mutable_unfollowed_at() = at(2);
  out.emplace_back("UserUnfollowed", e);

  e.Clear();
  auto* post = e.mutable_shout_posted();
  post->set_shout_id("0000000000ABC");
  post->set_author_id("alice");
  post->set_text("hello \xE2\x82\xAC");
  post->set_reply_to_shout_id("0000000000ABB");
  post->set_reply_to_author_id("bob");
  *post->mutable_posted_at() = at(3);
  out.emplace_back("ShoutPosted", e);

  e.Clear();
  auto* del = e.mutable_shout_deleted();
  del->set_shout_id("0000000000ABC");
  del->set_author_id("alice");
  *del->mutable_deleted_at() = at(4);
  out.emplace_back("ShoutDeleted", e);

  e.Clear();
  auto* like = e.mutable_shout_liked();
  like->set_user_id("alice");
  like->set_shout_id("0000000000XYZ");
  like->set_author_id("bob");
  *like->mutable_liked_at() = at(5);
  out.emplace_back("ShoutLiked", e);

  e.Clear();
  auto* unlike = e.mutable_shout_unliked();
  unlike->set_user_id("alice");
  unlike->set_shout_id("0000000000XYZ");
  unlike->set_author_id("bob");
  *unlike->mutable_unliked_at() = at(6);
  out.emplace_back("ShoutUnliked", e);

  e.Clear();
  auto* in = e.mutable_user_logged_in();
  in->set_user_id("alice");
  in->set_client_ip("2001:db8::1");
  in->set_user_agent("curl/8");
  *in->mutable_logged_in_at() = at(7);
  out.emplace_back("UserLoggedIn", e);

  e.Clear();
  auto* failed = e.mutable_login_failed();
  failed->set_user_id("alice");
  failed->set_client_ip("192.0.2.1");
  failed->set_user_agent("curl/8");
  failed->set_reason(v1::LOGIN_FAILURE_REASON_LOCKED);
  *failed->mutable_locked_until() = at(900000);
  *failed->mutable_failed_at() = at(8);
  out.emplace_back("LoginFailed", e);
  return out;
}

TEST(user_codec, samples_cover_every_event_type) {
  std::set<int> covered;
  for (auto& [name, event] : samples())
    covered.insert(event.event_case());
  auto* oneof = v1::UserEvent::descriptor()->FindOneofByName("event");
  EXPECT_EQ(covered.size(), static_cast<std::size_t>(oneof->field_count()))
    << "a new event type needs a sample here";
}

TEST(user_codec, every_event_round_trips_under_its_message_name_at_v1) {
  for (auto& [name, event] : samples()) {
    SCOPED_TRACE(name);
    auto enc = encode_event(event);
    EXPECT_EQ(enc.type, name);
    EXPECT_EQ(enc.version, 1);
    EXPECT_EQ(enc.version, current_event_version);
    EXPECT_FALSE(enc.payload.empty());
    auto dec = decode_event(enc.type, enc.version, enc.payload);
    ASSERT_TRUE(dec.has_value());
    EXPECT_EQ(dec->event_case(), event.event_case());
    EXPECT_TRUE(MessageDifferencer::Equals(*dec, event))
      << dec->ShortDebugString() << "\nvs\n"
      << event.ShortDebugString();
  }
}

TEST(user_codec, the_payload_is_the_bare_event_message) {
  // events.proto: the payload is the message named by the type, not the
  // UserEvent wrapper, so other readers (projections, tools) parse it alone.
  auto all = samples();
  auto& [name, event] = all[4];
  ASSERT_EQ(name, "ShoutPosted");
  auto enc = encode_event(event);
  v1::ShoutPosted bare;
  ASSERT_TRUE(bare.ParseFromString(enc.payload));
  EXPECT_TRUE(MessageDifferencer::Equals(bare, event.shout_posted()));
  EXPECT_EQ(enc.payload, event.shout_posted().SerializeAsString());
}

TEST(user_codec, optional_presence_survives_the_round_trip) {
  v1::UserEvent e;
  e.mutable_profile_updated()->set_user_id("alice");
  e.mutable_profile_updated()->set_bio("");
  auto enc = encode_event(e);
  auto dec = decode_event(enc.type, enc.version, enc.payload);
  ASSERT_TRUE(dec.has_value());
  EXPECT_TRUE(dec->profile_updated().has_bio());
  EXPECT_FALSE(dec->profile_updated().has_display_name());
  EXPECT_FALSE(dec->profile_updated().has_email());
  EXPECT_FALSE(dec->profile_updated().has_avatar_hash());
}

TEST(user_codec, an_empty_payload_is_a_default_event_of_that_type) {
  auto dec = decode_event("ShoutDeleted", 1, "");
  ASSERT_TRUE(dec.has_value());
  EXPECT_TRUE(dec->has_shout_deleted());
}

TEST(user_codec, unknown_types_are_nothing) {
  auto payload = samples()[0].second.user_registered().SerializeAsString();
  for (auto& type : std::vector<std::string>{
         "", "UserEvent", "userregistered", "USERREGISTERED",
         "shoutflow.v1.UserRegistered", "UserRegistered ", "UserDeleted",
         "Timestamp", "user_registered"})
    EXPECT_FALSE(decode_event(type, 1, payload).has_value()) << type;
}

TEST(user_codec, other_versions_are_nothing) {
  for (auto& [name, event] : samples()) {
    auto enc = encode_event(event);
    for (int version : {0, 2, -1, 100})
      EXPECT_FALSE(decode_event(name, version, enc.payload).has_value())
        << name << " v" << version;
  }
}

TEST(user_codec, corrupt_payloads_are_nothing) {
  for (auto& [name, event] : samples()) {
    SCOPED_TRACE(name);
    auto payload = encode_event(event).payload;
    // Cut inside the last length-delimited field (every sample ends with a
    // timestamp): the length prefix promises more than there is.
    EXPECT_FALSE(
      decode_event(name, 1, payload.substr(0, payload.size() - 1)).has_value());
    // A truncated varint tag.
    EXPECT_FALSE(decode_event(name, 1, payload + "\xFF").has_value());
  }
  // Field 1 declared as a string of 100 bytes, with 2 present.
  EXPECT_FALSE(decode_event("UserFollowed", 1, "\x0A\x64xy").has_value());
  // Wire type 7 does not exist.
  EXPECT_FALSE(decode_event("UserFollowed", 1, "\x0F").has_value());
  // Invalid UTF-8 in a proto3 string field.
  EXPECT_FALSE(decode_event("UserFollowed", 1, "\x0A\x01\xFF").has_value());
}

// ---- state -----------------------------------------------------------------

user_state sample_state() {
  user_state s;
  s.registered = true;
  s.user_id = "alice";
  s.handle = "Alice_W";
  s.display_name = "Alice \xC3\xA9";
  s.email = "alice@example.com";
  s.avatar_hash = "abc";
  s.bio = "bio";
  s.password_hash = "$argon2id$v=19$m=8,t=1,p=1$c2FsdA$ZGlnZXN0";
  s.registered_at_ms = 1700000000123;
  s.following = {"bob", "carol", "dave"};
  s.likes = {{"0000000000AB1", "bob"}, {"0000000000AB2", "carol"}};
  s.failed_login_ms = {1700000000200, 1700000000100}; // order is kept
  s.locked_until_ms = 1700000900000;
  return s;
}

TEST(user_codec, state_round_trips) {
  auto s = sample_state();
  auto dec = decode_state(encode_state(s));
  ASSERT_TRUE(dec.has_value());
  EXPECT_EQ(*dec, s);
  EXPECT_EQ(dec->failed_login_ms, s.failed_login_ms);
}

TEST(user_codec, the_empty_state_round_trips) {
  auto dec = decode_state(encode_state(user_state{}));
  ASSERT_TRUE(dec.has_value());
  EXPECT_EQ(*dec, user_state{});
}

TEST(user_codec, equal_states_encode_to_equal_bytes) {
  auto a = sample_state();
  user_state b = a;
  b.following.clear();
  b.likes.clear();
  b.following.rehash(64);
  for (auto& f : {"dave", "carol", "bob"})
    b.following.insert(f);
  b.likes.emplace("0000000000AB2", "carol");
  b.likes.emplace("0000000000AB1", "bob");
  ASSERT_EQ(a, b);
  EXPECT_EQ(encode_state(a), encode_state(b));
}

TEST(user_codec, every_state_field_matters_to_equality_and_the_codec) {
  // Guards operator== and the codec against a field added to one but not
  // the other: changing any field must change both.
  auto base = sample_state();
  std::vector<std::function<void(user_state&)>> changes = {
    [](user_state& s) { s.registered = false; },
    [](user_state& s) { s.user_id = "x"; },
    [](user_state& s) { s.handle = "x"; },
    [](user_state& s) { s.display_name = "x"; },
    [](user_state& s) { s.email = "x"; },
    [](user_state& s) { s.avatar_hash = "x"; },
    [](user_state& s) { s.bio = "x"; },
    [](user_state& s) { s.password_hash = "x"; },
    [](user_state& s) { s.registered_at_ms += 1; },
    [](user_state& s) { s.following.erase("bob"); },
    [](user_state& s) { s.likes["0000000000AB1"] = "carol"; },
    [](user_state& s) { s.failed_login_ms.push_back(1); },
    [](user_state& s) { s.locked_until_ms += 1; },
  };
  for (std::size_t i = 0; i < changes.size(); ++i) {
    auto changed = base;
    changes[i](changed);
    EXPECT_NE(changed, base) << "change " << i;
    EXPECT_NE(encode_state(changed), encode_state(base)) << "change " << i;
    auto dec = decode_state(encode_state(changed));
    ASSERT_TRUE(dec.has_value());
    EXPECT_EQ(*dec, changed) << "change " << i;
  }
}

TEST(user_codec, corrupt_state_is_nothing) {
  auto bytes = encode_state(sample_state());
  EXPECT_FALSE(decode_state(bytes.substr(0, bytes.size() - 1)).has_value());
  EXPECT_FALSE(decode_state("\xFF\xFF\xFF").has_value());
  EXPECT_FALSE(decode_state("\x12\x50"
                            "abc")
                 .has_value());
}

} // namespace
} // namespace shoutflow::user
