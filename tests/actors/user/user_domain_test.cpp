// The user aggregate's decide/evolve/reply_for, command by command: every
// happy path and every rejection, asserting reply, events, claims/guards/
// releases and state together (user_testkit.hpp). No database, no actors.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "actors/user/user_codec.hpp"
#include "actors/user/user_domain.hpp"
#include "tests/actors/user/user_testkit.hpp"

namespace shoutflow::user {
namespace {

using namespace testkit;

const std::string stored_hash = "$argon2id$v=19$m=8,t=1,p=1$c2FsdA$ZGlnZXN0";

class user_domain : public ::testing::Test {
protected:
  /// Registers the kit's user (handle = id) and asserts it worked.
  void register_user(user_testkit& k) {
    auto r = k.run(register_user_cmd("c-reg-" + k.id(), k.id(), k.id()),
                   {no_owner(), hashed(stored_hash)});
    ASSERT_FALSE(r.rejected()) << r.rejection->ShortDebugString();
  }

  /// Posts a shout and returns its id.
  std::string post(user_testkit& k, const std::string& command_id,
                   const std::string& text = "hello") {
    auto r = k.run(post_shout_cmd(command_id, k.id(), text));
    EXPECT_FALSE(r.rejected()) << r.rejection->ShortDebugString();
    EXPECT_EQ(r.events.size(), 1u);
    return r.events.empty() ? "" : r.events[0].shout_posted().shout_id();
  }

  static void expect_result(const run_result& r, const std::string& user_id,
                            int64_t seq_nr, int64_t position) {
    ASSERT_TRUE(r.reply.has_result()) << r.reply.ShortDebugString();
    EXPECT_EQ(r.reply.result().user_id(), user_id);
    EXPECT_EQ(r.reply.result().seq_nr(), seq_nr);
    EXPECT_EQ(r.reply.result().global_position(), position);
    EXPECT_FALSE(r.reply.result().duplicate());
  }

  static void expect_rejection(const run_result& r, v1::RejectionCode code,
                               const std::string& field) {
    ASSERT_TRUE(r.rejected());
    EXPECT_EQ(r.rejection->code(), code) << r.rejection->ShortDebugString();
    EXPECT_EQ(r.rejection->field(), field);
    if (!field.empty()) {
      EXPECT_NE(r.rejection->message().find(field), std::string::npos)
        << "message must name the field: " << r.rejection->message();
    }
    ASSERT_TRUE(r.reply.has_rejection());
    EXPECT_EQ(r.reply.rejection().code(), code);
    EXPECT_TRUE(r.events.empty());
    EXPECT_TRUE(r.claims.empty());
    EXPECT_TRUE(r.releases.empty());
    EXPECT_TRUE(r.guards.empty());
  }

  /// A command that succeeded without appending anything.
  static void expect_noop(const run_result& r, const user_testkit& k,
                          const user_state& before) {
    EXPECT_FALSE(r.rejected())
      << (r.rejection ? r.rejection->ShortDebugString() : "");
    EXPECT_TRUE(r.events.empty());
    EXPECT_TRUE(r.claims.empty());
    EXPECT_TRUE(r.releases.empty());
    EXPECT_TRUE(r.guards.empty());
    EXPECT_EQ(r.state_after, before);
    expect_result(r, k.id(), k.seq_nr(), k.position());
  }

