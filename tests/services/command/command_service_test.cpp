// End-to-end tests of the CommandService through real gRPC (the generated
// stub) against an in-process node on real PostgreSQL: every RPC's result,
// every documented error status (G5), idempotent retries (G4), deadlines,
// message limits, garbage input, health, reflection and correlation ids.
//
// Each test gets a fresh database and node; the events table is the ground
// truth every result is checked against.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <google/protobuf/unknown_field_set.h>
#include <google/protobuf/util/time_util.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "actors/common/clock.hpp"
#include "actors/common/id_generator.hpp"
#include "shoutflow/v1/events.pb.h"
#include "tests/support/commands.hpp"
#include "tests/support/test_db.hpp"
#include "tests/support/test_node.hpp"

using namespace shoutflow;
using namespace shoutflow::testing;
using ::testing::HasSubstr;

namespace {

using stub_type = v1::CommandService::Stub;
using std::chrono::milliseconds;
using std::chrono::seconds;
using steady = std::chrono::steady_clock;

template <class Request, class Response>
using rpc_method = grpc::Status (stub_type::*)(grpc::ClientContext*,
                                               const Request&, Response*);

// -- request builders ---------------------------------------------------------

v1::RegisterUserRequest
register_request(const std::string& command_id, const std::string& user_id,
                 const std::string& handle,
                 const std::string& password = test_password) {
  return register_user_request(command_id, user_id, handle, "User " + user_id,
                               password);
}

v1::UpdateProfileRequest update_request(const std::string& command_id,
                                        const std::string& user_id,
                                        const std::string& display_name) {
  auto r = command_request<v1::UpdateProfileRequest>(command_id, user_id);
  r.set_display_name(display_name);
  return r;
}

v1::PostShoutRequest
post_request(const std::string& command_id, const std::string& user_id,
             const std::string& text, const std::string& reply_to = "") {
  auto r = post_shout_request(command_id, user_id, text);
  r.set_reply_to_shout_id(reply_to);
  return r;
}

v1::LoginRequest login_by_id(const std::string& command_id,
                             const std::string& user_id,
                             const std::string& password = test_password) {
  auto r = command_request<v1::LoginRequest>(command_id, user_id);
  r.set_password(password);
  r.set_client_ip("192.0.2.7");
  r.set_user_agent("command_service_test");
  return r;
}

v1::LoginRequest login_by_handle(const std::string& command_id,
                                 const std::string& handle,
                                 const std::string& password = test_password) {
  v1::LoginRequest r;
  r.set_command_id(command_id);
  r.set_handle(handle);
  r.set_password(password);
  r.set_client_ip("2001:db8::1");
  r.set_user_agent("command_service_test");
  return r;
}

/// `n` copies of `unit`.
std::string repeat(const std::string& unit, std::size_t n) {
  std::string out;
  for (std::size_t i = 0; i < n; ++i)
    out += unit;
  return out;
}

// -- raw gRPC helpers (health and reflection have no client headers) ----------

grpc::ByteBuffer to_buffer(const std::string& bytes) {
  grpc::Slice slice{bytes};
  return grpc::ByteBuffer{&slice, 1};
}

std::string from_buffer(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  std::string out;
  if (!buffer.Dump(&slices).ok())
    return out;
  for (auto& s : slices)
    out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

/// Waits for `tag` on `cq` (operations are awaited one at a time, so it is
/// the next event); false on timeout or a failed operation.
bool await_tag(grpc::CompletionQueue& cq, void* tag,
               milliseconds timeout = seconds(10)) {
  void* got = nullptr;
  bool ok = false;
  auto status = cq.AsyncNext(&got, &ok,
                             std::chrono::system_clock::now() + timeout);
  return status == grpc::CompletionQueue::GOT_EVENT && got == tag && ok;
}

/// One unary call by method name with raw bytes.
grpc::Status raw_unary_call(const std::shared_ptr<grpc::Channel>& channel,
                            const std::string& method, const std::string& in,
                            std::string* out,
                            milliseconds timeout = seconds(10)) {
  grpc::GenericStub stub{channel};
  grpc::CompletionQueue cq;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + timeout);
  grpc::ByteBuffer response;
  grpc::Status status;
  auto call = stub.PrepareUnaryCall(&ctx, method, to_buffer(in), &cq);
  call->StartCall();
  int tag = 0;
  call->Finish(&response, &status, &tag);
  if (!await_tag(cq, &tag, timeout + seconds(5)))
    status = {grpc::StatusCode::UNKNOWN, "test: no completion for " + method};
  else if (out != nullptr)
    *out = from_buffer(response);
  cq.Shutdown();
  void* ignored_tag = nullptr;
  bool ignored_ok = false;
  while (cq.Next(&ignored_tag, &ignored_ok)) {
  }
  return status;
}

/// Appends a length-delimited field to a hand-encoded protobuf message.
void put_bytes_field(std::string& msg, int field, const std::string& value) {
  auto varint = [&msg](uint64_t v) {
    while (v >= 0x80) {
      msg.push_back(static_cast<char>((v & 0x7F) | 0x80));
      v >>= 7;
    }
    msg.push_back(static_cast<char>(v));
  };
  varint(static_cast<uint64_t>(field) << 3 | 2);
  varint(value.size());
  msg += value;
}

struct event_row {
  std::string persistence_id;
  int64_t seq_nr = 0;
  std::string type;
  std::string command_id;
  std::string correlation_id;
  std::string causation_id;
  std::string payload;
};

// -- the fixture --------------------------------------------------------------

class command_service_test : public ::testing::Test {
protected:
  void SetUp() override {
    start();
  }

  void start(const std::function<void(node::node_config&)>& tweak = {},
             const shoutflow::clock* clk = nullptr) {
    stub_.reset();
    node_.reset();
    node_ = std::make_unique<test_node>(db_.url(), tweak, clk);
    stub_ = node_->command_stub();
  }

  std::shared_ptr<grpc::Channel> channel() const {
    return grpc::CreateChannel("127.0.0.1:"
                                 + std::to_string(node_->get().command_port()),
                               grpc::InsecureChannelCredentials());
  }

  template <class Request, class Response>
  grpc::Status call(rpc_method<Request, Response> method, const Request& req,
                    Response* out, milliseconds timeout = seconds(10)) {
    auto ctx = context_with_deadline(timeout);
    return ((*stub_).*method)(ctx.get(), req, out);
  }

  /// The result of a call that must succeed (a failure is reported).
  template <class Request, class Response>
  Response ok(rpc_method<Request, Response> method, const Request& req) {
    Response out;
    auto status = call(method, req, &out);
    EXPECT_TRUE(status.ok())
      << "code " << status.error_code() << ": " << status.error_message()
      << "\nrequest: " << req.ShortDebugString();
    return out;
  }

  /// The status of a call that must fail with `code`, naming `field`.
  template <class Request, class Response>
  void expect_error(rpc_method<Request, Response> method, const Request& req,
                    grpc::StatusCode code, const std::string& field) {
    Response out;
    auto status = call(method, req, &out);
    EXPECT_EQ(status.error_code(), code)
      << status.error_message() << "\nrequest: " << req.ShortDebugString();
    EXPECT_THAT(status.error_message(), HasSubstr(field))
      << "request: " << req.ShortDebugString();
  }

  int64_t event_count() const {
    return db_.scalar<int64_t>("SELECT count(*) FROM events");
  }

  int64_t events_of_command(const std::string& command_id) const {
    pqxx::connection conn{db_.url()};
    pqxx::read_transaction tx{conn};
    return tx
      .exec_params1("SELECT count(*) FROM events WHERE command_id = $1",
                    command_id)[0]
      .as<int64_t>();
  }

