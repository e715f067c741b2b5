// G1 (durability) and G2 (single, contiguous history) under SIGKILL, with
// the real shoutflowd binary (path in $SHOUTFLOWD, set by ctest).
//
// The daemon runs as a child process on a fresh database. Sixteen client
// threads post shouts, each with a unique command_id, and record every
// acknowledged result; the daemon is killed with SIGKILL while requests are
// in flight and restarted on the same database. Then:
//   * every acknowledged command's event is in the journal exactly once,
//     with the acknowledged seq_nr, global_position and shout_id (G1);
//   * every user's seq_nr runs 1, 2, 3, ... without gaps (G2);
//   * the journal holds nothing the clients did not send;
//   * re-sending every command whose outcome was unknown at kill time, with
//     its command_id, yields the first result (duplicate) or one fresh
//     apply — never a second copy (G4 across a crash).

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "shoutflow/v1/commands.grpc.pb.h"
#include "shoutflow/v1/events.pb.h"
#include "tests/support/test_db.hpp"

extern char** environ;

using namespace shoutflow;
using namespace shoutflow::testing;

namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using steady = std::chrono::steady_clock;

constexpr int user_count = 50;
constexpr int client_threads = 16;

/// A loopback port that was free a moment ago (bind to 0, read, close).
int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0
      && ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0)
    port = ntohs(addr.sin_port);
  ::close(fd);
  return port;
}

std::string read_file(const std::string& path) {
  std::ifstream in{path};
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

/// One shoutflowd child process; SIGKILLed on destruction unless it was
/// already reaped.
class daemon_process {
public:
  daemon_process(const std::string& binary, const std::string& db_url, int port,
                 const std::string& log_path)
    : port_(port), log_path_(log_path) {
    std::vector<std::string> args = {binary,
                                     "--db-url",
                                     db_url,
                                     "--command-port",
                                     std::to_string(port),
                                     "--query-port",
                                     std::to_string(free_port()),
                                     "--admin-port",
                                     std::to_string(free_port()),
                                     "--metrics-port",
                                     "-1",
                                     "--caf-port",
                                     "0",
                                     "--pwhash-opslimit",
                                     "1",
                                     "--pwhash-memlimit",
                                     "8192"};
    std::vector<char*> argv;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_path.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    if (posix_spawn(&pid_, binary.c_str(), &actions, nullptr, argv.data(),
                    environ)
        != 0)
      pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
  }

  ~daemon_process() {
    kill_now();
  }

  daemon_process(const daemon_process&) = delete;
  daemon_process& operator=(const daemon_process&) = delete;

  bool spawned() const {
    return pid_ > 0;
  }
  int port() const {
    return port_;
  }
  std::string log() const {
    return read_file(log_path_);
  }

  /// SIGKILL and reap (idempotent).
  void kill_now() {
    if (pid_ <= 0)
      return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  /// True while the process has not exited; reaps it (and keeps its wait
  /// status) once it has.
  bool running() {
    if (pid_ <= 0)
      return false;
    auto r = ::waitpid(pid_, &wait_status_, WNOHANG);
    if (r == 0)
      return true;
    pid_ = -1;
    return false;
  }

  /// Sends SIGTERM and waits up to `timeout` for the exit; its wait status,
  /// or -1 on timeout.
  int terminate(milliseconds timeout) {
    if (pid_ <= 0)
      return -1;
    ::kill(pid_, SIGTERM);
    auto until = steady::now() + timeout;
    while (steady::now() < until) {
      if (!running())
        return wait_status_;
      std::this_thread::sleep_for(milliseconds(20));
    }
    return -1;
  }

private:
  pid_t pid_ = -1;
  int wait_status_ = 0;
  int port_;
  std::string log_path_;
};

std::shared_ptr<grpc::Channel> channel_to(int port) {
  return grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                             grpc::InsecureChannelCredentials());
}

/// grpc.health.v1.Health/Check for service "" answers SERVING (field 1 = 1;
/// the client proto is not installed, so the bytes are matched directly).
bool serving(int port, milliseconds timeout) {
  grpc::GenericStub stub{channel_to(port)};
  grpc::CompletionQueue cq;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + timeout);
  grpc::Slice empty{std::string{}};
  grpc::ByteBuffer request{&empty, 1};
  grpc::ByteBuffer response;
  grpc::Status status;
  auto call = stub.PrepareUnaryCall(&ctx, "/grpc.health.v1.Health/Check",
                                    request, &cq);
  call->StartCall();
  int tag = 0;
  call->Finish(&response, &status, &tag);
  void* got = nullptr;
  bool ok = false;
  // The call's own deadline bounds this wait.
  cq.Next(&got, &ok);
  cq.Shutdown();
  void* ignored_tag = nullptr;
  bool ignored_ok = false;
  while (cq.Next(&ignored_tag, &ignored_ok)) {
  }
  if (!ok || !status.ok())
    return false;
  std::vector<grpc::Slice> slices;
  std::string bytes;
  if (!response.Dump(&slices).ok())
    return false;
  for (auto& s : slices)
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return bytes == std::string("\x08\x01", 2);
}