  user_testkit alice{"alice"};
};

// ---- RegisterUser ----------------------------------------------------------

TEST_F(user_domain, register_user_records_hash_and_claims_user_and_handle) {
  auto cmd = register_user_cmd("c1", "alice", "Alice_W", "correct horse");
  auto r = alice.run(cmd, {no_owner(), hashed(stored_hash)});

  std::vector<fact_request> expected_needs
    = {{fact_kind::claim_owner, handle_claim, "alice_w", true},
       {fact_kind::password_hash, "correct horse", ""}};
  EXPECT_EQ(r.needs, expected_needs);
  ASSERT_FALSE(r.rejected()) << r.rejection->ShortDebugString();
  ASSERT_EQ(r.events.size(), 1u);
  ASSERT_TRUE(r.events[0].has_user_registered());
  auto& e = r.events[0].user_registered();
  EXPECT_EQ(e.user_id(), "alice");
  EXPECT_EQ(e.handle(), "Alice_W");
  EXPECT_EQ(e.display_name(), "Display Alice_W");
  EXPECT_EQ(e.email(), "alice@example.com");
  EXPECT_EQ(e.avatar_hash(), "avatar-alice");
  EXPECT_EQ(e.password_hash(), stored_hash);
  EXPECT_EQ(ms_of(e.registered_at()), start_ms);

  std::vector<claim_op> claims = {{user_claim, "alice", "alice"},
                                  {handle_claim, "alice_w", "alice"}};
  EXPECT_EQ(r.claims, claims);
  EXPECT_TRUE(r.guards.empty());
  EXPECT_TRUE(r.releases.empty());
  expect_result(r, "alice", 1, alice.position());

  EXPECT_TRUE(r.state_after.registered);
  EXPECT_EQ(r.state_after.user_id, "alice");
  EXPECT_EQ(r.state_after.handle, "Alice_W");
  EXPECT_EQ(r.state_after.display_name, "Display Alice_W");
  EXPECT_EQ(r.state_after.email, "alice@example.com");
  EXPECT_EQ(r.state_after.avatar_hash, "avatar-alice");
  EXPECT_EQ(r.state_after.password_hash, stored_hash);
  EXPECT_EQ(r.state_after.registered_at_ms, start_ms);
  alice.restart();
}

TEST_F(user_domain, register_user_never_stores_the_password) {
  auto password = std::string{"very-secret-pw"};
  auto r = alice.run(register_user_cmd("c1", "alice", "alice", password),
                     {no_owner(), hashed(stored_hash)});
  ASSERT_EQ(r.events.size(), 1u);
  auto stored = encode_event(r.events[0]).payload;
  EXPECT_EQ(stored.find(password), std::string::npos);
  EXPECT_EQ(r.state_after.password_hash, stored_hash);
  EXPECT_EQ(encode_state(r.state_after).find(password), std::string::npos);
}

TEST_F(user_domain, register_user_twice_is_already_exists_on_user_id) {
  register_user(alice);
  auto before = alice.state();
  auto r = alice.run(register_user_cmd("c2", "alice", "other"));
  EXPECT_TRUE(r.needs.empty()) << "a registered user needs no facts";
  expect_rejection(r, v1::REJECTION_CODE_ALREADY_EXISTS, "user_id");
  EXPECT_EQ(r.state_after, before);
  EXPECT_EQ(alice.seq_nr(), 1);
}

TEST_F(user_domain, register_user_with_a_handle_owned_by_another_user) {
  // Refused on the owner alone: the password is never hashed.
  auto r = alice.run(register_user_cmd("c1", "alice", "Bob"), {owner("bob")});
  ASSERT_EQ(r.needs.size(), 1u);
  EXPECT_EQ(r.needs[0].b, "bob");
  EXPECT_TRUE(r.needs[0].exclusive);
  expect_rejection(r, v1::REJECTION_CODE_ALREADY_EXISTS, "handle");
  EXPECT_EQ(r.state_after, user_state{});
}

TEST_F(user_domain, register_user_handle_claim_is_case_insensitive) {
  // "BOB" and "bob" are one handle: the claim key is the lower-case form,
  // so the owner check of the claim covers every spelling.
  auto r = alice.run(register_user_cmd("c1", "alice", "BoB_99"),
                     {no_owner(), hashed(stored_hash)});
  ASSERT_EQ(r.needs.size(), 2u);
  EXPECT_EQ(r.needs[0].a, handle_claim);
  EXPECT_EQ(r.needs[0].b, "bob_99");
  ASSERT_FALSE(r.rejected());
  ASSERT_EQ(r.claims.size(), 2u);
  EXPECT_EQ(r.claims[1], (claim_op{handle_claim, "bob_99", "alice"}));
  EXPECT_EQ(r.state_after.handle, "BoB_99") << "the spelling is kept";

  user_testkit carol{"carol"};
  auto taken = carol.run(register_user_cmd("c1", "carol", "bob_99"),
                         {owner("alice")});
  EXPECT_EQ(taken.needs[0].b, "bob_99");
  expect_rejection(taken, v1::REJECTION_CODE_ALREADY_EXISTS, "handle");
}

TEST_F(user_domain, register_user_when_the_handle_is_already_its_own) {
  // A retry after a lost reply may find its own claim: not a conflict.
  auto r = alice.run(register_user_cmd("c1", "alice", "alice"),
                     {owner("alice"), hashed(stored_hash)});
  EXPECT_FALSE(r.rejected());
  EXPECT_EQ(r.events.size(), 1u);
}

TEST_F(user_domain, register_user_asks_for_the_owner_before_the_hash) {
  user_testkit kit{"dora"};
  auto cmd = register_user_cmd("c1", "dora", "Dora");
  auto first = needs(kit.state(), cmd, {}, kit.env());
  ASSERT_EQ(first.size(), 1u) << "the owner alone, before any hashing";
  EXPECT_EQ(first[0].kind, fact_kind::claim_owner);
  auto second = needs(kit.state(), cmd, {no_owner()}, kit.env());
  ASSERT_EQ(second.size(), 2u);
  EXPECT_EQ(second[0], first[0]) << "needs() only ever appends";
  EXPECT_EQ(second[1].kind, fact_kind::password_hash);
  EXPECT_EQ(needs(kit.state(), cmd, {owner("erin")}, kit.env()).size(), 1u)
    << "a handle owned by another user needs no hash";
}

TEST_F(user_domain, register_user_when_hashing_failed_is_unavailable) {
  auto r = alice.run(register_user_cmd("c1", "alice", "alice"),
                     {no_owner(), hash_failed()});
  expect_rejection(r, v1::REJECTION_CODE_UNAVAILABLE, "password");
  EXPECT_FALSE(r.state_after.registered);
}

TEST_F(user_domain, register_user_without_its_facts_is_internal) {
  auto r = alice.run(register_user_cmd("c1", "alice", "alice"), {}, false);
  expect_rejection(r, v1::REJECTION_CODE_INTERNAL, "");
  EXPECT_FALSE(r.state_after.registered);
}

TEST_F(user_domain, register_user_validates_before_deciding) {
  auto r = alice.run(register_user_cmd("c1", "alice", "bad-handle"),
                     {no_owner(), hashed(stored_hash)});
  expect_rejection(r, v1::REJECTION_CODE_INVALID_ARGUMENT, "handle");
  EXPECT_FALSE(r.state_after.registered);
}

// ---- UpdateProfile ---------------------------------------------------------

TEST_F(user_domain, update_profile_changes_only_the_fields_given) {
  register_user(alice);
  alice.clock().advance_ms(minute_ms);
  auto cmd = update_profile_cmd("c2", "alice");
  cmd.mutable_update_profile()->set_bio("I shout.");
  auto r = alice.run(cmd);
  EXPECT_TRUE(r.needs.empty());
  ASSERT_FALSE(r.rejected());
  ASSERT_EQ(r.events.size(), 1u);
  auto& e = r.events[0].profile_updated();
  EXPECT_EQ(e.user_id(), "alice");
  EXPECT_TRUE(e.has_bio());
  EXPECT_EQ(e.bio(), "I shout.");
  EXPECT_FALSE(e.has_display_name());
  EXPECT_FALSE(e.has_avatar_hash());
  EXPECT_FALSE(e.has_email());
  EXPECT_EQ(ms_of(e.updated_at()), start_ms + minute_ms);
  expect_result(r, "alice", 2, alice.position());
  EXPECT_EQ(r.state_after.bio, "I shout.");
  EXPECT_EQ(r.state_after.display_name, "Display alice");
  EXPECT_EQ(r.state_after.email, "alice@example.com");
  EXPECT_EQ(r.state_after.avatar_hash, "avatar-alice");
}

TEST_F(user_domain, update_profile_records_only_what_changes) {
  register_user(alice);
  auto cmd = update_profile_cmd("c2", "alice");
  auto* u = cmd.mutable_update_profile();
  u->set_display_name("Display alice"); // unchanged
  u->set_email("new@example.com");
  u->set_avatar_hash("avatar-alice"); // unchanged
  auto r = alice.run(cmd);
  ASSERT_EQ(r.events.size(), 1u);
  auto& e = r.events[0].profile_updated();
  EXPECT_FALSE(e.has_display_name());
  EXPECT_FALSE(e.has_avatar_hash());
  EXPECT_FALSE(e.has_bio());
  ASSERT_TRUE(e.has_email());
  EXPECT_EQ(e.email(), "new@example.com");
  EXPECT_EQ(r.state_after.email, "new@example.com");
}

TEST_F(user_domain, update_profile_can_clear_the_bio) {
  register_user(alice);
  auto set = update_profile_cmd("c2", "alice");
  set.mutable_update_profile()->set_bio("something");
  ASSERT_FALSE(alice.run(set).rejected());
  auto clear = update_profile_cmd("c3", "alice");
  clear.mutable_update_profile()->set_bio("");
  auto r = alice.run(clear);
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_TRUE(r.events[0].profile_updated().has_bio());
  EXPECT_EQ(r.state_after.bio, "");
  alice.restart();
}

TEST_F(user_domain, update_profile_without_changes_is_a_noop_success) {
  register_user(alice);
  auto before = alice.state();
  auto cmd = update_profile_cmd("c2", "alice");
  cmd.mutable_update_profile()->set_display_name("Display alice");
  cmd.mutable_update_profile()->set_bio("");
  auto r = alice.run(cmd);
  expect_noop(r, alice, before);
  EXPECT_EQ(alice.seq_nr(), 1);
}

TEST_F(user_domain, update_profile_of_an_unregistered_user_is_not_found) {
  auto cmd = update_profile_cmd("c1", "alice");
  cmd.mutable_update_profile()->set_bio("x");
  auto r = alice.run(cmd);
  expect_rejection(r, v1::REJECTION_CODE_NOT_FOUND, "user_id");
}

// ---- Follow / Unfollow -----------------------------------------------------

TEST_F(user_domain, follow_guards_the_target_user_claim) {
  register_user(alice);
  alice.clock().advance_ms(5);
  auto r = alice.run(follow_cmd("c2", "alice", "bob"), {owner("bob")});
  std::vector<fact_request> expected
    = {{fact_kind::claim_owner, user_claim, "bob"}};
  EXPECT_EQ(r.needs, expected);
  ASSERT_FALSE(r.rejected()) << r.rejection->ShortDebugString();
  ASSERT_EQ(r.events.size(), 1u);
  auto& e = r.events[0].user_followed();
  EXPECT_EQ(e.user_id(), "alice");
  EXPECT_EQ(e.target_user_id(), "bob");
  EXPECT_EQ(ms_of(e.followed_at()), start_ms + 5);
  std::vector<claim_op> guards = {{user_claim, "bob", "bob"}};
  EXPECT_EQ(r.guards, guards);
  EXPECT_TRUE(r.claims.empty());
  EXPECT_TRUE(r.releases.empty());
  expect_result(r, "alice", 2, alice.position());
  EXPECT_EQ(r.state_after.following, (std::unordered_set<std::string>{"bob"}));
}

TEST_F(user_domain, follow_oneself_is_invalid_target_user_id) {
  register_user(alice);
  auto r = alice.run(follow_cmd("c2", "alice", "alice"), {owner("alice")});
  expect_rejection(r, v1::REJECTION_CODE_INVALID_ARGUMENT, "target_user_id");
  EXPECT_TRUE(r.state_after.following.empty());
}

TEST_F(user_domain, follow_an_unknown_user_is_not_found_target_user_id) {
  register_user(alice);
  auto r = alice.run(follow_cmd("c2", "alice", "ghost"), {no_owner()});
  expect_rejection(r, v1::REJECTION_CODE_NOT_FOUND, "target_user_id");
  EXPECT_TRUE(r.state_after.following.empty());
}

TEST_F(user_domain, follow_again_is_a_noop_success) {
  register_user(alice);
  ASSERT_FALSE(
    alice.run(follow_cmd("c2", "alice", "bob"), {owner("bob")}).rejected());
  auto before = alice.state();
  auto r = alice.run(follow_cmd("c3", "alice", "bob"));
  EXPECT_TRUE(r.needs.empty()) << "already following: nothing to look up";
  expect_noop(r, alice, before);
}

TEST_F(user_domain, unfollow_removes_the_target) {
  register_user(alice);
  ASSERT_FALSE(
    alice.run(follow_cmd("c2", "alice", "bob"), {owner("bob")}).rejected());
  ASSERT_FALSE(
    alice.run(follow_cmd("c3", "alice", "carol"), {owner("carol")}).rejected());
  alice.clock().advance_ms(7);
  auto r = alice.run(unfollow_cmd("c4", "alice", "bob"));
  EXPECT_TRUE(r.needs.empty());
  ASSERT_EQ(r.events.size(), 1u);
  auto& e = r.events[0].user_unfollowed();
  EXPECT_EQ(e.user_id(), "alice");
  EXPECT_EQ(e.target_user_id(), "bob");
  EXPECT_EQ(ms_of(e.unfollowed_at()), start_ms + 7);
  EXPECT_TRUE(r.guards.empty());
  expect_result(r, "alice", 4, alice.position());
  EXPECT_EQ(r.state_after.following,
            (std::unordered_set<std::string>{"carol"}));
}

TEST_F(user_domain, unfollow_when_not_following_is_a_noop_success) {
  register_user(alice);
  auto before = alice.state();
  expect_noop(alice.run(unfollow_cmd("c2", "alice", "bob")), alice, before);
}

TEST_F(user_domain, unfollow_oneself_is_invalid_target_user_id) {
  register_user(alice);
  expect_rejection(alice.run(unfollow_cmd("c2", "alice", "alice")),
                   v1::REJECTION_CODE_INVALID_ARGUMENT, "target_user_id");
}

// ---- PostShout -------------------------------------------------------------

TEST_F(user_domain, post_shout_takes_a_time_ordered_id_and_claims_it) {
  register_user(alice);
  alice.clock().advance_ms(42);
  auto r = alice.run(post_shout_cmd("c2", "alice", "first!"));
  EXPECT_TRUE(r.needs.empty());
  ASSERT_FALSE(r.rejected()) << r.rejection->ShortDebugString();
  ASSERT_EQ(r.events.size(), 1u);
  auto& e = r.events[0].shout_posted();
  EXPECT_EQ(e.shout_id(), "0000000000001");
  EXPECT_EQ(e.author_id(), "alice");
  EXPECT_EQ(e.text(), "first!");
  EXPECT_EQ(e.reply_to_shout_id(), "");
  EXPECT_EQ(e.reply_to_author_id(), "");
  EXPECT_EQ(ms_of(e.posted_at()), start_ms + 42);
  std::vector<claim_op> claims = {{shout_claim, "0000000000001", "alice"}};
  EXPECT_EQ(r.claims, claims);
  EXPECT_TRUE(r.guards.empty());
  EXPECT_TRUE(r.releases.empty());
  expect_result(r, "alice", 2, alice.position());
  EXPECT_EQ(r.reply.result().shout_id(), "0000000000001");

  auto second = alice.run(post_shout_cmd("c3", "alice", "second"));
  ASSERT_EQ(second.events.size(), 1u);
  EXPECT_EQ(second.reply.result().shout_id(), "0000000000002");
  EXPECT_LT(e.shout_id(), second.events[0].shout_posted().shout_id());
}

TEST_F(user_domain, post_shout_keeps_the_state) {
  // Shouts live in the claims table and the read models; the user state
  // does not grow with every shout.
  register_user(alice);
  auto before = alice.state();
  auto r = alice.run(post_shout_cmd("c2", "alice", "hi"));
  EXPECT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.state_after, before);
}

TEST_F(user_domain, post_shout_reply_guards_the_parent_and_its_author) {
  register_user(alice);
  std::string parent = "0000000000777";
  auto r = alice.run(post_shout_cmd("c2", "alice", "@bob yes", parent),
                     {owner("bob")});
  std::vector<fact_request> expected
    = {{fact_kind::claim_owner, shout_claim, parent}};
  EXPECT_EQ(r.needs, expected);
  ASSERT_FALSE(r.rejected()) << r.rejection->ShortDebugString();
  ASSERT_EQ(r.events.size(), 1u);
  auto& e = r.events[0].shout_posted();
  EXPECT_EQ(e.reply_to_shout_id(), parent);
  EXPECT_EQ(e.reply_to_author_id(), "bob");
  // The claim carries the parent, so a later deletion can name it.
  std::vector<claim_op> claims = {{shout_claim, e.shout_id(), "alice", parent}};
  std::vector<claim_op> guards = {{shout_claim, parent, "bob"}};
  EXPECT_EQ(r.claims, claims);
  EXPECT_EQ(r.guards, guards);
  EXPECT_EQ(r.reply.result().shout_id(), e.shout_id());
}

TEST_F(user_domain, post_shout_reply_to_an_unknown_shout_is_not_found) {
  register_user(alice);
  auto r = alice.run(post_shout_cmd("c2", "alice", "hm", "0000000000777"),
                     {no_owner()});
  expect_rejection(r, v1::REJECTION_CODE_NOT_FOUND, "reply_to_shout_id");
  EXPECT_EQ(alice.seq_nr(), 1);
  // A rejected post does not use up an id.
  auto next = alice.run(post_shout_cmd("c3", "alice", "ok"));
  ASSERT_EQ(next.events.size(), 1u);
  EXPECT_EQ(next.events[0].shout_posted().shout_id(), "0000000000001");
}

TEST_F(user_domain, post_shout_of_an_unregistered_user_is_not_found) {
  auto r = alice.run(post_shout_cmd("c1", "alice", "hi"));
  expect_rejection(r, v1::REJECTION_CODE_NOT_FOUND, "user_id");
}

// ---- DeleteShout -----------------------------------------------------------

TEST_F(user_domain, delete_shout_releases_the_authors_claim) {
  register_user(alice);
  auto id = post(alice, "c2");
  alice.clock().advance_ms(minute_ms);
  auto r = alice.run(delete_shout_cmd("c3", "alice", id), {owner("alice")});
  std::vector<fact_request> expected
    = {{fact_kind::claim_owner, shout_claim, id}};
  EXPECT_EQ(r.needs, expected);
  ASSERT_FALSE(r.rejected()) << r.rejection->ShortDebugString();
  ASSERT_EQ(r.events.size(), 1u);
  auto& e = r.events[0].shout_deleted();
  EXPECT_EQ(e.shout_id(), id);
  EXPECT_EQ(e.author_id(), "alice");
  EXPECT_EQ(ms_of(e.deleted_at()), start_ms + minute_ms);
  std::vector<claim_op> releases = {{shout_claim, id, "alice"}};
  EXPECT_EQ(r.releases, releases);
  EXPECT_TRUE(r.claims.empty());
  EXPECT_TRUE(r.guards.empty());
  expect_result(r, "alice", 3, alice.position());
  EXPECT_EQ(r.reply.result().shout_id(), "");
}

TEST_F(user_domain, deleting_a_reply_names_its_parent_from_the_claim) {
  register_user(alice);
  auto id = post(alice, "c2");
  fact claim = owner("alice");
  claim.detail = "0000000000777"; // the claim's value: the parent
  auto r = alice.run(delete_shout_cmd("c3", "alice", id), {claim});
  ASSERT_FALSE(r.rejected()) << r.rejection->ShortDebugString();
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.events[0].shout_deleted().reply_to_shout_id(), "0000000000777");
}