  std::optional<event_row> event_at(int64_t position) const {
    pqxx::connection conn{db_.url()};
    pqxx::read_transaction tx{conn};
    auto rows = tx.exec_params(
      "SELECT persistence_id, seq_nr, event_type, coalesce(command_id, ''),"
      "       coalesce(correlation_id, ''), coalesce(causation_id, ''), payload"
      "  FROM events WHERE global_position = $1",
      position);
    if (rows.empty())
      return std::nullopt;
    auto& r = rows[0];
    return event_row{r[0].as<std::string>(),        r[1].as<int64_t>(),
                     r[2].as<std::string>(),        r[3].as<std::string>(),
                     r[4].as<std::string>(),        r[5].as<std::string>(),
                     pqxx::binarystring{r[6]}.str()};
  }

  /// Checks a fresh (non-duplicate) result against the event it reports and
  /// against the previous position (`last_position`, updated).
  void expect_applied(const v1::CommandResult& r, const std::string& user_id,
                      int64_t seq_nr, const std::string& event_type,
                      const std::string& command_id) {
    EXPECT_EQ(r.user_id(), user_id);
    EXPECT_EQ(r.seq_nr(), seq_nr);
    EXPECT_FALSE(r.duplicate());
    EXPECT_GT(r.global_position(), last_position_);
    last_position_ = r.global_position();
    auto row = event_at(r.global_position());
    ASSERT_TRUE(row.has_value())
      << "no event at global_position " << r.global_position();
    EXPECT_EQ(row->persistence_id, "user|" + user_id);
    EXPECT_EQ(row->seq_nr, seq_nr);
    EXPECT_EQ(row->type, event_type);
    EXPECT_EQ(row->command_id, command_id);
  }

  /// Registers `user_id` with handle `user_id` (reported on failure).
  v1::CommandResult register_ok(const std::string& user_id) {
    return ok(&stub_type::RegisterUser,
              register_request("reg-" + user_id, user_id, user_id));
  }