/// One PostShout a client sent, and what it learned.
struct attempt {
  std::string command_id;
  std::string user_id;
  std::string text;
  bool acknowledged = false;
  grpc::StatusCode code = grpc::StatusCode::UNKNOWN;
  v1::CommandResult result;
};

v1::PostShoutRequest request_of(const attempt& a) {
  v1::PostShoutRequest r;
  r.set_command_id(a.command_id);
  r.set_user_id(a.user_id);
  r.set_text(a.text);
  return r;
}

struct journal_row {
  std::string persistence_id;
  int64_t seq_nr = 0;
  int64_t position = 0;
  std::string type;
  std::string payload;
};

std::string user_id_of(int i) {
  return "user-" + std::to_string(i);
}

class crash_test : public ::testing::Test {
protected:
  void SetUp() override {
    auto* path = std::getenv("SHOUTFLOWD");
    ASSERT_NE(path, nullptr)
      << "SHOUTFLOWD is not set: run through ctest, or export "
         "SHOUTFLOWD=<build>/bin/shoutflowd";
    binary_ = path;
    ASSERT_EQ(::access(binary_.c_str(), X_OK), 0)
      << binary_ << " is not executable: build the shoutflowd target";
  }

  void TearDown() override {
    if (HasFailure())
      for (auto& log : logs_)
        std::cerr << "---- " << log << " ----\n" << read_file(log) << "\n";
    daemon_.reset();
  }

  /// Starts shoutflowd on a fresh port and waits until it is SERVING.
  void start_daemon() {
    daemon_.reset();
    auto port = free_port();
    ASSERT_GT(port, 0);
    logs_.push_back(::testing::TempDir() + "shoutflowd-" + db_.name() + "-"
                    + std::to_string(logs_.size()) + ".log");
    daemon_ = std::make_unique<daemon_process>(binary_, db_.url(), port,
                                               logs_.back());
    ASSERT_TRUE(daemon_->spawned()) << "cannot spawn " << binary_;
    auto until = steady::now() + seconds(30);
    while (!serving(port, milliseconds(500))) {
      ASSERT_TRUE(daemon_->running()) << "shoutflowd exited during start-up:\n"
                                      << daemon_->log();
      ASSERT_LT(steady::now(), until) << "shoutflowd not SERVING after 30 s:\n"
                                      << daemon_->log();
      std::this_thread::sleep_for(milliseconds(50));
    }
    stub_ = v1::CommandService::NewStub(channel_to(port));
  }

  /// Posts until `stop`, recording every attempt.
  void client(int thread, std::atomic<bool>& stop,
              std::atomic<int>& acknowledged, std::vector<attempt>& out) {
    auto stub = v1::CommandService::NewStub(channel_to(daemon_->port()));
    std::mt19937 rng(static_cast<unsigned>(thread));
    for (int i = 0; !stop.load(); ++i) {
      attempt a;
      a.command_id = "t" + std::to_string(thread) + "-" + std::to_string(i);
      a.user_id = user_id_of(static_cast<int>(rng() % user_count));
      a.text = "shout " + a.command_id;
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + seconds(5));
      auto status = stub->PostShout(&ctx, request_of(a), &a.result);
      a.code = status.error_code();
      a.acknowledged = status.ok();
      if (a.acknowledged)
        ++acknowledged;
      out.push_back(std::move(a));
    }
  }

  /// command_id -> its events (posts and registrations).
  std::map<std::string, std::vector<journal_row>> journal() const {
    pqxx::connection conn{db_.url()};
    pqxx::read_transaction tx{conn};
    std::map<std::string, std::vector<journal_row>> out;
    for (const auto& row :
         tx.exec("SELECT coalesce(command_id, ''), persistence_id, seq_nr,"
                 "       global_position, event_type, payload"
                 "  FROM events ORDER BY global_position"))
      out[row[0].as<std::string>()].push_back(
        {row[1].as<std::string>(), row[2].as<int64_t>(), row[3].as<int64_t>(),
         row[4].as<std::string>(), pqxx::binarystring{row[5]}.str()});
    return out;
  }

  /// Rows whose seq_nr is not its rank within its stream (G2 breaches).
  int64_t seq_gaps() const {
    return db_.scalar<int64_t>(
      "SELECT count(*) FROM (SELECT seq_nr, row_number() OVER"
      " (PARTITION BY persistence_id ORDER BY seq_nr) AS rank FROM events) s"
      " WHERE seq_nr <> rank");
  }

  test_database db_;
  std::string binary_;
  std::vector<std::string> logs_;
  std::unique_ptr<daemon_process> daemon_;
  std::unique_ptr<v1::CommandService::Stub> stub_;
};