TEST_F(user_domain, delete_an_unknown_shout_is_not_found) {
  register_user(alice);
  auto r = alice.run(delete_shout_cmd("c2", "alice", "0000000000999"),
                     {no_owner()});
  expect_rejection(r, v1::REJECTION_CODE_NOT_FOUND, "shout_id");
}

TEST_F(user_domain, delete_another_authors_shout_is_permission_denied) {
  register_user(alice);
  auto r = alice.run(delete_shout_cmd("c2", "alice", "0000000000999"),
                     {owner("bob")});
  expect_rejection(r, v1::REJECTION_CODE_PERMISSION_DENIED, "shout_id");
  EXPECT_EQ(alice.seq_nr(), 1);
}

// ---- LikeShout / UnlikeShout -----------------------------------------------

TEST_F(user_domain, like_shout_records_the_author_and_guards_the_shout) {
  register_user(alice);
  std::string shout = "0000000000ABC";
  alice.clock().advance_ms(3);
  auto r = alice.run(like_shout_cmd("c2", "alice", shout), {owner("bob")});
  std::vector<fact_request> expected
    = {{fact_kind::claim_owner, shout_claim, shout}};
  EXPECT_EQ(r.needs, expected);
  ASSERT_FALSE(r.rejected()) << r.rejection->ShortDebugString();
  ASSERT_EQ(r.events.size(), 1u);
  auto& e = r.events[0].shout_liked();
  EXPECT_EQ(e.user_id(), "alice");
  EXPECT_EQ(e.shout_id(), shout);
  EXPECT_EQ(e.author_id(), "bob");
  EXPECT_EQ(ms_of(e.liked_at()), start_ms + 3);
  std::vector<claim_op> guards = {{shout_claim, shout, "bob"}};
  EXPECT_EQ(r.guards, guards);
  EXPECT_TRUE(r.claims.empty());
  EXPECT_TRUE(r.releases.empty());
  expect_result(r, "alice", 2, alice.position());
  ASSERT_EQ(r.state_after.likes.size(), 1u);
  EXPECT_EQ(r.state_after.likes.at(shout), "bob");
}