  test_database db_;
  std::unique_ptr<test_node> node_;
  std::unique_ptr<stub_type> stub_;
  int64_t last_position_ = 0;
};

// -- happy paths --------------------------------------------------------------

TEST_F(command_service_test, register_user_appends_user_registered) {
  auto r = register_ok("alice");
  expect_applied(r, "alice", 1, "UserRegistered", "reg-alice");
  EXPECT_TRUE(r.shout_id().empty());
  // The password is stored only as a salted hash.
  EXPECT_EQ(db_.scalar<int64_t>("SELECT count(*) FROM events WHERE position("
                                "convert_to('correct horse', 'UTF8') IN "
                                "payload) > 0"),
            0);
  v1::UserRegistered ev;
  ASSERT_TRUE(ev.ParseFromString(event_at(r.global_position())->payload));
  EXPECT_EQ(ev.handle(), "alice");
  EXPECT_THAT(ev.password_hash(), HasSubstr("$argon2id$"));
  // Handle and user claims are taken in the event's transaction.
  EXPECT_EQ(db_.scalar<int64_t>("SELECT count(*) FROM claims WHERE owner_id = "
                                "'alice' AND namespace IN ('user', 'handle')"),
            2);
  auto b = register_ok("bob");
  expect_applied(b, "bob", 1, "UserRegistered", "reg-bob");
  EXPECT_EQ(event_count(), 2);
}

TEST_F(command_service_test, update_profile_appends_profile_updated) {
  register_ok("alice");
  last_position_ = 0;
  auto r = ok(&stub_type::UpdateProfile,
              update_request("u1", "alice", "Alice"));
  expect_applied(r, "alice", 2, "ProfileUpdated", "u1");
  auto bio_request = update_request("u2", "alice", "Alice");
  bio_request.clear_display_name();
  bio_request.set_bio("Ünïcödé bio ✓");
  auto bio = ok(&stub_type::UpdateProfile, bio_request);
  expect_applied(bio, "alice", 3, "ProfileUpdated", "u2");
  // Setting what is already set changes nothing: success without an event.
  auto same = ok(&stub_type::UpdateProfile,
                 update_request("u3", "alice", "Alice"));
  EXPECT_EQ(same.seq_nr(), 3);
  EXPECT_FALSE(same.duplicate());
  EXPECT_EQ(event_count(), 3);
}

TEST_F(command_service_test, follow_and_unfollow_append_events) {
  register_ok("alice");
  register_ok("bob");
  auto f = ok(&stub_type::Follow,
              target_request<v1::FollowRequest>("f1", "alice", "bob"));
  expect_applied(f, "alice", 2, "UserFollowed", "f1");
  auto u = ok(&stub_type::Unfollow,
              target_request<v1::UnfollowRequest>("f2", "alice", "bob"));
  expect_applied(u, "alice", 3, "UserUnfollowed", "f2");
  auto again = ok(&stub_type::Follow,
                  target_request<v1::FollowRequest>("f3", "alice", "bob"));
  expect_applied(again, "alice", 4, "UserFollowed", "f3");
  EXPECT_EQ(event_count(), 5);
}

TEST_F(command_service_test, post_shout_returns_time_ordered_shout_ids) {
  register_ok("alice");
  std::string previous;
  for (int i = 0; i < 5; ++i) {
    auto id = "p" + std::to_string(i);
    auto r = ok(&stub_type::PostShout,
                post_request(id, "alice", "shout number " + std::to_string(i)));
    expect_applied(r, "alice", 2 + i, "ShoutPosted", id);
    EXPECT_EQ(r.shout_id().size(), 13u);
    EXPECT_TRUE(snowflake_generator::well_formed(r.shout_id())) << r.shout_id();
    EXPECT_GT(r.shout_id(), previous) << "later ids sort after earlier ones";
    v1::ShoutPosted ev;
    ASSERT_TRUE(ev.ParseFromString(event_at(r.global_position())->payload));
    EXPECT_EQ(ev.shout_id(), r.shout_id());
    EXPECT_EQ(ev.text(), "shout number " + std::to_string(i));
    previous = r.shout_id();
  }
  // A reply to an existing shout.
  auto reply = ok(&stub_type::PostShout,
                  post_request("p-reply", "alice", "replying", previous));
  expect_applied(reply, "alice", 7, "ShoutPosted", "p-reply");
  EXPECT_GT(reply.shout_id(), previous);
  EXPECT_EQ(event_count(), 7);
}

TEST_F(command_service_test, delete_shout_appends_shout_deleted) {
  register_ok("alice");
  auto p = ok(&stub_type::PostShout, post_request("p1", "alice", "soon gone"));
  auto d = ok(&stub_type::DeleteShout, shout_request<v1::DeleteShoutRequest>(
                                         "d1", "alice", p.shout_id()));
  expect_applied(d, "alice", 3, "ShoutDeleted", "d1");
  EXPECT_TRUE(d.shout_id().empty());
  EXPECT_EQ(event_count(), 3);
}

TEST_F(command_service_test, like_and_unlike_append_events) {
  register_ok("alice");
  register_ok("bob");
  auto p = ok(&stub_type::PostShout, post_request("p1", "bob", "like me"));
  last_position_ = p.global_position();
  auto l = ok(&stub_type::LikeShout,
              shout_request<v1::LikeShoutRequest>("l1", "alice", p.shout_id()));
  expect_applied(l, "alice", 2, "ShoutLiked", "l1");
  v1::ShoutLiked ev;
  ASSERT_TRUE(ev.ParseFromString(event_at(l.global_position())->payload));
  EXPECT_EQ(ev.author_id(), "bob");
  auto u = ok(&stub_type::UnlikeShout, shout_request<v1::UnlikeShoutRequest>(
                                         "l2", "alice", p.shout_id()));
  expect_applied(u, "alice", 3, "ShoutUnliked", "l2");
  EXPECT_EQ(event_count(), 5);
}

TEST_F(command_service_test, login_by_user_id_and_by_handle_in_any_case) {
  ok(&stub_type::RegisterUser, register_request("r1", "user-1", "Alice_W"));
  last_position_ = 0;
  auto by_id = ok(&stub_type::Login, login_by_id("l1", "user-1"));
  EXPECT_TRUE(by_id.success());
  EXPECT_FALSE(by_id.has_locked_until());
  expect_applied(by_id.result(), "user-1", 2, "UserLoggedIn", "l1");
  int64_t seq = 3;
  for (auto handle : {"Alice_W", "alice_w", "ALICE_W", "aLiCe_w"}) {
    SCOPED_TRACE(handle);
    auto command_id = std::string{"l-"} + handle;
    auto r = ok(&stub_type::Login, login_by_handle(command_id, handle));
    EXPECT_TRUE(r.success());
    expect_applied(r.result(), "user-1", seq++, "UserLoggedIn", command_id);
  }
  EXPECT_EQ(event_count(), 6);
}

// -- INVALID_ARGUMENT ---------------------------------------------------------

// Malformed UTF-8 must be rejected with INVALID_ARGUMENT naming the field
// (API.md: "text is valid UTF-8"; DESIGN.md G5). Fails today: proto3
// `string` fields are UTF-8-checked by the protobuf parser, and gRPC's
// callback API answers a request that does not parse with UNIMPLEMENTED and
// an empty message, before the service's own validation can run.
TEST_F(command_service_test, malformed_utf8_text_is_invalid_argument) {
  register_ok("alice");
  for (std::string bad :
       {std::string{"\xff\xfe"}, std::string{"ab\xc3"}, std::string{"\xc0\xaf"},
        std::string{"\xed\xa0\x80"}, std::string{"\xf4\x90\x80\x80"}}) {
    SCOPED_TRACE(::testing::PrintToString(bad));
    expect_error(&stub_type::PostShout, post_request("bad-utf8", "alice", bad),
                 grpc::StatusCode::INVALID_ARGUMENT, "text");
  }
  EXPECT_EQ(event_count(), 1);
}

TEST_F(command_service_test,
       malformed_utf8_in_other_text_fields_is_invalid_argument) {
  register_ok("alice");
  const std::string bad = "\xff";
  auto reg = register_request("r2", "bob", "bob");
  reg.set_display_name(bad);
  expect_error(&stub_type::RegisterUser, reg,
               grpc::StatusCode::INVALID_ARGUMENT, "display_name");
  auto update = update_request("u1", "alice", "x");
  update.clear_display_name();
  update.set_bio(bad);
  expect_error(&stub_type::UpdateProfile, update,
               grpc::StatusCode::INVALID_ARGUMENT, "bio");
  auto login = login_by_id("l1", "alice");
  login.set_user_agent(bad);
  expect_error(&stub_type::Login, login, grpc::StatusCode::INVALID_ARGUMENT,
               "user_agent");
  expect_error(&stub_type::PostShout,
               post_request("p1",
                            "al\xff"
                            "ce",
                            "hi"),
               grpc::StatusCode::INVALID_ARGUMENT, "user_id");
  EXPECT_EQ(event_count(), 1);
}

TEST_F(command_service_test, text_length_is_counted_in_code_points) {
  register_ok("alice");
  expect_error(&stub_type::PostShout, post_request("t1", "alice", ""),
               grpc::StatusCode::INVALID_ARGUMENT, "text");
  expect_error(&stub_type::PostShout,
               post_request("t2", "alice", std::string(281, 'a')),
               grpc::StatusCode::INVALID_ARGUMENT, "text");
  expect_error(&stub_type::PostShout,
               post_request("t3", "alice", repeat("é", 281)),
               grpc::StatusCode::INVALID_ARGUMENT, "text");
  EXPECT_EQ(event_count(), 1);
  // 280 code points are accepted whatever their byte length.
  ok(&stub_type::PostShout, post_request("t4", "alice", std::string(280, 'a')));
  ok(&stub_type::PostShout, post_request("t5", "alice", repeat("é", 280)));
  ok(&stub_type::PostShout, post_request("t6", "alice", repeat("漢", 280)));
  ok(&stub_type::PostShout,
     post_request("t7", "alice", repeat("\xf0\x9f\x98\x80", 280)));
  EXPECT_EQ(event_count(), 5);
}

TEST_F(command_service_test, malformed_user_ids_are_invalid_argument) {
  register_ok("alice");
  for (auto bad : {std::string{}, std::string(65, 'u'), std::string{"al ice"},
                   std::string{"alice!"}, std::string{"a/b"},
                   std::string{"\xc3\xa5lice"}, std::string{"a.b"}}) {
    SCOPED_TRACE(::testing::PrintToString(bad));
    expect_error(&stub_type::RegisterUser, register_request("r", bad, "handle"),
                 grpc::StatusCode::INVALID_ARGUMENT, "user_id");
    expect_error(&stub_type::PostShout, post_request("p", bad, "hi"),
                 grpc::StatusCode::INVALID_ARGUMENT, "user_id");
    expect_error(&stub_type::Login, login_by_id("l", bad),
                 grpc::StatusCode::INVALID_ARGUMENT, "user_id");
    expect_error(&stub_type::Follow,
                 target_request<v1::FollowRequest>("f", "alice", bad),
                 grpc::StatusCode::INVALID_ARGUMENT, "target_user_id");
  }
  EXPECT_EQ(event_count(), 1);
  // The limits themselves are accepted: 64 characters, '-' and '_'.
  auto longest = std::string(62, 'x') + "-_";
  auto reg = register_request("r64", longest, "x64");
  reg.set_display_name("Longest");
  auto r = ok(&stub_type::RegisterUser, reg);
  EXPECT_EQ(r.user_id(), longest);
}

TEST_F(command_service_test, malformed_handles_are_invalid_argument) {
  for (auto bad : {std::string{}, std::string(16, 'h'), std::string{"al-ice"},
                   std::string{"al ice"}, std::string{"ali\xc3\xa7"}}) {
    SCOPED_TRACE(::testing::PrintToString(bad));
    expect_error(&stub_type::RegisterUser, register_request("r", "alice", bad),
                 grpc::StatusCode::INVALID_ARGUMENT, "handle");
    expect_error(&stub_type::Login, login_by_handle("l", bad),
                 grpc::StatusCode::INVALID_ARGUMENT, "handle");
  }
  EXPECT_EQ(event_count(), 0);
  ok(&stub_type::RegisterUser,
     register_request("r15", "alice", std::string(14, 'h') + "_"));
}

TEST_F(command_service_test, command_id_is_required_on_every_rpc) {
  register_ok("alice");
  auto shout = std::string{"0000000000001"};
  const std::vector<
    std::pair<std::string, std::function<grpc::Status(const std::string&)>>>
    calls = {
      {"RegisterUser",
       [&](const std::string& id) {
         v1::CommandResult out;
         return call(&stub_type::RegisterUser,
                     register_request(id, "bob", "bob"), &out);
       }},
      {"UpdateProfile",
       [&](const std::string& id) {
         v1::CommandResult out;
         return call(&stub_type::UpdateProfile,
                     update_request(id, "alice", "A"), &out);
       }},
      {"Follow",
       [&](const std::string& id) {
         v1::CommandResult out;
         return call(&stub_type::Follow,
                     target_request<v1::FollowRequest>(id, "alice", "carol"),
                     &out);
       }},
      {"Unfollow",
       [&](const std::string& id) {
         v1::CommandResult out;
         return call(&stub_type::Unfollow,
                     target_request<v1::UnfollowRequest>(id, "alice", "carol"),
                     &out);
       }},
      {"PostShout",
       [&](const std::string& id) {
         v1::CommandResult out;
         return call(&stub_type::PostShout, post_request(id, "alice", "hi"),
                     &out);
       }},
      {"DeleteShout",
       [&](const std::string& id) {
         v1::CommandResult out;
         return call(&stub_type::DeleteShout,
                     shout_request<v1::DeleteShoutRequest>(id, "alice", shout),
                     &out);
       }},
      {"LikeShout",
       [&](const std::string& id) {
         v1::CommandResult out;
         return call(&stub_type::LikeShout,
                     shout_request<v1::LikeShoutRequest>(id, "alice", shout),
                     &out);
       }},
      {"UnlikeShout",
       [&](const std::string& id) {
         v1::CommandResult out;
         return call(&stub_type::UnlikeShout,
                     shout_request<v1::UnlikeShoutRequest>(id, "alice", shout),
                     &out);
       }},
      {"Login",
       [&](const std::string& id) {
         v1::LoginResult out;
         return call(&stub_type::Login, login_by_id(id, "alice"), &out);
       }},
    };
  for (auto& [name, run] : calls) {
    for (auto bad : {std::string{}, std::string(65, 'c'), std::string{"a\nb"},
                     std::string{"caf\xc3\xa9"}}) {
      SCOPED_TRACE(name + " with command_id " + ::testing::PrintToString(bad));
      auto status = run(bad);
      EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << status.error_message();
      EXPECT_THAT(status.error_message(), HasSubstr("command_id"));
    }
  }
  EXPECT_EQ(event_count(), 1);
  // 64 printable characters are a valid command id.
  ok(&stub_type::PostShout,
     post_request(std::string(60, 'k') + "-:/!", "alice", "max id"));
  EXPECT_EQ(event_count(), 2);
}

TEST_F(command_service_test, following_oneself_is_invalid_argument) {
  register_ok("alice");
  expect_error(&stub_type::Follow,
               target_request<v1::FollowRequest>("f1", "alice", "alice"),
               grpc::StatusCode::INVALID_ARGUMENT, "target_user_id");
  expect_error(&stub_type::Unfollow,
               target_request<v1::UnfollowRequest>("f2", "alice", "alice"),
               grpc::StatusCode::INVALID_ARGUMENT, "target_user_id");
  EXPECT_EQ(event_count(), 1);
}

TEST_F(command_service_test, malformed_shout_ids_are_invalid_argument) {
  register_ok("alice");
  for (auto bad :
       {std::string{}, std::string{"abc"}, std::string{"00000000000001"},
        std::string{"000000000000I"}, std::string{"000000000000u"},
        std::string{"8000000000000"}, std::string{"00000000000-1"}}) {
    SCOPED_TRACE(::testing::PrintToString(bad));
    expect_error(&stub_type::DeleteShout,
                 shout_request<v1::DeleteShoutRequest>("d", "alice", bad),
                 grpc::StatusCode::INVALID_ARGUMENT, "shout_id");
    expect_error(&stub_type::LikeShout,
                 shout_request<v1::LikeShoutRequest>("l", "alice", bad),
                 grpc::StatusCode::INVALID_ARGUMENT, "shout_id");
    expect_error(&stub_type::UnlikeShout,
                 shout_request<v1::UnlikeShoutRequest>("u", "alice", bad),
                 grpc::StatusCode::INVALID_ARGUMENT, "shout_id");
    if (!bad.empty()) // empty means "not a reply"
      expect_error(&stub_type::PostShout, post_request("p", "alice", "re", bad),
                   grpc::StatusCode::INVALID_ARGUMENT, "reply_to_shout_id");
  }
  EXPECT_EQ(event_count(), 1);
}

TEST_F(command_service_test, login_needs_user_id_or_handle) {
  register_ok("alice");
  v1::LoginRequest neither;
  neither.set_command_id("l1");
  neither.set_password("correct horse");
  expect_error(&stub_type::Login, neither, grpc::StatusCode::INVALID_ARGUMENT,
               "user_id");
  EXPECT_EQ(event_count(), 1);
}

// -- NOT_FOUND ----------------------------------------------------------------

TEST_F(command_service_test, unknown_user_is_not_found_for_every_command) {
  register_ok("alice");
  auto p = ok(&stub_type::PostShout, post_request("p1", "alice", "hello"));
  auto before = event_count();
  auto nf = grpc::StatusCode::NOT_FOUND;
  expect_error(&stub_type::UpdateProfile, update_request("c1", "ghost", "G"),
               nf, "user_id");
  expect_error(&stub_type::Follow,
               target_request<v1::FollowRequest>("c2", "ghost", "alice"), nf,
               "user_id");
  expect_error(&stub_type::Unfollow,
               target_request<v1::UnfollowRequest>("c3", "ghost", "alice"), nf,
               "user_id");
  expect_error(&stub_type::PostShout, post_request("c4", "ghost", "boo"), nf,
               "user_id");
  expect_error(&stub_type::DeleteShout,
               shout_request<v1::DeleteShoutRequest>("c5", "ghost",
                                                     p.shout_id()),
               nf, "user_id");
  expect_error(&stub_type::LikeShout,
               shout_request<v1::LikeShoutRequest>("c6", "ghost", p.shout_id()),
               nf, "user_id");
  expect_error(&stub_type::UnlikeShout,
               shout_request<v1::UnlikeShoutRequest>("c7", "ghost",
                                                     p.shout_id()),
               nf, "user_id");
  expect_error(&stub_type::Login, login_by_id("c8", "ghost"), nf, "user_id");
  expect_error(&stub_type::Login, login_by_handle("c9", "ghost"), nf, "handle");
  EXPECT_EQ(event_count(), before);
}

TEST_F(command_service_test, follow_unknown_target_is_not_found) {
  register_ok("alice");
  expect_error(&stub_type::Follow,
               target_request<v1::FollowRequest>("f1", "alice", "nobody"),
               grpc::StatusCode::NOT_FOUND, "target_user_id");
  EXPECT_EQ(event_count(), 1);
}

TEST_F(command_service_test, unknown_or_deleted_shout_is_not_found) {
  register_ok("alice");
  register_ok("bob");
  auto p = ok(&stub_type::PostShout,
              post_request("p1", "alice", "short-lived"));
  // Well-formed, but never issued.
  auto never = snowflake_generator::encode(12345);
  expect_error(&stub_type::LikeShout,
               shout_request<v1::LikeShoutRequest>("l1", "bob", never),
               grpc::StatusCode::NOT_FOUND, "shout_id");
  expect_error(&stub_type::DeleteShout,
               shout_request<v1::DeleteShoutRequest>("d1", "alice", never),
               grpc::StatusCode::NOT_FOUND, "shout_id");
  expect_error(&stub_type::PostShout, post_request("p2", "bob", "re", never),
               grpc::StatusCode::NOT_FOUND, "reply_to_shout_id");
  ok(&stub_type::DeleteShout,
     shout_request<v1::DeleteShoutRequest>("d2", "alice", p.shout_id()));
  auto before = event_count();
  expect_error(&stub_type::LikeShout,
               shout_request<v1::LikeShoutRequest>("l2", "bob", p.shout_id()),
               grpc::StatusCode::NOT_FOUND, "shout_id");
  expect_error(&stub_type::DeleteShout,
               shout_request<v1::DeleteShoutRequest>("d3", "alice",
                                                     p.shout_id()),
               grpc::StatusCode::NOT_FOUND, "shout_id");
  expect_error(&stub_type::PostShout,
               post_request("p3", "bob", "re", p.shout_id()),
               grpc::StatusCode::NOT_FOUND, "reply_to_shout_id");
  EXPECT_EQ(event_count(), before);
}

// -- ALREADY_EXISTS, PERMISSION_DENIED, no-ops --------------------------------

TEST_F(command_service_test, taken_user_id_or_handle_is_already_exists) {
  ok(&stub_type::RegisterUser, register_request("r1", "alice", "Alice"));
  expect_error(&stub_type::RegisterUser,
               register_request("r2", "alice", "other"),
               grpc::StatusCode::ALREADY_EXISTS, "user_id");
  for (auto handle : {"Alice", "alice", "ALICE", "aLICE"}) {
    SCOPED_TRACE(handle);
    expect_error(&stub_type::RegisterUser,
                 register_request(std::string{"r3-"} + handle, "alice2",
                                  handle),
                 grpc::StatusCode::ALREADY_EXISTS, "handle");
  }
  EXPECT_EQ(event_count(), 1);
  // The rejected user id stays free.
  ok(&stub_type::RegisterUser, register_request("r4", "alice2", "alice2"));
  EXPECT_EQ(event_count(), 2);
}

TEST_F(command_service_test,
       deleting_someone_elses_shout_is_permission_denied) {
  register_ok("alice");
  register_ok("bob");
  auto p = ok(&stub_type::PostShout, post_request("p1", "alice", "mine"));
  expect_error(&stub_type::DeleteShout,
               shout_request<v1::DeleteShoutRequest>("d1", "bob", p.shout_id()),
               grpc::StatusCode::PERMISSION_DENIED, "shout_id");
  EXPECT_EQ(event_count(), 3);
  // The shout is untouched: bob can still like it.
  ok(&stub_type::LikeShout,
     shout_request<v1::LikeShoutRequest>("l1", "bob", p.shout_id()));
}

TEST_F(command_service_test, repeated_follow_like_unlike_unfollow_are_noops) {
  register_ok("alice");
  register_ok("bob");
  auto p = ok(&stub_type::PostShout, post_request("p1", "bob", "hello"));
  auto f = ok(&stub_type::Follow,
              target_request<v1::FollowRequest>("f1", "alice", "bob"));
  auto l = ok(&stub_type::LikeShout,
              shout_request<v1::LikeShoutRequest>("l1", "alice", p.shout_id()));
  auto before = event_count();
  // New command ids: not retries, but commands with nothing left to do.
  auto f2 = ok(&stub_type::Follow,
               target_request<v1::FollowRequest>("f2", "alice", "bob"));
  EXPECT_EQ(f2.seq_nr(), l.seq_nr());
  EXPECT_EQ(f2.global_position(), l.global_position());
  EXPECT_FALSE(f2.duplicate());
  auto l2 = ok(&stub_type::LikeShout, shout_request<v1::LikeShoutRequest>(
                                        "l2", "alice", p.shout_id()));
  EXPECT_EQ(l2.seq_nr(), l.seq_nr());
  EXPECT_FALSE(l2.duplicate());
  EXPECT_EQ(event_count(), before);
  ok(&stub_type::UnlikeShout,
     shout_request<v1::UnlikeShoutRequest>("u1", "alice", p.shout_id()));
  ok(&stub_type::Unfollow,
     target_request<v1::UnfollowRequest>("u2", "alice", "bob"));
  before = event_count();
  auto u3 = ok(&stub_type::UnlikeShout, shout_request<v1::UnlikeShoutRequest>(
                                          "u3", "alice", p.shout_id()));
  auto u4 = ok(&stub_type::Unfollow,
               target_request<v1::UnfollowRequest>("u4", "alice", "bob"));
  EXPECT_EQ(u3.seq_nr(), f.seq_nr() + 3);
  EXPECT_EQ(u4.seq_nr(), f.seq_nr() + 3);
  EXPECT_FALSE(u4.duplicate());
  EXPECT_EQ(event_count(), before);
  EXPECT_EQ(events_of_command("f2") + events_of_command("l2")
              + events_of_command("u3") + events_of_command("u4"),
            0);
}

TEST_F(command_service_test, concurrent_claims_of_one_handle_have_one_winner) {
  constexpr int contenders = 8;
  std::vector<grpc::Status> statuses(contenders);
  std::vector<std::thread> threads;
  for (int i = 0; i < contenders; ++i)
    threads.emplace_back([&, i] {
      auto stub = node_->command_stub();
      v1::CommandResult out;
      auto ctx = context_with_deadline();
      // Different users, one handle in different letter cases.
      statuses[i] = stub->RegisterUser(
        ctx.get(),
        register_request("race-" + std::to_string(i),
                         "racer-" + std::to_string(i),
                         i % 2 == 0 ? "Popular" : "pOPULAR"),
        &out);
    });
  for (auto& t : threads)
    t.join();
  int winners = 0;
  for (auto& status : statuses) {
    if (status.ok()) {
      ++winners;
      continue;
    }
    EXPECT_EQ(status.error_code(), grpc::StatusCode::ALREADY_EXISTS)
      << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr("handle"));
  }
  EXPECT_EQ(winners, 1);
  EXPECT_EQ(event_count(), 1);
  EXPECT_EQ(db_.scalar<int64_t>(
              "SELECT count(*) FROM claims WHERE namespace = 'handle'"),
            1);
}

