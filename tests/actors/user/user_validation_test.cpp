// Every field rule of actors/user/user_validation.cpp against shared/API.md:
// what is accepted at the limits, what is rejected just past them, and that
// every rejection is INVALID_ARGUMENT naming the field in `field` and in the
// message.

#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "actors/common/clock.hpp"
#include "actors/common/id_generator.hpp"
#include "actors/common/text.hpp"
#include "actors/user/user_domain.hpp"
#include "actors/user/user_validation.hpp"
#include "tests/actors/user/user_testkit.hpp"

namespace shoutflow::user {
namespace {

using namespace testkit;

std::string repeat(const std::string& s, std::size_t n) {
  std::string out;
  for (std::size_t i = 0; i < n; ++i)
    out += s;
  return out;
}

const std::string e_acute = "\xC3\xA9";          // U+00E9, 2 bytes
const std::string euro = "\xE2\x82\xAC";         // U+20AC, 3 bytes
const std::string grinning = "\xF0\x9F\x98\x80"; // U+1F600, 4 bytes
const std::string a_shout_id = "0000000000ABC";

using strings = std::vector<std::string>;

::testing::AssertionResult rejects(const rejection& r,
                                   const std::string& field) {
  if (!r)
    return ::testing::AssertionFailure() << "accepted; expected a rejection "
                                            "of "
                                         << field;
  if (r->code() != v1::REJECTION_CODE_INVALID_ARGUMENT)
    return ::testing::AssertionFailure()
           << "code is not INVALID_ARGUMENT: " << r->ShortDebugString();
  if (r->field() != field)
    return ::testing::AssertionFailure()
           << "field is '" << r->field() << "', expected '" << field << "'";
  if (r->message().rfind(field + ":", 0) != 0)
    return ::testing::AssertionFailure()
           << "message does not start with the field: " << r->message();
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult accepts(const rejection& r) {
  if (r)
    return ::testing::AssertionFailure()
           << "rejected: " << r->ShortDebugString();
  return ::testing::AssertionSuccess();
}

/// A valid command of every kind, to break one field at a time.
v1::UserCommand valid_register() {
  return register_user_cmd("c1", "alice", "alice", "correct horse");
}
v1::UserCommand valid_update() {
  auto c = update_profile_cmd("c1", "alice");
  c.mutable_update_profile()->set_bio("bio");
  return c;
}
v1::UserCommand valid_post() {
  return post_shout_cmd("c1", "alice", "hi");
}
v1::UserCommand valid_login() {
  return login_cmd("c1", "alice", "pw");
}

std::vector<v1::UserCommand> one_of_each() {
  return {valid_register(),
          valid_update(),
          follow_cmd("c1", "alice", "bob"),
          unfollow_cmd("c1", "alice", "bob"),
          valid_post(),
          post_shout_cmd("c1", "alice", "re", a_shout_id),
          delete_shout_cmd("c1", "alice", a_shout_id),
          like_shout_cmd("c1", "alice", a_shout_id),
          unlike_shout_cmd("c1", "alice", a_shout_id),
          valid_login(),
          login_by_handle_cmd("c1", "alice", "pw")};
}

/// The request inside a command, for setting the fields every request has.
google::protobuf::Message* request_of(v1::UserCommand& c) {
  auto* oneof = c.GetDescriptor()->FindOneofByName("command");
  auto* field = c.GetReflection()->GetOneofFieldDescriptor(c, oneof);
  return c.GetReflection()->MutableMessage(&c, field);
}

void set_string(v1::UserCommand& c, const std::string& name,
                const std::string& value) {
  auto* req = request_of(c);
  auto* f = req->GetDescriptor()->FindFieldByName(name);
  ASSERT_NE(f, nullptr) << name;
  req->GetReflection()->SetString(req, f, value);
}

// ---- the baseline ----------------------------------------------------------

TEST(user_validation, the_valid_commands_are_valid) {
  for (auto& c : one_of_each())
    EXPECT_TRUE(accepts(validate(c))) << c.ShortDebugString();
}

TEST(user_validation, no_command_set_is_rejected) {
  EXPECT_TRUE(rejects(validate(v1::UserCommand{}), "command"));
}

// ---- user_id: 1-64 of [A-Za-z0-9_-] ----------------------------------------

TEST(user_validation, user_id_limits) {
  EXPECT_TRUE(accepts(check_user_id("user_id", "a")));
  EXPECT_TRUE(accepts(check_user_id("user_id", repeat("x", 64))));
  EXPECT_TRUE(accepts(check_user_id(
    "user_id",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz-0123456789")));
  EXPECT_TRUE(rejects(check_user_id("user_id", ""), "user_id"));
  EXPECT_TRUE(rejects(check_user_id("user_id", repeat("x", 65)), "user_id"));
  for (auto& bad : strings{"a b", "a.b", "a/b", "a@b", "a|b", "a\tb", "a\nb",
                           "\xC3\xA9", std::string("a\0b", 3)})
    EXPECT_TRUE(rejects(check_user_id("user_id", bad), "user_id")) << bad;
  // The field name is the caller's.
  EXPECT_TRUE(rejects(check_user_id("target_user_id", ""), "target_user_id"));
}

TEST(user_validation, every_command_checks_user_id) {
  for (auto c : one_of_each()) {
    if (c.has_login() && c.login().account_case() == v1::LoginRequest::kHandle)
      continue;
    SCOPED_TRACE(c.ShortDebugString());
    set_string(c, "user_id", "bad id");
    EXPECT_TRUE(rejects(validate(c), "user_id"));
    set_string(c, "user_id", repeat("u", 65));
    EXPECT_TRUE(rejects(validate(c), "user_id"));
    set_string(c, "user_id", "");
    EXPECT_TRUE(rejects(validate(c), "user_id"));
  }
}

TEST(user_validation, target_user_id_is_a_user_id) {
  for (auto make : {follow_cmd, unfollow_cmd}) {
    EXPECT_TRUE(rejects(validate(make("c1", "alice", "")), "target_user_id"));
    EXPECT_TRUE(
      rejects(validate(make("c1", "alice", "b.b")), "target_user_id"));
    EXPECT_TRUE(rejects(validate(make("c1", "alice", repeat("b", 65))),
                        "target_user_id"));
    EXPECT_TRUE(accepts(validate(make("c1", "alice", repeat("b", 64)))));
  }
}

TEST(user_validation, following_oneself_is_invalid_target_user_id) {
  EXPECT_TRUE(
    rejects(validate(follow_cmd("c1", "alice", "alice")), "target_user_id"));
  EXPECT_TRUE(
    rejects(validate(unfollow_cmd("c1", "alice", "alice")), "target_user_id"));
  // User ids are case-sensitive: "Alice" is someone else.
  EXPECT_TRUE(accepts(validate(follow_cmd("c1", "alice", "Alice"))));
}

// ---- handle: 1-15 of [A-Za-z0-9_] ------------------------------------------

TEST(user_validation, handle_limits) {
  EXPECT_TRUE(accepts(check_handle("handle", "a")));
  EXPECT_TRUE(accepts(check_handle("handle", "Abc_123_xyz_789")));
  EXPECT_TRUE(accepts(check_handle("handle", repeat("h", 15))));
  EXPECT_TRUE(rejects(check_handle("handle", ""), "handle"));
  EXPECT_TRUE(rejects(check_handle("handle", repeat("h", 16)), "handle"));
  for (auto& bad : strings{"a-b", "a b", "a.b", "a@b", "\xC3\xA9", "h\x7F"})
    EXPECT_TRUE(rejects(check_handle("handle", bad), "handle")) << bad;
}

TEST(user_validation, register_and_login_check_the_handle) {
  auto reg = valid_register();
  reg.mutable_register_user()->set_handle(repeat("h", 16));
  EXPECT_TRUE(rejects(validate(reg), "handle"));
  reg.mutable_register_user()->set_handle("");
  EXPECT_TRUE(rejects(validate(reg), "handle"));
  EXPECT_TRUE(
    rejects(validate(login_by_handle_cmd("c1", "no-dash", "pw")), "handle"));
  EXPECT_TRUE(rejects(validate(login_by_handle_cmd("c1", "", "pw")), "handle"));
}

// ---- text: valid UTF-8, 1-280 code points ----------------------------------

rejection text(const std::string& t) {
  return validate(post_shout_cmd("c1", "alice", t));
}

TEST(user_validation, text_counts_code_points_not_bytes) {
  EXPECT_TRUE(accepts(text("x")));
  EXPECT_TRUE(accepts(text(repeat("x", 280))));
  EXPECT_TRUE(accepts(text(repeat(e_acute, 280))));
  EXPECT_TRUE(accepts(text(repeat(euro, 280))));
  EXPECT_TRUE(accepts(text(repeat(grinning, 280)))) << "1120 bytes, 280 chars";
  EXPECT_TRUE(rejects(text(repeat("x", 281)), "text"));
  EXPECT_TRUE(rejects(text(repeat(e_acute, 281)), "text"));
  EXPECT_TRUE(rejects(text(repeat(grinning, 281)), "text"));
  EXPECT_TRUE(rejects(text(repeat("x", 279) + grinning + "y"), "text"));
}

TEST(user_validation, text_must_not_be_empty) {
  EXPECT_TRUE(rejects(text(""), "text"));
}

TEST(user_validation, text_must_be_well_formed_utf8) {
  for (auto& bad : strings{
         "\x80",                 // lone continuation byte
         "abc\xC3",              // truncated 2-byte sequence
         "\xE2\x82",             // truncated 3-byte sequence
         "\xF0\x9F\x98",         // truncated 4-byte sequence
         "\xC3\x28",             // bad continuation
         "\xC0\xAF",             // overlong '/'
         "\xC1\xBF",             // overlong
         "\xE0\x80\xAF",         // overlong 3-byte
         "\xF0\x80\x80\xAF",     // overlong 4-byte
         "\xED\xA0\x80",         // U+D800 high surrogate
         "\xED\xBF\xBF",         // U+DFFF low surrogate
         "\xF4\x90\x80\x80",     // U+110000, above the Unicode range
         "\xF5\x80\x80\x80",     // invalid lead byte
         "\xF8\x88\x80\x80\x80", // 5-byte form
         "\xFE",
         "\xFF",
       }) {
    EXPECT_TRUE(rejects(text("ok " + bad), "text")) << to_hex(bad);
  }
}

TEST(user_validation, text_may_use_the_whole_unicode_range) {
  EXPECT_TRUE(accepts(text("\xF4\x8F\xBF\xBF"))); // U+10FFFF
  EXPECT_TRUE(accepts(text("\xED\x9F\xBF")));     // U+D7FF
  EXPECT_TRUE(accepts(text("\xEE\x80\x80")));     // U+E000
  EXPECT_TRUE(accepts(text(std::string("a\0b", 3)))) << "NUL is a code point";
}

// ---- command_id: 1-64 printable ASCII, required ----------------------------

TEST(user_validation, command_id_limits) {
  EXPECT_TRUE(accepts(check_command_id("c")));
  EXPECT_TRUE(accepts(check_command_id(repeat("c", 64))));
  EXPECT_TRUE(
    accepts(check_command_id("550e8400-e29b-41d4-a716-446655440000")));
  EXPECT_TRUE(accepts(check_command_id("!~{}[]|:;\"'<>,.?/\\")));
  EXPECT_TRUE(rejects(check_command_id(""), "command_id"));
  EXPECT_TRUE(rejects(check_command_id(repeat("c", 65)), "command_id"));
  for (auto& bad :
       strings{"a\tb", "a\nb", "\x7F", "\x01", e_acute, std::string("a\0b", 3)})
    EXPECT_TRUE(rejects(check_command_id(bad), "command_id")) << to_hex(bad);
}

TEST(user_validation, every_command_requires_a_command_id) {
  for (auto c : one_of_each()) {
    SCOPED_TRACE(c.ShortDebugString());
    set_string(c, "command_id", "");
    auto r = validate(c);
    EXPECT_TRUE(rejects(r, "command_id"));
    if (r) {
      EXPECT_NE(r->message().find("required"), std::string::npos)
        << r->message();
    }
    set_string(c, "command_id", repeat("c", 65));
    EXPECT_TRUE(rejects(validate(c), "command_id"));
    set_string(c, "command_id", "bad\x01");
    EXPECT_TRUE(rejects(validate(c), "command_id"));
  }
}

// ---- shout ids: 13 Crockford base32 characters -----------------------------

TEST(user_validation, shout_id_limits) {
  manual_clock clk{1700000000000};
  snowflake_generator gen{clk, 1023};
  EXPECT_TRUE(accepts(check_shout_id("shout_id", gen.next_id())));
  EXPECT_TRUE(accepts(check_shout_id("shout_id", "0000000000000")));
  EXPECT_TRUE(accepts(check_shout_id("shout_id", "7ZZZZZZZZZZZZ")));
  for (auto& bad : strings{"", "000000000000", "00000000000000",
                           "000000000000a", "000000000000I", "000000000000L",
                           "000000000000O", "000000000000U", "000000000000-",
                           "8000000000000", "Z000000000000"})
    EXPECT_TRUE(rejects(check_shout_id("shout_id", bad), "shout_id")) << bad;
}

TEST(user_validation, commands_check_their_shout_ids) {
  for (auto make : {delete_shout_cmd, like_shout_cmd, unlike_shout_cmd}) {
    EXPECT_TRUE(rejects(validate(make("c1", "alice", "")), "shout_id"));
    EXPECT_TRUE(rejects(validate(make("c1", "alice", "nope")), "shout_id"));
    EXPECT_TRUE(accepts(validate(make("c1", "alice", a_shout_id))));
  }
  EXPECT_TRUE(accepts(validate(post_shout_cmd("c1", "alice", "x", ""))))
    << "an empty reply_to_shout_id means not a reply";
  EXPECT_TRUE(rejects(validate(post_shout_cmd("c1", "alice", "x", "nope")),
                      "reply_to_shout_id"));
}

// ---- registration and profile fields ---------------------------------------

rejection
with_register(const std::function<void(v1::RegisterUserRequest&)>& f) {
  auto c = valid_register();
  f(*c.mutable_register_user());
  return validate(c);
}

rejection with_update(const std::function<void(v1::UpdateProfileRequest&)>& f) {
  auto c = update_profile_cmd("c1", "alice");
  f(*c.mutable_update_profile());
  return validate(c);
}

TEST(user_validation, email_rules) {
  auto email = [](const std::string& e) {
    return with_register([&](auto& r) { r.set_email(e); });
  };
  EXPECT_TRUE(accepts(email("a@b")));
  EXPECT_TRUE(accepts(email("first.last+tag@example.co.uk")));
  EXPECT_TRUE(accepts(email(repeat("a", 250) + "@b.c")));
  EXPECT_TRUE(rejects(email(repeat("a", 251) + "@b.c"), "email"));
  EXPECT_TRUE(rejects(email(""), "email")) << "required at registration";
  for (auto& bad :
       strings{"ab", "@b", "a@", "a@b@c", "a b@c", "a@b\tc", "\xC3\xA9@b"})
    EXPECT_TRUE(rejects(email(bad), "email")) << bad;
  auto update = [](const std::string& e) {
    return with_update([&](auto& r) { r.set_email(e); });
  };
  EXPECT_TRUE(accepts(update("new@x.org")));
  EXPECT_TRUE(rejects(update("nope"), "email"));
  EXPECT_TRUE(rejects(update(""), "email"));
}

TEST(user_validation, password_rules) {
  auto reg = [](const std::string& p) {
    return with_register([&](auto& r) { r.set_password(p); });
  };
  EXPECT_TRUE(rejects(reg(""), "password"));
  EXPECT_TRUE(rejects(reg(repeat("p", 7)), "password"));
  EXPECT_TRUE(accepts(reg(repeat("p", 8))));
  EXPECT_TRUE(accepts(reg(repeat("p", 256))));
  EXPECT_TRUE(rejects(reg(repeat("p", 257)), "password"));
  EXPECT_TRUE(accepts(reg(repeat(e_acute, 4)))) << "8 bytes";
  EXPECT_TRUE(rejects(reg(repeat(e_acute, 3) + "x"), "password")) << "7 bytes";
  EXPECT_TRUE(rejects(reg("password\xFF"), "password"));

  auto login = [](const std::string& p) {
    return validate(login_cmd("c1", "alice", p));
  };
  EXPECT_TRUE(accepts(login("p"))) << "login checks, it does not set policy";
  EXPECT_TRUE(rejects(login(""), "password"));
  EXPECT_TRUE(accepts(login(repeat("p", 256))));
  EXPECT_TRUE(rejects(login(repeat("p", 257)), "password"));
}

TEST(user_validation, display_name_bio_and_avatar_hash_limits) {
  auto name = [](const std::string& v) {
    return with_register([&](auto& r) { r.set_display_name(v); });
  };
  EXPECT_TRUE(accepts(name("")));
  EXPECT_TRUE(accepts(name(repeat(grinning, 50))));
  EXPECT_TRUE(rejects(name(repeat("n", 51)), "display_name"));
  EXPECT_TRUE(rejects(name("bad\xC0\x80"), "display_name"));
  EXPECT_TRUE(
    rejects(with_update([](auto& r) { r.set_display_name(repeat("n", 51)); }),
            "display_name"));

  EXPECT_TRUE(accepts(with_update([](auto& r) { r.set_bio(""); })));
  EXPECT_TRUE(
    accepts(with_update([](auto& r) { r.set_bio(repeat(euro, 160)); })));
  EXPECT_TRUE(
    rejects(with_update([](auto& r) { r.set_bio(repeat("b", 161)); }), "bio"));
  EXPECT_TRUE(
    rejects(with_update([](auto& r) { r.set_bio("\xED\xA0\x80"); }), "bio"));

  auto avatar = [](const std::string& v) {
    return with_register([&](auto& r) { r.set_avatar_hash(v); });
  };
  EXPECT_TRUE(accepts(avatar("")));
  EXPECT_TRUE(accepts(avatar(repeat("f", 128))));
  EXPECT_TRUE(rejects(avatar(repeat("f", 129)), "avatar_hash"));
  EXPECT_TRUE(rejects(avatar("a b"), "avatar_hash"));
  EXPECT_TRUE(
    rejects(with_update([](auto& r) { r.set_avatar_hash(repeat("f", 129)); }),
            "avatar_hash"));
}

TEST(user_validation, update_profile_must_set_something) {
  auto r = validate(update_profile_cmd("c1", "alice"));
  EXPECT_TRUE(rejects(r, "display_name"));
}

// ---- login fields ----------------------------------------------------------

TEST(user_validation, login_needs_an_account) {
  auto c = valid_login();
  c.mutable_login()->clear_account();
  EXPECT_TRUE(rejects(validate(c), "user_id"));
}

TEST(user_validation, client_ip_rules) {
  auto ip = [](const std::string& v) {
    auto c = valid_login();
    c.mutable_login()->set_client_ip(v);
    return validate(c);
  };
  for (auto& good : strings{"", "127.0.0.1", "192.0.2.255", "::1",
                            "2001:db8::8a2e:370:7334", "::ffff:192.0.2.1",
                            "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"})
    EXPECT_TRUE(accepts(ip(good))) << good;
  for (auto& bad :
       strings{"256.0.0.1", "1.2.3", "localhost", "1.2.3.4:80",
               "2001:db8::1::2", " 127.0.0.1", "127.0.0.1\n", repeat("1", 46)})
    EXPECT_TRUE(rejects(ip(bad), "client_ip")) << bad;
}

TEST(user_validation, user_agent_limit) {
  auto agent = [](const std::string& v) {
    auto c = valid_login();
    c.mutable_login()->set_user_agent(v);
    return validate(c);
  };
  EXPECT_TRUE(accepts(agent("")));
  EXPECT_TRUE(accepts(agent(repeat("a", 512))));
  EXPECT_TRUE(rejects(agent(repeat("a", 513)), "user_agent"));
  EXPECT_TRUE(rejects(agent("agent\xFF"), "user_agent"));
}

// max_user_agent = 512 is in *bytes*: 512 four-byte characters (2048 bytes)
// must not pass a check that counts code points.
TEST(user_validation, user_agent_limit_is_in_bytes) {
  auto c = valid_login();
  c.mutable_login()->set_user_agent(repeat(grinning, max_user_agent));
  EXPECT_TRUE(rejects(validate(c), "user_agent"))
    << c.login().user_agent().size() << " bytes > " << max_user_agent;
}

// ---- decide() validates too ------------------------------------------------

TEST(user_validation, decide_rejects_what_validate_rejects) {
  // A command can arrive from another node without passing the gRPC edge:
  // decide() must not trust it, whatever the state.
  user_testkit kit{"alice"};
  auto r = kit.run(register_user_cmd("c1", "alice", "alice"),
                   {no_owner(), hashed("$argon2id$x")});
  ASSERT_FALSE(r.rejected());
  for (auto c : one_of_each()) {
    SCOPED_TRACE(c.ShortDebugString());
    set_string(c, "command_id", "");
    auto facts = entity::facts{};
    for (auto& need : needs(kit.state(), c, {}, kit.env()))
      facts.push_back({need.kind, true, "alice"});
    auto out = kit.run(c, facts);
    EXPECT_TRUE(rejects(out.rejection, "command_id"));
    EXPECT_TRUE(out.events.empty());
  }
  EXPECT_EQ(kit.seq_nr(), 1);
}

// ---- helpers ---------------------------------------------------------------

TEST(user_validation, target_user_id_and_command_id_of_every_command) {
  for (auto& c : one_of_each()) {
    SCOPED_TRACE(c.ShortDebugString());
    EXPECT_EQ(command_id_of(c), "c1");
    bool by_handle = c.has_login()
                     && c.login().account_case() == v1::LoginRequest::kHandle;
    EXPECT_EQ(target_user_id(c), by_handle ? "" : "alice");
  }
  EXPECT_EQ(command_id_of(v1::UserCommand{}), "");
  EXPECT_EQ(target_user_id(v1::UserCommand{}), "");
}

} // namespace
} // namespace shoutflow::user