TEST_F(user_domain, like_own_shout_is_allowed) {
  register_user(alice);
  auto id = post(alice, "c2");
  auto r = alice.run(like_shout_cmd("c3", "alice", id), {owner("alice")});
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.events[0].shout_liked().author_id(), "alice");
}

TEST_F(user_domain, like_an_unknown_shout_is_not_found) {
  register_user(alice);
  auto r = alice.run(like_shout_cmd("c2", "alice", "0000000000ABC"),
                     {no_owner()});
  expect_rejection(r, v1::REJECTION_CODE_NOT_FOUND, "shout_id");
  EXPECT_TRUE(r.state_after.likes.empty());
}

TEST_F(user_domain, like_again_is_a_noop_success) {
  register_user(alice);
  ASSERT_FALSE(
    alice.run(like_shout_cmd("c2", "alice", "0000000000ABC"), {owner("bob")})
      .rejected());
  auto before = alice.state();
  auto r = alice.run(like_shout_cmd("c3", "alice", "0000000000ABC"));
  EXPECT_TRUE(r.needs.empty());
  expect_noop(r, alice, before);
}

TEST_F(user_domain, unlike_shout_uses_the_author_from_state) {
  register_user(alice);
  ASSERT_FALSE(
    alice.run(like_shout_cmd("c2", "alice", "0000000000ABC"), {owner("bob")})
      .rejected());
  alice.clock().advance_ms(9);
  auto r = alice.run(unlike_shout_cmd("c3", "alice", "0000000000ABC"));
  EXPECT_TRUE(r.needs.empty()) << "the author is known from the like";
  ASSERT_FALSE(r.rejected());
  ASSERT_EQ(r.events.size(), 1u);
  auto& e = r.events[0].shout_unliked();
  EXPECT_EQ(e.user_id(), "alice");
  EXPECT_EQ(e.shout_id(), "0000000000ABC");
  EXPECT_EQ(e.author_id(), "bob");
  EXPECT_EQ(ms_of(e.unliked_at()), start_ms + 9);
  EXPECT_TRUE(r.guards.empty());
  EXPECT_TRUE(r.releases.empty());
  expect_result(r, "alice", 3, alice.position());
  EXPECT_TRUE(r.state_after.likes.empty());
}