TEST_F(command_service_test, concurrent_commands_of_one_user_get_distinct_seq) {
  register_ok("alice");
  constexpr int threads_n = 8;
  constexpr int per_thread = 20;
  std::vector<std::vector<v1::CommandResult>> results(threads_n);
  std::vector<std::thread> threads;
  for (int t = 0; t < threads_n; ++t)
    threads.emplace_back([&, t] {
      auto stub = node_->command_stub();
      for (int i = 0; i < per_thread; ++i) {
        v1::CommandResult out;
        auto ctx = context_with_deadline();
        auto status = stub->PostShout(
          ctx.get(),
          post_request("c" + std::to_string(t) + "-" + std::to_string(i),
                       "alice", "concurrent"),
          &out);
        EXPECT_TRUE(status.ok()) << status.error_message();
        results[t].push_back(out);
      }
    });
  for (auto& t : threads)
    t.join();
  std::set<int64_t> seqs;
  std::set<int64_t> positions;
  std::set<std::string> shout_ids;
  for (auto& per_thread_results : results)
    for (auto& r : per_thread_results) {
      seqs.insert(r.seq_nr());
      positions.insert(r.global_position());
      shout_ids.insert(r.shout_id());
    }
  constexpr auto total = static_cast<std::size_t>(threads_n * per_thread);
  ASSERT_EQ(seqs.size(), total) << "every command its own seq_nr";
  EXPECT_EQ(*seqs.begin(), 2);
  EXPECT_EQ(*seqs.rbegin(), static_cast<int64_t>(total) + 1);
  EXPECT_EQ(positions.size(), total);
  EXPECT_EQ(shout_ids.size(), total);
  EXPECT_EQ(db_.scalar<int64_t>("SELECT max(seq_nr) - count(*) FROM events "
                                "WHERE persistence_id = 'user|alice'"),
            0);
}