TEST_F(crash_test, acknowledged_commands_survive_sigkill_exactly_once) {
  ASSERT_NO_FATAL_FAILURE(start_daemon());
  for (int i = 0; i < user_count; ++i) {
    v1::RegisterUserRequest r;
    r.set_command_id("reg-" + std::to_string(i));
    r.set_user_id(user_id_of(i));
    r.set_handle("h" + std::to_string(i));
    r.set_email(user_id_of(i) + "@example.com");
    r.set_password("correct horse");
    v1::CommandResult out;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + seconds(10));
    auto status = stub_->RegisterUser(&ctx, r, &out);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  // Load, then SIGKILL mid-flight.
  std::atomic<bool> stop{false};
  std::atomic<int> acknowledged{0};
  std::vector<std::vector<attempt>> attempts(client_threads);
  std::vector<std::thread> threads;
  for (int t = 0; t < client_threads; ++t)
    threads.emplace_back(
      [&, t] { client(t, stop, acknowledged, attempts[t]); });
  auto load_started = steady::now();
  while (steady::now() - load_started < milliseconds(1500)
         || acknowledged.load() < 200) {
    if (steady::now() - load_started > seconds(20))
      break;
    std::this_thread::sleep_for(milliseconds(10));
  }
  daemon_->kill_now();
  stop = true;
  for (auto& t : threads)
    t.join();
  std::vector<attempt> all;
  for (auto& per_thread : attempts)
    for (auto& a : per_thread)
      all.push_back(std::move(a));
  std::size_t acked = 0;
  for (auto& a : all)
    acked += a.acknowledged ? 1 : 0;
  ASSERT_GE(acked, 200u) << "too little load before the kill";
  auto unknown = all.size() - acked;
  EXPECT_GT(unknown, 0u) << "no request was in flight at the kill";

  ASSERT_NO_FATAL_FAILURE(start_daemon());

  // G1: every acknowledged command is in the journal exactly once, as
  // acknowledged.
  auto before_retry = journal();
  for (auto& a : all) {
    if (!a.acknowledged)
      continue;
    SCOPED_TRACE(a.command_id);
    auto it = before_retry.find(a.command_id);
    ASSERT_NE(it, before_retry.end()) << "acknowledged command lost";
    ASSERT_EQ(it->second.size(), 1u);
    auto& row = it->second.front();
    EXPECT_EQ(row.persistence_id, "user|" + a.user_id);
    EXPECT_EQ(row.seq_nr, a.result.seq_nr());
    EXPECT_EQ(row.position, a.result.global_position());
    EXPECT_EQ(row.type, "ShoutPosted");
    v1::ShoutPosted ev;
    ASSERT_TRUE(ev.ParseFromString(row.payload));
    EXPECT_EQ(ev.shout_id(), a.result.shout_id());
    EXPECT_EQ(ev.text(), a.text);
  }
  // G2: contiguous histories; and nothing the clients did not send.
  EXPECT_EQ(seq_gaps(), 0);
  std::map<std::string, const attempt*> sent;
  for (auto& a : all)
    sent[a.command_id] = &a;
  for (auto& [command_id, rows] : before_retry) {
    if (command_id.rfind("reg-", 0) == 0)
      continue;
    EXPECT_EQ(sent.count(command_id), 1u) << "phantom command " << command_id;
    EXPECT_EQ(rows.size(), 1u) << command_id;
  }

  // Re-send every command whose outcome was unknown.
  std::size_t applied_before_kill = 0;
  for (auto& a : all) {
    if (a.acknowledged)
      continue;
    SCOPED_TRACE(a.command_id);
    v1::CommandResult r;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + seconds(10));
    auto status = stub_->PostShout(&ctx, request_of(a), &r);
    ASSERT_TRUE(status.ok()) << status.error_message();
    auto it = before_retry.find(a.command_id);
    if (it != before_retry.end()) {
      ++applied_before_kill;
      EXPECT_TRUE(r.duplicate()) << "applied before the kill: first result";
      EXPECT_EQ(r.seq_nr(), it->second.front().seq_nr);
      EXPECT_EQ(r.global_position(), it->second.front().position);
    } else {
      EXPECT_FALSE(r.duplicate());
    }
  }
  // A sample of acknowledged commands answers the first result too.
  for (std::size_t i = 0; i < all.size(); i += 25) {
    auto& a = all[i];
    if (!a.acknowledged)
      continue;
    SCOPED_TRACE(a.command_id);
    v1::CommandResult r;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + seconds(10));
    auto status = stub_->PostShout(&ctx, request_of(a), &r);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_TRUE(r.duplicate());
    EXPECT_EQ(r.seq_nr(), a.result.seq_nr());
    EXPECT_EQ(r.global_position(), a.result.global_position());
    EXPECT_EQ(r.shout_id(), a.result.shout_id());
  }

  auto after = journal();
  for (auto& a : all)
    EXPECT_EQ(after[a.command_id].size(), 1u)
      << a.command_id << ": exactly one event per command";
  EXPECT_EQ(db_.scalar<int64_t>("SELECT count(*) FROM events"),
            static_cast<int64_t>(user_count + all.size()));
  EXPECT_EQ(seq_gaps(), 0);
  std::cerr << "[ info     ] " << acked << " acknowledged, " << unknown
            << " unknown at the kill (" << applied_before_kill
            << " of them applied)\n";

  // A clean SIGTERM stop exits with status 0.
  auto status = daemon_->terminate(seconds(20));
  ASSERT_NE(status, -1) << "shoutflowd did not exit after SIGTERM";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
    << "wait status " << status;
}

} // namespace