TEST_F(user_domain, unlike_when_not_liked_is_a_noop_success) {
  register_user(alice);
  auto before = alice.state();
  expect_noop(alice.run(unlike_shout_cmd("c2", "alice", "0000000000ABC")),
              alice, before);
}

// ---- Login -----------------------------------------------------------------

TEST_F(user_domain, login_with_the_right_password) {
  register_user(alice);
  auto r = alice.run(login_cmd("c2", "alice", "correct horse"),
                     {verified(true)});
  std::vector<fact_request> expected
    = {{fact_kind::password_verify, "correct horse", stored_hash}};
  EXPECT_EQ(r.needs, expected);
  ASSERT_FALSE(r.rejected());
  ASSERT_EQ(r.events.size(), 1u);
  auto& e = r.events[0].user_logged_in();
  EXPECT_EQ(e.user_id(), "alice");
  EXPECT_EQ(e.client_ip(), "192.0.2.7");
  EXPECT_EQ(e.user_agent(), "testkit/1.0");
  EXPECT_EQ(ms_of(e.logged_in_at()), start_ms);
  ASSERT_TRUE(r.reply.has_login());
  EXPECT_TRUE(r.reply.login().success());
  EXPECT_FALSE(r.reply.login().has_locked_until());
  EXPECT_EQ(r.reply.login().result().seq_nr(), 2);
  EXPECT_EQ(r.reply.login().result().global_position(), alice.position());
  EXPECT_EQ(r.reply.login().result().user_id(), "alice");
}

TEST_F(user_domain, login_with_a_wrong_password_records_the_failure) {
  register_user(alice);
  auto r = alice.run(login_cmd("c2", "alice", "wrong"), {verified(false)});
  ASSERT_FALSE(r.rejected()) << "a failed login is an event, not a rejection";
  ASSERT_EQ(r.events.size(), 1u);
  auto& e = r.events[0].login_failed();
  EXPECT_EQ(e.user_id(), "alice");
  EXPECT_EQ(e.reason(), v1::LOGIN_FAILURE_REASON_WRONG_PASSWORD);
  EXPECT_FALSE(e.has_locked_until());
  EXPECT_EQ(ms_of(e.failed_at()), start_ms);
  EXPECT_EQ(e.client_ip(), "192.0.2.7");
  EXPECT_EQ(e.user_agent(), "testkit/1.0");
  ASSERT_TRUE(r.reply.has_login());
  EXPECT_FALSE(r.reply.login().success());
  EXPECT_FALSE(r.reply.login().has_locked_until());
  EXPECT_EQ(r.reply.login().result().seq_nr(), 2);
  EXPECT_EQ(r.state_after.failed_login_ms, std::vector<int64_t>{start_ms});
  EXPECT_EQ(r.state_after.locked_until_ms, 0);
}

TEST_F(user_domain, login_success_clears_the_failures) {
  register_user(alice);
  for (int i = 0; i < 3; ++i)
    alice.run(login_cmd("f" + std::to_string(i), "alice", "wrong"),
              {verified(false)});
  ASSERT_EQ(alice.state().failed_login_ms.size(), 3u);
  auto r = alice.run(login_cmd("ok", "alice", "correct horse"),
                     {verified(true)});
  ASSERT_TRUE(r.events[0].has_user_logged_in());
  EXPECT_TRUE(r.state_after.failed_login_ms.empty());
  // The count starts over: four more failures do not lock.
  for (int i = 0; i < 4; ++i) {
    auto f = alice.run(login_cmd("g" + std::to_string(i), "alice", "wrong"),
                       {verified(false)});
    EXPECT_FALSE(f.events[0].login_failed().has_locked_until()) << i;
  }
  EXPECT_EQ(alice.state().locked_until_ms, 0);
}