// -- login lockout (manual clock) ---------------------------------------------

class login_lockout_test : public command_service_test {
protected:
  static constexpr int64_t lock_ms = 15 * 60 * 1000;
  static constexpr int64_t window_ms = 60 * 1000;

  void SetUp() override {
    start(
      [](node::node_config& cfg) {
        cfg.login_max_failures = 3;
        cfg.login_lock = milliseconds(lock_ms);
        cfg.login_failure_window = milliseconds(window_ms);
      },
      &clock_);
    register_ok("alice");
  }

  // The node reads clock_, which dies before the base fixture's members.
  void TearDown() override {
    stub_.reset();
    node_.reset();
  }

  int64_t millis_of(const google::protobuf::Timestamp& t) const {
    return google::protobuf::util::TimeUtil::TimestampToMilliseconds(t);
  }

  v1::LoginFailed failure_at(int64_t position) const {
    v1::LoginFailed ev;
    auto row = event_at(position);
    EXPECT_TRUE(row.has_value());
    if (row) {
      EXPECT_EQ(row->type, "LoginFailed");
      EXPECT_TRUE(ev.ParseFromString(row->payload));
    }
    return ev;
  }

  manual_clock clock_{system_clock{}.now_ms()};
};

TEST_F(login_lockout_test, third_failure_locks_until_the_clock_passes) {
  int64_t seq = 2;
  for (int i = 1; i <= 2; ++i) {
    auto id = "wrong-" + std::to_string(i);
    auto r = ok(&stub_type::Login, login_by_id(id, "alice", "wrong password"));
    EXPECT_FALSE(r.success());
    EXPECT_FALSE(r.has_locked_until()) << "failure " << i << " must not lock";
    expect_applied(r.result(), "alice", seq++, "LoginFailed", id);
    EXPECT_EQ(failure_at(r.result().global_position()).reason(),
              v1::LOGIN_FAILURE_REASON_WRONG_PASSWORD);
    clock_.advance_ms(1000);
  }
  auto third = ok(&stub_type::Login,
                  login_by_handle("wrong-3", "ALICE", "wrong password"));
  EXPECT_FALSE(third.success());
  ASSERT_TRUE(third.has_locked_until()) << "the 3rd failure locks";
  auto locked_until = millis_of(third.locked_until());
  EXPECT_EQ(locked_until, clock_.now_ms() + lock_ms);
  expect_applied(third.result(), "alice", seq++, "LoginFailed", "wrong-3");

  // The right password does not help while locked.
  clock_.advance_ms(lock_ms - 1000);
  auto while_locked = ok(&stub_type::Login, login_by_id("right-1", "alice"));
  EXPECT_FALSE(while_locked.success());
  ASSERT_TRUE(while_locked.has_locked_until());
  EXPECT_EQ(millis_of(while_locked.locked_until()), locked_until);
  expect_applied(while_locked.result(), "alice", seq++, "LoginFailed",
                 "right-1");
  EXPECT_EQ(failure_at(while_locked.result().global_position()).reason(),
            v1::LOGIN_FAILURE_REASON_LOCKED);

  clock_.set_ms(locked_until + 1);
  auto after = ok(&stub_type::Login, login_by_id("right-2", "alice"));
  EXPECT_TRUE(after.success());
  EXPECT_FALSE(after.has_locked_until());
  expect_applied(after.result(), "alice", seq++, "UserLoggedIn", "right-2");

  // A success starts a fresh count: one more failure does not lock.
  auto fresh = ok(&stub_type::Login,
                  login_by_id("wrong-4", "alice", "wrong password"));
  EXPECT_FALSE(fresh.success());
  EXPECT_FALSE(fresh.has_locked_until());
  // Every attempt is one event: registration + 6 logins.
  EXPECT_EQ(event_count(), 7);
  EXPECT_EQ(db_.scalar<int64_t>(
              "SELECT count(*) FROM events WHERE event_type = 'LoginFailed'"),
            5);
}

TEST_F(login_lockout_test, failures_outside_the_window_do_not_lock) {
  for (int i = 1; i <= 2; ++i) {
    auto r = ok(&stub_type::Login, login_by_id("w" + std::to_string(i), "alice",
                                               "wrong password"));
    EXPECT_FALSE(r.has_locked_until());
  }
  clock_.advance_ms(window_ms + 1);
  auto third = ok(&stub_type::Login, login_by_id("w3", "alice", "nope nope"));
  EXPECT_FALSE(third.success());
  EXPECT_FALSE(third.has_locked_until())
    << "the first two failures left the window";
  auto right = ok(&stub_type::Login, login_by_id("r1", "alice"));
  EXPECT_TRUE(right.success());
  EXPECT_EQ(event_count(), 5);
}

// -- G4: retries --------------------------------------------------------------

TEST_F(command_service_test, retry_with_same_command_id_returns_first_result) {
  auto first_reg = register_ok("alice");
  register_ok("bob");
  auto p = ok(&stub_type::PostShout, post_request("p1", "bob", "retry me"));
  struct retried {
    std::string name;
    v1::CommandResult first;
    std::function<v1::CommandResult()> again;
  };
  std::vector<retried> cases;
  auto add = [&](std::string name, auto method, auto request) {
    auto first = ok(method, request);
    cases.push_back({std::move(name), first,
                     [this, method, request] { return ok(method, request); }});
  };
  cases.push_back({"RegisterUser", first_reg, [this] {
                     return ok(&stub_type::RegisterUser,
                               register_request("reg-alice", "alice", "alice"));
                   }});
  add("UpdateProfile", &stub_type::UpdateProfile,
      update_request("g-u", "alice", "Alice A."));
  add("Follow", &stub_type::Follow,
      target_request<v1::FollowRequest>("g-f", "alice", "bob"));
  add("PostShout", &stub_type::PostShout, post_request("g-p", "alice", "once"));
  add("LikeShout", &stub_type::LikeShout,
      shout_request<v1::LikeShoutRequest>("g-l", "alice", p.shout_id()));
  add("UnlikeShout", &stub_type::UnlikeShout,
      shout_request<v1::UnlikeShoutRequest>("g-ul", "alice", p.shout_id()));
  add("Unfollow", &stub_type::Unfollow,
      target_request<v1::UnfollowRequest>("g-uf", "alice", "bob"));
  auto own = cases[3].first.shout_id();
  add("DeleteShout", &stub_type::DeleteShout,
      shout_request<v1::DeleteShoutRequest>("g-d", "alice", own));
  auto login_req = login_by_handle("g-login", "Alice");
  auto first_login = ok(&stub_type::Login, login_req);
  ASSERT_TRUE(first_login.success());
  auto before = event_count();

  for (auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_FALSE(c.first.duplicate());
    auto again = c.again();
    EXPECT_TRUE(again.duplicate());
    EXPECT_EQ(again.user_id(), c.first.user_id());
    EXPECT_EQ(again.seq_nr(), c.first.seq_nr());
    EXPECT_EQ(again.global_position(), c.first.global_position());
    EXPECT_EQ(again.shout_id(), c.first.shout_id());
  }
  auto login_again = ok(&stub_type::Login, login_req);
  EXPECT_TRUE(login_again.success());
  EXPECT_TRUE(login_again.result().duplicate());
  EXPECT_EQ(login_again.result().seq_nr(), first_login.result().seq_nr());
  EXPECT_EQ(login_again.result().global_position(),
            first_login.result().global_position());
  EXPECT_EQ(event_count(), before);

  // A reused command id with a different payload still answers the first
  // result: the id, not the content, identifies the command.
  auto reused = ok(&stub_type::PostShout,
                   post_request("g-p", "alice", "different text"));
  EXPECT_TRUE(reused.duplicate());
  EXPECT_EQ(reused.shout_id(), cases[3].first.shout_id());
  EXPECT_EQ(event_count(), before);
}