TEST_F(user_domain, the_nth_failure_within_the_window_locks_the_account) {
  register_user(alice);
  user_policy p; // defaults: 5 failures in 15 min lock for 15 min
  for (int i = 1; i < p.max_failed_logins; ++i) {
    auto r = alice.run(login_cmd("f" + std::to_string(i), "alice", "wrong"),
                       {verified(false)});
    ASSERT_EQ(r.events.size(), 1u);
    EXPECT_FALSE(r.events[0].login_failed().has_locked_until()) << i;
    EXPECT_EQ(r.state_after.locked_until_ms, 0);
    alice.clock().advance_ms(minute_ms);
  }
  auto now = alice.now();
  auto r = alice.run(login_cmd("f5", "alice", "wrong"), {verified(false)});
  ASSERT_EQ(r.events.size(), 1u);
  auto& e = r.events[0].login_failed();
  EXPECT_EQ(e.reason(), v1::LOGIN_FAILURE_REASON_WRONG_PASSWORD);
  ASSERT_TRUE(e.has_locked_until());
  EXPECT_EQ(ms_of(e.locked_until()), now + p.lock_ms);
  ASSERT_TRUE(r.reply.has_login());
  EXPECT_FALSE(r.reply.login().success());
  ASSERT_TRUE(r.reply.login().has_locked_until());
  EXPECT_EQ(ms_of(r.reply.login().locked_until()), now + p.lock_ms);
  EXPECT_EQ(r.state_after.locked_until_ms, now + p.lock_ms);
  EXPECT_TRUE(r.state_after.failed_login_ms.empty())
    << "the lock starts a fresh count";
  alice.restart();
}

TEST_F(user_domain, while_locked_login_fails_without_checking_the_password) {
  register_user(alice);
  for (int i = 0; i < 5; ++i)
    alice.run(login_cmd("f" + std::to_string(i), "alice", "wrong"),
              {verified(false)});
  auto until = alice.state().locked_until_ms;
  ASSERT_EQ(until, start_ms + user_policy{}.lock_ms);
  alice.clock().advance_ms(minute_ms);
  auto before = alice.state();

  auto r = alice.run(login_cmd("c9", "alice", "correct horse"));
  EXPECT_TRUE(r.needs.empty()) << "no slow password check while locked";
  ASSERT_FALSE(r.rejected());
  ASSERT_EQ(r.events.size(), 1u);
  auto& e = r.events[0].login_failed();
  EXPECT_EQ(e.reason(), v1::LOGIN_FAILURE_REASON_LOCKED);
  EXPECT_EQ(ms_of(e.locked_until()), until);
  EXPECT_EQ(ms_of(e.failed_at()), start_ms + minute_ms);
  EXPECT_EQ(e.user_id(), "alice");
  ASSERT_TRUE(r.reply.has_login());
  EXPECT_FALSE(r.reply.login().success());
  EXPECT_EQ(ms_of(r.reply.login().locked_until()), until);
  EXPECT_EQ(r.state_after, before)
    << "a locked attempt neither extends the lock nor counts as a failure";
}

TEST_F(user_domain, login_works_again_when_the_lock_expires) {
  register_user(alice);
  for (int i = 0; i < 5; ++i)
    alice.run(login_cmd("f" + std::to_string(i), "alice", "wrong"),
              {verified(false)});
  auto until = alice.state().locked_until_ms;
  alice.clock().set_ms(until - 1);
  EXPECT_TRUE(
    alice.run(login_cmd("l1", "alice", "x")).events[0].login_failed().reason()
    == v1::LOGIN_FAILURE_REASON_LOCKED);
  alice.clock().set_ms(until);
  auto r = alice.run(login_cmd("l2", "alice", "correct horse"),
                     {verified(true)});
  ASSERT_EQ(r.needs.size(), 1u);
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_TRUE(r.events[0].has_user_logged_in());
  EXPECT_TRUE(r.reply.login().success());
  EXPECT_EQ(r.state_after.locked_until_ms, 0);
  alice.restart();
}

TEST_F(user_domain, a_wrong_password_after_the_lock_expires_counts_afresh) {
  register_user(alice);
  for (int i = 0; i < 5; ++i)
    alice.run(login_cmd("f" + std::to_string(i), "alice", "wrong"),
              {verified(false)});
  alice.clock().set_ms(alice.state().locked_until_ms);
  auto r = alice.run(login_cmd("g", "alice", "wrong"), {verified(false)});
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.events[0].login_failed().reason(),
            v1::LOGIN_FAILURE_REASON_WRONG_PASSWORD);
  EXPECT_FALSE(r.events[0].login_failed().has_locked_until());
}

TEST_F(user_domain, failures_outside_the_window_do_not_count) {
  register_user(alice);
  user_policy p;
  for (int i = 0; i < p.max_failed_logins - 1; ++i) {
    alice.run(login_cmd("old" + std::to_string(i), "alice", "wrong"),
              {verified(false)});
    alice.clock().advance_ms(minute_ms);
  }
  // Every earlier failure is now older than the window.
  alice.clock().advance_ms(p.failure_window_ms);
  for (int i = 0; i < p.max_failed_logins - 1; ++i) {
    auto r = alice.run(login_cmd("new" + std::to_string(i), "alice", "wrong"),
                       {verified(false)});
    EXPECT_FALSE(r.events[0].login_failed().has_locked_until()) << i;
    alice.clock().advance_ms(minute_ms);
  }
  auto r = alice.run(login_cmd("last", "alice", "wrong"), {verified(false)});
  EXPECT_TRUE(r.events[0].login_failed().has_locked_until())
    << "the fifth failure inside the window locks";
}

TEST_F(user_domain, a_failure_exactly_at_the_window_start_counts) {
  user_policy p;
  p.max_failed_logins = 2;
  p.failure_window_ms = 10 * 1000;
  p.lock_ms = 60 * 1000;
  user_testkit kit{"alice", p};
  register_user(kit);
  kit.run(login_cmd("f1", "alice", "wrong"), {verified(false)});
  kit.clock().advance_ms(p.failure_window_ms);
  auto r = kit.run(login_cmd("f2", "alice", "wrong"), {verified(false)});
  ASSERT_TRUE(r.events[0].login_failed().has_locked_until());
  EXPECT_EQ(ms_of(r.events[0].login_failed().locked_until()),
            kit.now() + p.lock_ms);
  kit.restart(recovery::through_snapshot);
}

TEST_F(user_domain, the_lock_policy_comes_from_the_environment) {
  user_policy p;
  p.max_failed_logins = 3;
  p.lock_ms = 30 * 1000;
  user_testkit kit{"alice", p};
  register_user(kit);
  kit.run(login_cmd("f1", "alice", "wrong"), {verified(false)});
  kit.run(login_cmd("f2", "alice", "wrong"), {verified(false)});
  auto r = kit.run(login_cmd("f3", "alice", "wrong"), {verified(false)});
  ASSERT_TRUE(r.events[0].login_failed().has_locked_until());
  EXPECT_EQ(kit.state().locked_until_ms, start_ms + 30 * 1000);
}

// evolve() remembers at most max_login_failures_limit failures; a policy
// above 32 (once the old limit) must still lock.
TEST_F(user_domain, policy_above_32_failures_still_locks) {
  user_policy p;
  p.max_failed_logins = 40;
  user_testkit kit{"alice", p};
  register_user(kit);
  bool locked = false;
  for (int i = 0; i < p.max_failed_logins && !locked; ++i) {
    auto r = kit.run(login_cmd("f" + std::to_string(i), "alice", "wrong"),
                     {verified(false)});
    locked = r.events[0].login_failed().has_locked_until();
  }
  EXPECT_TRUE(locked) << p.max_failed_logins
                      << " failures within the window must lock";
}

// The runtime calls needs() and then decide(), reading the clock in each. If
// the lock expires between the two reads, needs() asked for no password check
// (locked) and decide() finds the verify fact missing: that attempt must fail
// as locked, never as INTERNAL.
TEST_F(user_domain, lock_expiring_between_needs_and_decide_fails_as_locked) {
  register_user(alice);
  for (int i = 0; i < 5; ++i)
    alice.run(login_cmd("f" + std::to_string(i), "alice", "wrong"),
              {verified(false)});
  auto until = alice.state().locked_until_ms;
  alice.clock().set_ms(until - 1);
  auto cmd = login_cmd("edge", "alice", "correct horse");
  auto asked = needs(alice.state(), cmd, {}, alice.env());
  EXPECT_TRUE(asked.empty());
  alice.clock().set_ms(until);
  auto eff = decide(alice.state(), cmd, {}, alice.env());
  ASSERT_FALSE(eff.rejected()) << eff.rejection->ShortDebugString();
  ASSERT_EQ(eff.events.size(), 1u);
  EXPECT_EQ(eff.events[0].login_failed().reason(),
            v1::LOGIN_FAILURE_REASON_LOCKED);
}

TEST_F(user_domain, login_by_handle_is_case_insensitive) {
  auto reg = alice.run(register_user_cmd("c1", "alice", "Alice_W"),
                       {no_owner(), hashed(stored_hash)});
  ASSERT_FALSE(reg.rejected());
  auto r = alice.run(login_by_handle_cmd("c2", "ALICE_w", "correct horse"),
                     {verified(true)});
  ASSERT_EQ(r.needs.size(), 1u);
  EXPECT_EQ(r.needs[0].b, stored_hash);
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.events[0].user_logged_in().user_id(), "alice");
  EXPECT_TRUE(r.reply.login().success());
  EXPECT_EQ(r.reply.login().result().user_id(), "alice");
}

TEST_F(user_domain, login_by_another_handle_is_not_found_handle) {
  register_user(alice);
  auto r = alice.run(login_by_handle_cmd("c2", "bob", "correct horse"),
                     {verified(true)});
  expect_rejection(r, v1::REJECTION_CODE_NOT_FOUND, "handle");
}

TEST_F(user_domain, login_of_an_unregistered_user_is_not_found) {
  auto by_id = alice.run(login_cmd("c1", "alice", "pw"));
  EXPECT_TRUE(by_id.needs.empty());
  expect_rejection(by_id, v1::REJECTION_CODE_NOT_FOUND, "user_id");
  auto by_handle = alice.run(login_by_handle_cmd("c2", "alice", "pw"));
  expect_rejection(by_handle, v1::REJECTION_CODE_NOT_FOUND, "handle");
}

TEST_F(user_domain, login_without_the_verify_fact_is_internal) {
  register_user(alice);
  auto r = alice.run(login_cmd("c2", "alice", "pw"), {}, false);
  expect_rejection(r, v1::REJECTION_CODE_INTERNAL, "");
}

// ---- every command of an unregistered user ---------------------------------

TEST_F(user_domain, every_command_of_an_unregistered_user_is_not_found) {
  std::string shout = "0000000000ABC";
  auto update = update_profile_cmd("c", "alice");
  update.mutable_update_profile()->set_bio("b");
  std::vector<v1::UserCommand> commands = {
    update,
    follow_cmd("c", "alice", "bob"),
    unfollow_cmd("c", "alice", "bob"),
    post_shout_cmd("c", "alice", "hi"),
    post_shout_cmd("c", "alice", "hi", shout),
    delete_shout_cmd("c", "alice", shout),
    like_shout_cmd("c", "alice", shout),
    unlike_shout_cmd("c", "alice", shout),
    login_cmd("c", "alice", "pw"),
  };
  for (auto& cmd : commands) {
    SCOPED_TRACE(cmd.ShortDebugString());
    auto r = alice.run(cmd);
    EXPECT_TRUE(r.needs.empty()) << "an unregistered user needs no facts";
    expect_rejection(r, v1::REJECTION_CODE_NOT_FOUND, "user_id");
    EXPECT_EQ(r.state_after, user_state{});
  }
  EXPECT_EQ(alice.seq_nr(), 0);
}

// ---- recovery --------------------------------------------------------------

class user_recovery : public user_domain,
                      public ::testing::WithParamInterface<recovery> {};