TEST_F(command_service_test, retry_after_restart_and_beyond_memory_window) {
  register_ok("alice");
  std::vector<v1::CommandResult> posts;
  // More than the entity's in-memory window of recent command ids (64).
  for (int i = 0; i < 70; ++i)
    posts.push_back(ok(&stub_type::PostShout,
                       post_request("old-" + std::to_string(i), "alice",
                                    "post " + std::to_string(i))));
  auto before = event_count();
  auto oldest = ok(&stub_type::PostShout, post_request("old-0", "alice", "x"));
  EXPECT_TRUE(oldest.duplicate());
  EXPECT_EQ(oldest.shout_id(), posts[0].shout_id());
  EXPECT_EQ(oldest.seq_nr(), posts[0].seq_nr());
  EXPECT_EQ(oldest.global_position(), posts[0].global_position());

  // A new node on the same database recovers the entity from the journal.
  start();
  for (int i : {1, 35, 69}) {
    SCOPED_TRACE(i);
    auto again = ok(&stub_type::PostShout,
                    post_request("old-" + std::to_string(i), "alice", "x"));
    EXPECT_TRUE(again.duplicate());
    EXPECT_EQ(again.shout_id(), posts[i].shout_id());
    EXPECT_EQ(again.seq_nr(), posts[i].seq_nr());
    EXPECT_EQ(again.global_position(), posts[i].global_position());
  }
  EXPECT_EQ(event_count(), before);
  auto fresh = ok(&stub_type::PostShout, post_request("new-0", "alice", "x"));
  EXPECT_FALSE(fresh.duplicate());
  EXPECT_EQ(fresh.seq_nr(), 72);
}

// -- deadlines and limits -----------------------------------------------------

TEST_F(command_service_test, deadline_already_passed_is_deadline_exceeded) {
  register_ok("alice");
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() - seconds(1));
  v1::CommandResult out;
  auto started = steady::now();
  auto status = stub_->PostShout(&ctx, post_request("late", "alice", "x"),
                                 &out);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
    << status.error_message();
  EXPECT_LT(steady::now() - started, seconds(2));
  EXPECT_EQ(event_count(), 1);
}

/// Holds an exclusive lock on the events table, so every journal write
/// waits for it: the database is "stuck" until release().
class events_lock {
public:
  explicit events_lock(const std::string& url) : conn_(url), tx_(conn_) {
    tx_.exec("LOCK TABLE events IN ACCESS EXCLUSIVE MODE");
  }
  void release() {
    tx_.abort();
  }

private:
  pqxx::connection conn_;
  pqxx::work tx_;
};

TEST_F(command_service_test, tiny_deadline_on_stuck_database_is_not_a_hang) {
  register_ok("alice");
  {
    events_lock lock{db_.url()};
    for (auto [id, timeout] : {std::pair{"tiny", milliseconds(1)},
                               std::pair{"short", milliseconds(300)}}) {
      SCOPED_TRACE(id);
      v1::CommandResult out;
      auto started = steady::now();
      auto status = call(&stub_type::PostShout, post_request(id, "alice", id),
                         &out, timeout);
      EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
        << status.error_message();
      EXPECT_LT(steady::now() - started, timeout + seconds(3));
    }
    lock.release();
  }
  // Retrying with the same command ids applies each at most once.
  for (auto id : {"tiny", "short"}) {
    SCOPED_TRACE(id);
    auto r = ok(&stub_type::PostShout, post_request(id, "alice", id));
    EXPECT_EQ(r.shout_id().size(), 13u);
    EXPECT_EQ(events_of_command(id), 1);
  }
  EXPECT_EQ(event_count(), 3);
}

TEST_F(command_service_test, node_request_timeout_bounds_requests) {
  start(
    [](node::node_config& cfg) { cfg.request_timeout = milliseconds(300); });
  register_ok("alice");
  {
    events_lock lock{db_.url()};
    v1::CommandResult out;
    auto started = steady::now();
    // The client would wait 20 s; the node gives up after its own bound.
    auto status = call(&stub_type::PostShout,
                       post_request("bounded", "alice", "x"), &out,
                       seconds(20));
    auto took = steady::now() - started;
    EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
      << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr("command_id"));
    // Well below the default 5 s bound, so only the configured one explains it.
    EXPECT_LT(took, seconds(4));
    lock.release();
  }
  // A client retries until the outcome is known; never a second copy.
  grpc::Status status;
  v1::CommandResult r;
  auto give_up = steady::now() + seconds(20);
  for (auto backoff = milliseconds(10);; backoff *= 2) {
    status = call(&stub_type::PostShout, post_request("bounded", "alice", "x"),
                  &r);
    if (status.ok() || steady::now() > give_up)
      break;
    std::this_thread::sleep_for(std::min(backoff, milliseconds(500)));
  }
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(events_of_command("bounded"), 1);
  EXPECT_EQ(r.seq_nr(), 2);
}

TEST_F(command_service_test, oversized_message_is_resource_exhausted) {
  register_ok("alice");
  auto huge = std::string(100 * 1024, 'x');
  auto reg = register_request("big-1", "bob", "bob");
  reg.set_display_name(huge);
  v1::CommandResult out;
  auto status = call(&stub_type::RegisterUser, reg, &out);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
    << status.error_message();
  v1::LoginResult login_out;
  status = call(&stub_type::Login, login_by_id("big-2", "alice", huge),
                &login_out);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
    << status.error_message();
  // The node keeps serving.
  auto r = ok(&stub_type::PostShout,
              post_request("after", "alice", "still up"));
  EXPECT_EQ(r.seq_nr(), 2);
  EXPECT_EQ(event_count(), 2);
}

// -- garbage ------------------------------------------------------------------

TEST_F(command_service_test, node_survives_a_burst_of_garbage) {
  register_ok("alice");
  register_ok("bob");
  auto p = ok(&stub_type::PostShout, post_request("p1", "bob", "target"));
  auto before = event_count();
  const std::vector<std::string> methods
    = {"RegisterUser", "UpdateProfile", "Follow",      "Unfollow", "PostShout",
       "DeleteShout",  "LikeShout",     "UnlikeShout", "Login"};
  // Invalid requests of every kind, each built from a seed.
  const std::vector<std::function<grpc::Status(stub_type&, int)>> invalid = {
    [](stub_type& s, int i) {
      v1::CommandResult o;
      auto ctx = context_with_deadline();
      return s.RegisterUser(
        ctx.get(), register_request("g" + std::to_string(i), "", "h"), &o);
    },
    [](stub_type& s, int i) {
      v1::CommandResult o;
      auto ctx = context_with_deadline();
      return s.RegisterUser(
        ctx.get(), register_request("g" + std::to_string(i), "bob", "bob"), &o);
    },
    [](stub_type& s, int i) {
      v1::CommandResult o;
      auto ctx = context_with_deadline();
      v1::UpdateProfileRequest r;
      r.set_command_id("g" + std::to_string(i));
      r.set_user_id("alice");
      return s.UpdateProfile(ctx.get(), r, &o);
    },
    [](stub_type& s, int i) {
      v1::CommandResult o;
      auto ctx = context_with_deadline();
      return s.Follow(ctx.get(),
                      target_request<v1::FollowRequest>("g" + std::to_string(i),
                                                        "alice", "alice"),
                      &o);
    },
    [](stub_type& s, int i) {
      v1::CommandResult o;
      auto ctx = context_with_deadline();
      return s.Follow(ctx.get(),
                      target_request<v1::FollowRequest>("g" + std::to_string(i),
                                                        "alice", "nobody"),
                      &o);
    },
    [](stub_type& s, int i) {
      v1::CommandResult o;
      auto ctx = context_with_deadline();
      return s.Unfollow(ctx.get(),
                        target_request<v1::UnfollowRequest>(
                          "g" + std::to_string(i), "ghost", "alice"),
                        &o);
    },
    [](stub_type& s, int i) {
      v1::CommandResult o;
      auto ctx = context_with_deadline();
      return s.PostShout(ctx.get(),
                         post_request("g" + std::to_string(i), "alice",
                                      std::string(300, 'z')),
                         &o);
    },
    [](stub_type& s, int) {
      v1::CommandResult o;
      auto ctx = context_with_deadline();
      return s.PostShout(ctx.get(), post_request("", "alice", "no id"), &o);
    },
    [&p](stub_type& s, int i) {
      v1::CommandResult o;
      auto ctx = context_with_deadline();
      return s.DeleteShout(ctx.get(),
                           shout_request<v1::DeleteShoutRequest>(
                             "g" + std::to_string(i), "alice", p.shout_id()),
                           &o);
    },
    [](stub_type& s, int i) {
      v1::CommandResult o;
      auto ctx = context_with_deadline();
      return s.LikeShout(ctx.get(),
                         shout_request<v1::LikeShoutRequest>(
                           "g" + std::to_string(i), "alice", "not-a-shout"),
                         &o);
    },
    [](stub_type& s, int i) {
      v1::CommandResult o;
      auto ctx = context_with_deadline();
      return s.UnlikeShout(
        ctx.get(),
        shout_request<v1::UnlikeShoutRequest>("g" + std::to_string(i), "ghost",
                                              snowflake_generator::encode(99)),
        &o);
    },
    [](stub_type& s, int i) {
      v1::LoginResult o;
      auto ctx = context_with_deadline();
      v1::LoginRequest r;
      r.set_command_id("g" + std::to_string(i));
      r.set_password("pw");
      return s.Login(ctx.get(), r, &o);
    },
    [](stub_type& s, int i) {
      v1::LoginResult o;
      auto ctx = context_with_deadline();
      return s.Login(ctx.get(),
                     login_by_handle("g" + std::to_string(i), "nope"), &o);
    },
  };
  auto port = node_->get().command_port();
  std::atomic<int> unexpected_ok{0};
  std::atomic<int> sent{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                         grpc::InsecureChannelCredentials());
      auto stub = v1::CommandService::NewStub(channel);
      std::mt19937 rng(static_cast<unsigned>(1000 + t));
      for (int i = 0; i < 60; ++i) {
        auto seed = t * 1000 + i;
        grpc::Status status;
        if (i % 3 == 0) {
          // Random bytes (and raw protobuf framing) to a random method.
          std::string bytes(rng() % 200, '\0');
          for (auto& b : bytes)
            b = static_cast<char>(rng());
          if (i % 2 == 0)
            put_bytes_field(bytes, 1, std::string(rng() % 70, '\x01'));
          auto method = "/shoutflow.v1.CommandService/"
                        + methods[rng() % methods.size()];
          status = raw_unary_call(channel, method, bytes, nullptr);
        } else if (i % 11 == 0) {
          status = raw_unary_call(channel, "/shoutflow.v1.CommandService/Nope",
                                  "", nullptr);
        } else {
          status = invalid[rng() % invalid.size()](*stub, seed);
        }
        ++sent;
        if (status.ok())
          ++unexpected_ok;
      }
    });
  }
  for (auto& t : threads)
    t.join();
  EXPECT_EQ(sent.load(), 240);
  EXPECT_EQ(unexpected_ok.load(), 0);
  // Still serving, and only valid commands reached the journal.
  auto valid = ok(&stub_type::PostShout, post_request("valid", "alice", "ok"));
  EXPECT_EQ(valid.seq_nr(), 2);
  EXPECT_EQ(event_count(), before + 1);
  EXPECT_EQ(db_.scalar<int64_t>("SELECT count(*) FROM events WHERE command_id "
                                "NOT IN ('reg-alice', 'reg-bob', 'p1', "
                                "'valid')"),
            0);
}

// -- health, reflection, correlation ------------------------------------------

TEST_F(command_service_test, health_check_reports_serving) {
  std::string response;
  // HealthCheckRequest { service = "" } encodes as zero bytes.
  auto status = raw_unary_call(channel(), "/grpc.health.v1.Health/Check", "",
                               &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  google::protobuf::UnknownFieldSet fields;
  ASSERT_TRUE(fields.ParseFromString(response));
  ASSERT_EQ(fields.field_count(), 1);
  EXPECT_EQ(fields.field(0).number(), 1);
  ASSERT_EQ(fields.field(0).type(),
            google::protobuf::UnknownField::TYPE_VARINT);
  EXPECT_EQ(fields.field(0).varint(), 1u) << "1 = SERVING";
  // An unknown service name is NOT_FOUND, which proves the real service.
  std::string req;
  put_bytes_field(req, 1, "no.such.Service");
  status = raw_unary_call(channel(), "/grpc.health.v1.Health/Check", req,
                          &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(command_service_test, server_reflection_lists_command_service) {
  grpc::GenericStub stub{channel()};
  grpc::CompletionQueue cq;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + seconds(10));
  auto stream = stub.PrepareCall(
    &ctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    &cq);
  ASSERT_NE(stream, nullptr);
  int start_tag = 0;
  int write_tag = 0;
  int done_tag = 0;
  int read_tag = 0;
  int finish_tag = 0;
  stream->StartCall(&start_tag);
  ASSERT_TRUE(await_tag(cq, &start_tag));
  // ServerReflectionRequest { list_services = "" (field 7) }.
  std::string req;
  put_bytes_field(req, 7, "");
  stream->Write(to_buffer(req), &write_tag);
  ASSERT_TRUE(await_tag(cq, &write_tag));
  stream->WritesDone(&done_tag);
  ASSERT_TRUE(await_tag(cq, &done_tag));
  grpc::ByteBuffer buffer;
  stream->Read(&buffer, &read_tag);
  ASSERT_TRUE(await_tag(cq, &read_tag));
  grpc::Status status;
  stream->Finish(&status, &finish_tag);
  ASSERT_TRUE(await_tag(cq, &finish_tag));
  EXPECT_TRUE(status.ok()) << status.error_message();
  cq.Shutdown();
  void* ignored_tag = nullptr;
  bool ignored_ok = false;
  while (cq.Next(&ignored_tag, &ignored_ok)) {
  }
  // ServerReflectionResponse { list_services_response (6) { service (1)
  // { name (1) } } }.
  google::protobuf::UnknownFieldSet response;
  ASSERT_TRUE(response.ParseFromString(from_buffer(buffer)));
  std::vector<std::string> names;
  for (int i = 0; i < response.field_count(); ++i) {
    auto& f = response.field(i);
    if (f.number() != 6
        || f.type() != google::protobuf::UnknownField::TYPE_LENGTH_DELIMITED)
      continue;
    google::protobuf::UnknownFieldSet list;
    ASSERT_TRUE(list.ParseFromString(f.length_delimited()));
    for (int j = 0; j < list.field_count(); ++j) {
      google::protobuf::UnknownFieldSet service;
      ASSERT_TRUE(service.ParseFromString(list.field(j).length_delimited()));
      for (int k = 0; k < service.field_count(); ++k)
        if (service.field(k).number() == 1)
          names.push_back(service.field(k).length_delimited());
    }
  }
  EXPECT_THAT(names, ::testing::Contains("shoutflow.v1.CommandService"));
  EXPECT_THAT(names, ::testing::Contains("grpc.health.v1.Health"));
}

TEST_F(command_service_test, correlation_id_comes_from_metadata_or_command_id) {
  auto reg = register_ok("alice");
  auto row = event_at(reg.global_position());
  ASSERT_TRUE(row.has_value());
  EXPECT_EQ(row->correlation_id, "reg-alice");
  EXPECT_EQ(row->causation_id, "reg-alice");

  auto ctx = context_with_deadline();
  ctx->AddMetadata("x-correlation-id", "req-7f3a");
  v1::CommandResult out;
  auto status = stub_->PostShout(ctx.get(), post_request("p1", "alice", "hi"),
                                 &out);
  ASSERT_TRUE(status.ok()) << status.error_message();
  row = event_at(out.global_position());
  ASSERT_TRUE(row.has_value());
  EXPECT_EQ(row->correlation_id, "req-7f3a");
  EXPECT_EQ(row->causation_id, "p1");
  EXPECT_EQ(row->command_id, "p1");
}

} // namespace