TEST_P(user_recovery, restart_after_a_long_mixed_history_equals_live) {
  register_user(alice);
  std::vector<std::string> mine;
  for (int round = 0; round < 8; ++round) {
    auto n = std::to_string(round);
    alice.clock().advance_ms(1234);
    auto target = "user" + std::to_string(round % 3);
    entity::facts target_facts;
    if (alice.state().following.count(target) == 0)
      target_facts.push_back(owner(target));
    alice.run(follow_cmd("fo" + n, "alice", target), target_facts);
    if (round % 2 == 1)
      alice.run(unfollow_cmd("un" + n, "alice",
                             "user" + std::to_string((round + 1) % 3)));
    mine.push_back(post(alice, "po" + n, "shout " + n));
    auto liked = snowflake_generator::encode(1000 + round);
    alice.run(like_shout_cmd("li" + n, "alice", liked), {owner("bob")});
    if (round % 3 == 2)
      alice.run(unlike_shout_cmd("ul" + n, "alice",
                                 snowflake_generator::encode(999 + round)));
    auto upd = update_profile_cmd("up" + n, "alice");
    upd.mutable_update_profile()->set_bio("bio " + n);
    if (round % 2 == 0)
      upd.mutable_update_profile()->set_display_name("Alice " + n);
    alice.run(upd);
    alice.run(login_cmd("lf" + n, "alice", "wrong"), {verified(false)});
    if (round % 4 == 3)
      alice.run(login_cmd("lo" + n, "alice", "correct horse"),
                {verified(true)});
    if (round == 5)
      alice.run(delete_shout_cmd("de" + n, "alice", mine.front()),
                {owner("alice")});
  }
  // Lock the account, so the lock is part of the recovered state.
  for (int i = 0; i < 5; ++i)
    alice.run(login_cmd("lock" + std::to_string(i), "alice", "wrong"),
              {verified(false)});
  ASSERT_GT(alice.state().locked_until_ms, 0);
  alice.run(login_cmd("locked", "alice", "correct horse"));
  alice.run(post_shout_cmd("after", "alice", "still posting"));
  ASSERT_GT(alice.seq_nr(), 40);
  ASSERT_FALSE(alice.state().following.empty());
  ASSERT_FALSE(alice.state().likes.empty());

  auto live = alice.state();
  auto recovered = alice.restart(GetParam());
  EXPECT_EQ(recovered, live);

  // The recovered entity decides exactly as the live one would have.
  auto r = alice.run(follow_cmd("again", "alice", "user0"));
  EXPECT_TRUE(r.events.empty()) << "still following user0 after recovery";
  alice.clock().set_ms(live.locked_until_ms);
  auto ok = alice.run(login_cmd("unlocked", "alice", "correct horse"),
                      {verified(true)});
  EXPECT_TRUE(ok.reply.login().success());
}

INSTANTIATE_TEST_SUITE_P(modes, user_recovery,
                         ::testing::Values(recovery::in_memory,
                                           recovery::through_codec,
                                           recovery::through_snapshot));

TEST_F(user_domain, snapshot_round_trip_equals_live) {
  register_user(alice);
  alice.run(follow_cmd("f1", "alice", "bob"), {owner("bob")});
  alice.run(follow_cmd("f2", "alice", "carol"), {owner("carol")});
  alice.run(like_shout_cmd("l1", "alice", "0000000000AB1"), {owner("bob")});
  alice.run(like_shout_cmd("l2", "alice", "0000000000AB2"), {owner("carol")});
  alice.run(login_cmd("w1", "alice", "wrong"), {verified(false)});
  alice.clock().advance_ms(1);
  alice.run(login_cmd("w2", "alice", "wrong"), {verified(false)});
  auto upd = update_profile_cmd("u", "alice");
  upd.mutable_update_profile()->set_bio("bio");
  alice.run(upd);

  auto decoded = decode_state(encode_state(alice.state()));
  ASSERT_TRUE(decoded.has_value());
  EXPECT_EQ(*decoded, alice.state());
  EXPECT_EQ(decoded->failed_login_ms,
            (std::vector<int64_t>{start_ms, start_ms + 1}));
}

// ---- reply_for -------------------------------------------------------------

TEST(user_reply_for, a_noop_reports_the_current_seq_nr_and_position) {
  auto r = reply_for("alice", {}, 7, 99);
  ASSERT_TRUE(r.has_result());
  EXPECT_EQ(r.result().user_id(), "alice");
  EXPECT_EQ(r.result().seq_nr(), 7);
  EXPECT_EQ(r.result().global_position(), 99);
  EXPECT_EQ(r.result().shout_id(), "");
  EXPECT_FALSE(r.result().duplicate());
}

TEST(user_reply_for, a_posted_shout_sets_shout_id) {
  v1::UserEvent posted;
  posted.mutable_shout_posted()->set_shout_id("0000000000XYZ");
  v1::UserEvent liked;
  liked.mutable_shout_liked()->set_shout_id("0000000000AAA");
  auto r = reply_for("alice", {posted, liked}, 12, 345);
  ASSERT_TRUE(r.has_result());
  EXPECT_EQ(r.result().shout_id(), "0000000000XYZ");
  EXPECT_EQ(r.result().seq_nr(), 12);
  EXPECT_EQ(r.result().global_position(), 345);
}

TEST(user_reply_for, other_events_leave_shout_id_empty) {
  v1::UserEvent liked;
  liked.mutable_shout_liked()->set_shout_id("0000000000AAA");
  auto r = reply_for("alice", {liked}, 2, 3);
  ASSERT_TRUE(r.has_result());
  EXPECT_EQ(r.result().shout_id(), "");
}

TEST(user_reply_for, a_login_is_a_login_result) {
  v1::UserEvent in;
  in.mutable_user_logged_in()->set_user_id("alice");
  auto ok = reply_for("alice", {in}, 4, 40);
  ASSERT_TRUE(ok.has_login());
  EXPECT_TRUE(ok.login().success());
  EXPECT_FALSE(ok.login().has_locked_until());
  EXPECT_EQ(ok.login().result().user_id(), "alice");
  EXPECT_EQ(ok.login().result().seq_nr(), 4);
  EXPECT_EQ(ok.login().result().global_position(), 40);

  v1::UserEvent failed;
  failed.mutable_login_failed()->set_reason(
    v1::LOGIN_FAILURE_REASON_WRONG_PASSWORD);
  auto no = reply_for("alice", {failed}, 5, 50);
  ASSERT_TRUE(no.has_login());
  EXPECT_FALSE(no.login().success());
  EXPECT_FALSE(no.login().has_locked_until());
  EXPECT_EQ(no.login().result().seq_nr(), 5);

  *failed.mutable_login_failed()->mutable_locked_until()
    = google::protobuf::util::TimeUtil::MillisecondsToTimestamp(start_ms);
  auto locked = reply_for("alice", {failed}, 6, 60);
  ASSERT_TRUE(locked.has_login());
  EXPECT_FALSE(locked.login().success());
  ASSERT_TRUE(locked.login().has_locked_until());
  EXPECT_EQ(ms_of(locked.login().locked_until()), start_ms);
  EXPECT_EQ(locked.login().result().global_position(), 60);
}

} // namespace
} // namespace shoutflow::user
