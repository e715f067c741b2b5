#include "tests/support/cluster_harness.hpp"

#include <fcntl.h>
#include <grpcpp/generic/generic_stub.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pqxx/pqxx>

#include <array>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <sstream>

#include "actors/journal/migrations.hpp"
#include "tests/support/commands.hpp"

extern char** environ;

namespace shoutflow::testing {

namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using steady = std::chrono::steady_clock;

std::string read_whole_file(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string tail_of(const std::string& text, std::size_t bytes) {
  if (text.size() <= bytes)
    return text;
  return "[... " + std::to_string(text.size() - bytes) + " bytes cut ...]\n"
         + text.substr(text.size() - bytes);
}

std::string describe_wait_status(int status) {
  if (WIFEXITED(status))
    return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return std::string{"signal "} + std::to_string(WTERMSIG(status)) + " ("
           + strsignal(WTERMSIG(status)) + ")";
  return "wait status " + std::to_string(status);
}

struct shell_result {
  int exit_code = -1;
  std::string output;
};

/// Runs a shell command, capturing stdout and stderr.
shell_result run_shell(const std::string& cmd) {
  shell_result r;
  auto* pipe = ::popen((cmd + " 2>&1").c_str(), "r");
  if (pipe == nullptr)
    return r;
  std::array<char, 512> buf{};
  std::size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0)
    r.output.append(buf.data(), n);
  auto status = ::pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string shell_quoted(const std::string& s) {
  std::string out = "'";
  for (auto c : s)
    out += c == '\'' ? std::string{"'\\''"} : std::string(1, c);
  return out + "'";
}

/// Whether a TCP listener could bind `port` on every address right now.
bool bindable(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return false;
  // gRPC listens with SO_REUSEADDR, so TIME_WAIT leftovers do not matter.
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

/// The first port of the kernel's ephemeral range (32768 if unknown).
int ephemeral_low() {
  std::ifstream in{"/proc/sys/net/ipv4/ip_local_port_range"};
  int low = 0;
  int high = 0;
  if (in >> low >> high && low > 0)
    return low;
  return 32768;
}

/// A port the kernel picks (bind to 0): the fallback when the range below
/// the ephemeral ports is too small.
int kernel_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0
      && ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0)
    port = ntohs(addr.sin_port);
  ::close(fd);
  return port;
}

/// The machine-wide lock that makes cluster scenarios run one at a time.
int acquire_cluster_lock() {
  const char* path = "/tmp/shoutflow-cluster-tests.lock";
  int fd = ::open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0666);
  if (fd < 0)
    return -1;
  auto until = steady::now() + seconds(800);
  bool told = false;
  while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (steady::now() > until) {
      std::cerr << "[ cluster  ] gave up waiting for " << path
                << "; running beside another cluster test\n";
      ::close(fd);
      return -1;
    }
    if (!told) {
      std::cerr << "[ cluster  ] waiting for another cluster test to finish ("
                << path << ")\n";
      told = true;
    }
    std::this_thread::sleep_for(milliseconds(100));
  }
  return fd;
}

std::string counts_text(const std::map<grpc::StatusCode, int64_t>& m) {
  std::string out = "{";
  for (auto& [code, n] : m)
    out += (out.size() > 1 ? ", " : "") + status_code_name(code) + ": "
           + std::to_string(n);
  return out + "}";
}

} // namespace

// -- run parameters -----------------------------------------------------------

uint64_t scenario_seed() {
  uint64_t seed = 0;
  if (auto* s = std::getenv("SHOUTFLOW_SEED"); s != nullptr && *s != '\0')
    seed = std::strtoull(s, nullptr, 10);
  else
    seed = (static_cast<uint64_t>(std::random_device{}()) << 32)
           ^ std::random_device{}();
  std::string test = "?";
  if (auto* info = ::testing::UnitTest::GetInstance()->current_test_info())
    test = std::string{info->test_suite_name()} + "." + info->name();
  std::cerr << "[ seed     ] " << test << ": SHOUTFLOW_SEED=" << seed
            << " replays its choices\n";
  return seed;
}

bool soak() {
  auto* s = std::getenv("SHOUTFLOW_SOAK");
  return s != nullptr && std::string{s} == "1";
}

std::string shoutflowd_binary() {
  auto* s = std::getenv("SHOUTFLOWD");
  return s == nullptr ? std::string{} : std::string{s};
}

bool binary_has_cluster_flags(const std::string& binary) {
  static std::mutex mtx;
  static std::map<std::string, bool> known;
  std::lock_guard<std::mutex> guard{mtx};
  auto it = known.find(binary);
  if (it != known.end())
    return it->second;
  auto r = run_shell(shell_quoted(binary) + " --help");
  auto has = r.output.find("--caf-port") != std::string::npos;
  known[binary] = has;
  return has;
}

int reserve_port() {
  static std::mutex mtx;
  static std::set<int> handed_out;
  static std::mt19937 rng{std::random_device{}()};
  std::lock_guard<std::mutex> guard{mtx};
  auto high = ephemeral_low() - 1;
  constexpr int low = 10000;
  if (high - low >= 1000) {
    std::uniform_int_distribution<int> pick{low, high};
    for (int attempt = 0; attempt < 500; ++attempt) {
      auto port = pick(rng);
      if (handed_out.count(port) == 0 && bindable(port)) {
        handed_out.insert(port);
        return port;
      }
    }
  }
  for (int attempt = 0; attempt < 100; ++attempt) {
    auto port = kernel_port();
    if (port > 0 && handed_out.insert(port).second)
      return port;
  }
  return 0;
}

std::string duration_flag(std::chrono::milliseconds d) {
  return std::to_string(d.count()) + "ms";
}

// -- raw gRPC -----------------------------------------------------------------

std::shared_ptr<grpc::Channel> channel_to(const std::string& address) {
  static std::mutex mtx;
  static std::map<std::string, std::shared_ptr<grpc::Channel>> channels;
  std::lock_guard<std::mutex> guard{mtx};
  auto& ch = channels[address];
  if (!ch) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 500);
    ch = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(),
                                   args);
  }
  return ch;
}

raw_reply unary_raw(const std::shared_ptr<grpc::Channel>& channel,
                    const std::string& method, const std::string& request,
                    std::chrono::system_clock::time_point deadline) {
  grpc::GenericStub stub{channel};
  grpc::ClientContext ctx;
  ctx.set_deadline(deadline);
  grpc::Slice slice{request};
  grpc::ByteBuffer req{&slice, 1};
  grpc::ByteBuffer resp;
  // Shared with the callback: it may still be inside set_value when get()
  // returns here.
  auto done = std::make_shared<std::promise<grpc::Status>>();
  auto result = done->get_future();
  stub.UnaryCall(&ctx, method, grpc::StubOptions{}, &req, &resp,
                 [done](grpc::Status s) { done->set_value(std::move(s)); });
  // The call's deadline bounds this wait.
  raw_reply out;
  out.status = result.get();
  if (out.status.ok()) {
    std::vector<grpc::Slice> slices;
    if (resp.Dump(&slices).ok())
      for (auto& s : slices)
        out.bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return out;
}

bool health_serving(const std::string& address,
                    std::chrono::milliseconds timeout) {
  return health_check(address, "", timeout) == health_answer::serving;
}

health_answer health_check(const std::string& address,
                           const std::string& service,
                           std::chrono::milliseconds timeout) {
  // HealthCheckRequest { string service = 1; } (names stay under 128 bytes).
  std::string request;
  if (!service.empty()) {
    request += '\x0a';
    request += static_cast<char>(service.size());
    request += service;
  }
  auto r = unary_raw(channel_to(address), "/grpc.health.v1.Health/Check",
                     request, std::chrono::system_clock::now() + timeout);
  if (r.status.error_code() == grpc::StatusCode::NOT_FOUND)
    return health_answer::unknown_service;
  if (!r.status.ok())
    return health_answer::no_answer;
  // HealthCheckResponse { ServingStatus status = 1; }: SERVING = 1,
  // NOT_SERVING = 2.
  if (r.bytes == std::string("\x08\x01", 2))
    return health_answer::serving;
  if (r.bytes == std::string("\x08\x02", 2))
    return health_answer::not_serving;
  return health_answer::no_answer;
}

const char* to_string(health_answer a) {
  switch (a) {
    case health_answer::serving:
      return "SERVING";
    case health_answer::not_serving:
      return "NOT_SERVING";
    case health_answer::unknown_service:
      return "SERVICE_UNKNOWN";
    case health_answer::no_answer:
      return "no answer";
  }
  return "?";
}

bool transport_failure(const grpc::Status& status) {
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
    case grpc::StatusCode::CANCELLED:
      return true;
    case grpc::StatusCode::UNKNOWN:
    case grpc::StatusCode::INTERNAL: {
      static const char* transport_words[] = {
        "RST_STREAM", "Stream removed",    "Socket closed", "Connection reset",
        "GOAWAY",     "failed to connect", "Broken pipe",   "connection"};
      for (auto* w : transport_words)
        if (status.error_message().find(w) != std::string::npos)
          return true;
      return false;
    }
    default:
      return false;
  }
}

// -- processes ----------------------------------------------------------------

cluster_harness::cluster_harness(cluster_options options, int nodes)
  : options_(std::move(options)) {
  if (options_.binary.empty())
    options_.binary = shoutflowd_binary();
  if (options_.exclusive)
    lock_fd_ = acquire_cluster_lock();
  if (options_.log_dir.empty()) {
    auto pattern = ::testing::TempDir() + "shoutflow-cluster-XXXXXX";
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data()) != nullptr) {
      options_.log_dir = buf.data();
      owns_log_dir_ = true;
    } else
      options_.log_dir = ::testing::TempDir();
  }
  for (int i = 0; i < nodes; ++i)
    add_node();
}

cluster_harness::~cluster_harness() {
  for (int i = 0; i < size(); ++i) {
    auto& s = slot(i);
    if (s.pid <= 0)
      continue;
    ::kill(s.pid, SIGKILL);
    int status = 0;
    ::waitpid(s.pid, &status, 0);
    s.pid = -1;
  }
  if (::testing::Test::HasFailure()) {
    dump_logs(std::cerr, options_.log_tail_bytes);
    for (auto& u : unexpected_)
      std::cerr << "[ cluster  ] unexpected: " << u << "\n";
    std::cerr << "[ cluster  ] logs kept in " << options_.log_dir << "\n";
  } else if (owns_log_dir_) {
    std::error_code ignored;
    std::filesystem::remove_all(options_.log_dir, ignored);
  }
  if (lock_fd_ >= 0)
    ::close(lock_fd_); // releases the flock
}

int cluster_harness::size() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return static_cast<int>(slots_.size());
}

int cluster_harness::add_node() {
  node_slot s;
  s.ports = {reserve_port(), reserve_port(), reserve_port(), reserve_port()};
  std::lock_guard<std::mutex> guard{mtx_};
  slots_.push_back(std::move(s));
  return static_cast<int>(slots_.size()) - 1;
}

cluster_harness::node_slot& cluster_harness::slot(int i) {
  std::lock_guard<std::mutex> guard{mtx_};
  return slots_.at(static_cast<std::size_t>(i));
}

const cluster_harness::node_slot& cluster_harness::slot(int i) const {
  std::lock_guard<std::mutex> guard{mtx_};
  return slots_.at(static_cast<std::size_t>(i));
}

std::vector<std::string> cluster_harness::args_of(int i) const {
  auto& p = slot(i).ports;
  std::vector<std::string> args = {options_.binary,
                                   "--db-url",
                                   options_.db_url,
                                   "--node-id",
                                   std::to_string(i),
                                   "--bind",
                                   "127.0.0.1",
                                   "--command-port",
                                   std::to_string(p.command),
                                   "--query-port",
                                   std::to_string(p.query),
                                   "--admin-port",
                                   std::to_string(p.admin),
                                   "--metrics-port",
                                   "-1",
                                   "--pwhash-opslimit",
                                   "1",
                                   "--pwhash-memlimit",
                                   "8192",
                                   "--projection-poll",
                                   "20ms"};
  if (options_.cluster_flags) {
    for (auto& a :
         {std::string{"--caf-port"}, std::to_string(p.caf),
          std::string{"--heartbeat-interval"}, options_.heartbeat_interval,
          std::string{"--lease-ttl"}, duration_flag(options_.lease_ttl),
          std::string{"--shutdown-grace"},
          duration_flag(options_.shutdown_grace)})
      args.push_back(a);
  }
  for (auto& a : options_.extra_flags)
    args.push_back(a);
  if (auto it = options_.node_flags.find(i); it != options_.node_flags.end())
    for (auto& a : it->second)
      args.push_back(a);
  return args;
}

std::optional<std::string>
cluster_harness::registered_incarnation(int i) const {
  try {
    pqxx::connection conn{options_.db_url};
    pqxx::read_transaction tx{conn};
    auto r = tx.exec_params("SELECT incarnation FROM cluster_members"
                            " WHERE node_id = $1",
                            i);
    if (r.empty())
      return std::nullopt;
    return r[0][0].as<std::string>();
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

::testing::AssertionResult cluster_harness::start(int i) {
  if (running(i))
    return ::testing::AssertionFailure() << "node " << i << " is running";
  if (options_.binary.empty() || ::access(options_.binary.c_str(), X_OK) != 0)
    return ::testing::AssertionFailure()
           << "shoutflowd binary '" << options_.binary
           << "' is not executable: run through ctest (it sets SHOUTFLOWD), "
              "or export SHOUTFLOWD=<build>/bin/shoutflowd";
  // Whatever incarnation the table names now belongs to a dead process.
  std::optional<std::string> stale;
  if (options_.cluster_flags)
    stale = registered_incarnation(i);
  auto args = args_of(i);
  std::string log_path;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    auto& s = slots_.at(static_cast<std::size_t>(i));
    log_path = options_.log_dir + "/node-" + std::to_string(i) + "."
               + std::to_string(s.starts) + ".log";
    if (stale)
      s.stale_incarnations.insert(*stale);
  }
  {
    std::ofstream header{log_path, std::ios::trunc};
    header << "# shoutflow cluster harness: node " << i << ":";
    for (auto& a : args)
      header << " " << a;
    header << "\n";
  }
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null",
                                   O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_path.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  pid_t pid = -1;
  auto rc = posix_spawn(&pid, options_.binary.c_str(), &actions, nullptr,
                        argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0)
    return ::testing::AssertionFailure()
           << "posix_spawn " << options_.binary << ": " << std::strerror(rc);
  std::lock_guard<std::mutex> guard{mtx_};
  auto& s = slots_.at(static_cast<std::size_t>(i));
  s.pid = pid;
  s.paused = false;
  s.stopping = false;
  s.ready = false;
  s.expect_exit = false;
  s.starts += 1;
  s.logs.push_back(log_path);
  return ::testing::AssertionSuccess();
}

void cluster_harness::note_exit(int i, int wait_status) {
  std::string log_path;
  bool expected = false;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    auto& s = slots_.at(static_cast<std::size_t>(i));
    expected = s.expect_exit;
    s.pid = -1;
    s.paused = false;
    s.ready = false;
    s.stopping = false;
    if (!s.logs.empty())
      log_path = s.logs.back();
  }
  if (!expected)
    unexpected_.push_back("node " + std::to_string(i) + " exited by itself ("
                          + describe_wait_status(wait_status)
                          + "); log: " + log_path);
}

bool cluster_harness::running(int i) {
  pid_t pid = slot(i).pid;
  if (pid <= 0)
    return false;
  int status = 0;
  auto r = ::waitpid(pid, &status, WNOHANG);
  if (r == 0)
    return true;
  note_exit(i, r == pid ? status : 0);
  return false;
}

bool cluster_harness::paused(int i) const {
  return slot(i).paused;
}

bool cluster_harness::live(int i) {
  if (!running(i))
    return false;
  auto& s = slot(i);
  std::lock_guard<std::mutex> guard{mtx_};
  return !s.paused && !s.stopping;
}

std::vector<int> cluster_harness::running_nodes() {
  std::vector<int> out;
  for (int i = 0; i < size(); ++i)
    if (running(i))
      out.push_back(i);
  return out;
}

std::vector<int> cluster_harness::live_nodes() {
  std::vector<int> out;
  for (int i = 0; i < size(); ++i)
    if (live(i))
      out.push_back(i);
  return out;
}

int cluster_harness::stop(int i,
                          std::optional<std::chrono::milliseconds> timeout) {
  if (!running(i))
    return -1;
  auto wait_for = timeout.value_or(options_.shutdown_grace + seconds(5));
  pid_t pid = 0;
  bool was_paused = false;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    auto& s = slots_.at(static_cast<std::size_t>(i));
    s.stopping = true;
    s.expect_exit = true;
    pid = s.pid;
    was_paused = s.paused;
  }
  // A stopped process keeps SIGTERM pending until it continues.
  if (was_paused)
    resume(i);
  ::kill(pid, SIGTERM);
  auto until = steady::now() + wait_for;
  int status = 0;
  while (steady::now() < until) {
    auto r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      note_exit(i, status);
      return status;
    }
    if (r < 0) {
      note_exit(i, 0);
      return -1;
    }
    std::this_thread::sleep_for(milliseconds(10));
  }
  std::cerr << "[ cluster  ] node " << i << " did not exit within "
            << wait_for.count() << " ms of SIGTERM; SIGKILL\n";
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  note_exit(i, status);
  return -1;
}

void cluster_harness::kill(int i) {
  if (!running(i))
    return;
  pid_t pid = 0;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    auto& s = slots_.at(static_cast<std::size_t>(i));
    s.expect_exit = true;
    pid = s.pid;
  }
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  note_exit(i, status);
}

void cluster_harness::pause(int i) {
  if (!running(i) || paused(i))
    return;
  pid_t pid = slot(i).pid;
  ::kill(pid, SIGSTOP);
  // Returns once the kernel has stopped it (SIGSTOP cannot be caught), so
  // the frozen time the test measures starts now.
  int status = 0;
  auto r = ::waitpid(pid, &status, WUNTRACED);
  if (r == pid && !WIFSTOPPED(status)) {
    note_exit(i, status);
    return;
  }
  std::lock_guard<std::mutex> guard{mtx_};
  slots_.at(static_cast<std::size_t>(i)).paused = true;
}

void cluster_harness::resume(int i) {
  if (!paused(i))
    return;
  pid_t pid = slot(i).pid;
  ::kill(pid, SIGCONT);
  int status = 0;
  auto r = ::waitpid(pid, &status, WCONTINUED);
  if (r == pid && !WIFCONTINUED(status)) {
    note_exit(i, status);
    return;
  }
  std::lock_guard<std::mutex> guard{mtx_};
  slots_.at(static_cast<std::size_t>(i)).paused = false;
}

const node_ports& cluster_harness::ports(int i) const {
  return slot(i).ports;
}

std::string cluster_harness::command_address(int i) const {
  return "127.0.0.1:" + std::to_string(ports(i).command);
}

std::string cluster_harness::query_address(int i) const {
  return "127.0.0.1:" + std::to_string(ports(i).query);
}

std::string cluster_harness::admin_address(int i) const {
  return "127.0.0.1:" + std::to_string(ports(i).admin);
}

std::vector<std::string> cluster_harness::targets(int node_ports::*port) const {
  std::lock_guard<std::mutex> guard{mtx_};
  std::vector<std::string> out;
  for (auto& s : slots_)
    if (s.pid > 0 && s.ready && !s.stopping)
      out.push_back("127.0.0.1:" + std::to_string(s.ports.*port));
  return out;
}

std::vector<std::string> cluster_harness::command_targets() const {
  return targets(&node_ports::command);
}

std::vector<std::string> cluster_harness::query_targets() const {
  return targets(&node_ports::query);
}

std::vector<std::string> cluster_harness::admin_targets() const {
  return targets(&node_ports::admin);
}

std::string cluster_harness::log(int i) const {
  std::vector<std::string> logs;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    logs = slots_.at(static_cast<std::size_t>(i)).logs;
  }
  std::string out;
  for (auto& path : logs)
    out += read_whole_file(path);
  return out;
}

void cluster_harness::dump_logs(std::ostream& out,
                                std::size_t tail_bytes) const {
  std::vector<std::vector<std::string>> all;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    for (auto& s : slots_)
      all.push_back(s.logs);
  }
  for (std::size_t i = 0; i < all.size(); ++i)
    for (std::size_t k = 0; k < all[i].size(); ++k)
      out << "---- node " << i << ", start " << k << ": " << all[i][k]
          << " ----\n"
          << tail_of(read_whole_file(all[i][k]), tail_bytes) << "\n";
}

std::vector<std::string> cluster_harness::unexpected_exits() {
  for (int i = 0; i < size(); ++i)
    running(i); // reaps and records
  return unexpected_;
}

::testing::AssertionResult cluster_harness::wait_ready(int i,
                                                       milliseconds within) {
  auto until = steady::now() + within;
  auto& p = ports(i);
  auto addresses = {"127.0.0.1:" + std::to_string(p.command),
                    "127.0.0.1:" + std::to_string(p.query),
                    "127.0.0.1:" + std::to_string(p.admin)};
  for (;;) {
    if (!running(i))
      return ::testing::AssertionFailure()
             << "node " << i << " exited while starting:\n"
             << tail_of(log(i), 8192);
    bool all = true;
    for (auto& a : addresses)
      if (!health_serving(a, milliseconds(500))) {
        all = false;
        break;
      }
    if (all) {
      std::lock_guard<std::mutex> guard{mtx_};
      slots_.at(static_cast<std::size_t>(i)).ready = true;
      return ::testing::AssertionSuccess();
    }
    if (steady::now() > until)
      return ::testing::AssertionFailure()
             << "node " << i << " not SERVING within " << within.count()
             << " ms:\n"
             << tail_of(log(i), 8192);
    std::this_thread::sleep_for(milliseconds(50));
  }
}

::testing::AssertionResult cluster_harness::leases_settled() {
  if (!options_.cluster_flags)
    return ::testing::AssertionSuccess();
  std::set<int> live_set;
  for (auto i : live_nodes())
    live_set.insert(i);
  try {
    pqxx::connection conn{options_.db_url};
    pqxx::read_transaction tx{conn};
    auto shards = std::stoll(tx.exec1("SELECT coalesce((SELECT value FROM"
                                      " cluster_settings WHERE name ="
                                      " 'shards'), '256')")[0]
                               .as<std::string>());
    auto rows = tx.exec(
      "SELECT l.resource, l.part, l.owner_node, l.expires_at >"
      " clock_timestamp(), m.state"
      "  FROM leases l LEFT JOIN cluster_members m"
      "    ON m.node_id = l.owner_node"
      "   AND m.incarnation = l.owner_incarnation"
      " ORDER BY l.resource, l.part");
    std::set<long long> shard_parts;
    std::vector<std::string> bad;
    for (const auto& row : rows) {
      auto resource = row[0].as<std::string>();
      auto part = row[1].as<long long>();
      if (resource == "shard")
        shard_parts.insert(part);
      std::string what = resource + "/" + std::to_string(part);
      if (row[2].is_null()) {
        bad.push_back(what + " has no owner");
        continue;
      }
      auto owner = row[2].as<int>();
      if (live_set.count(owner) == 0)
        bad.push_back(what + " owned by node " + std::to_string(owner)
                      + ", which is not live");
      else if (row[4].is_null())
        bad.push_back(what + " owned by an incarnation of node "
                      + std::to_string(owner)
                      + " that cluster_members does not list");
      else if (row[4].as<std::string>() == "down")
        bad.push_back(what + " owned by node " + std::to_string(owner)
                      + ", declared down");
      else if (!row[3].as<bool>())
        bad.push_back(what + " owned by node " + std::to_string(owner)
                      + " has expired");
    }
    if (static_cast<long long>(shard_parts.size()) != shards)
      bad.insert(bad.begin(), std::to_string(shard_parts.size()) + " of "
                                + std::to_string(shards)
                                + " shards have a lease row");
    if (bad.empty())
      return ::testing::AssertionSuccess();
    auto r = ::testing::AssertionFailure();
    r << bad.size() << " lease problems";
    for (std::size_t k = 0; k < bad.size() && k < 5; ++k)
      r << "; " << bad[k];
    return r;
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure()
           << "cannot read the lease table: " << e.what();
  }
}

::testing::AssertionResult cluster_harness::cluster_settled() {
  auto nodes = live_nodes();
  if (nodes.empty())
    return ::testing::AssertionFailure() << "no live node";
  if (!options_.cluster_flags) {
    for (auto i : nodes)
      for (auto& a : {command_address(i), query_address(i), admin_address(i)})
        if (!health_serving(a, milliseconds(1000)))
          return ::testing::AssertionFailure()
                 << "node " << i << " not SERVING on " << a;
    return ::testing::AssertionSuccess();
  }
  auto leases = leases_settled();
  if (!leases)
    return leases;
  try {
    pqxx::connection conn{options_.db_url};
    pqxx::read_transaction tx{conn};
    std::map<int, std::pair<std::string, std::string>> members;
    for (const auto& row :
         tx.exec("SELECT node_id, state, incarnation FROM cluster_members"))
      members[row[0].as<int>()] = {row[1].as<std::string>(),
                                   row[2].as<std::string>()};
    for (auto i : nodes) {
      auto it = members.find(i);
      if (it == members.end())
        return ::testing::AssertionFailure()
               << "node " << i << " has no cluster_members row";
      if (slot(i).stale_incarnations.count(it->second.second) > 0)
        return ::testing::AssertionFailure()
               << "node " << i << "'s row still names an earlier process ("
               << it->second.second << ")";
      if (it->second.first != "up")
        return ::testing::AssertionFailure()
               << "node " << i << " is '" << it->second.first << "'";
    }
    return ::testing::AssertionSuccess();
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure()
           << "cannot read cluster_members: " << e.what();
  }
}

std::optional<std::chrono::milliseconds>
cluster_harness::wait_leases_settled(milliseconds within, std::string* why) {
  auto started = steady::now();
  auto until = started + within;
  for (;;) {
    auto r = leases_settled();
    if (r)
      return std::chrono::duration_cast<milliseconds>(steady::now() - started);
    if (steady::now() > until) {
      if (why != nullptr)
        *why = r.message();
      return std::nullopt;
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
}

::testing::AssertionResult
cluster_harness::wait_cluster_settled(milliseconds within) {
  auto until = steady::now() + within;
  for (;;) {
    auto r = cluster_settled();
    if (r)
      return r;
    if (steady::now() > until) {
      auto f = ::testing::AssertionFailure();
      f << "cluster not settled within " << within.count()
        << " ms: " << r.message();
      for (auto& u : unexpected_exits())
        f << "\n  " << u;
      return f;
    }
    std::this_thread::sleep_for(milliseconds(50));
  }
}

// -- scratch PostgreSQL -------------------------------------------------------

scratch_postgres::scratch_postgres() {
  auto* script = std::getenv("SHOUTFLOW_PG_SCRIPT");
  if (script == nullptr || *script == '\0') {
    error_ = "SHOUTFLOW_PG_SCRIPT is not set: run the suite with scripts/test, "
             "or export SHOUTFLOW_PG_SCRIPT=<source dir>/scripts/pg";
    return;
  }
  script_ = script;
  char tmpl[] = "/tmp/sf-cluster-pg-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    error_ = "mkdtemp failed";
    return;
  }
  dir_ = tmpl;
  port_ = reserve_port();
  if (port_ == 0) {
    error_ = "no free port";
    return;
  }
  error_ = pg("start");
}

scratch_postgres::~scratch_postgres() {
  if (dir_.empty())
    return;
  run_shell(shell_quoted(script_) + " stop --data " + shell_quoted(dir_));
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

std::string scratch_postgres::pg(const std::string& verb) {
  auto r = run_shell(shell_quoted(script_) + " " + verb + " --data "
                     + shell_quoted(dir_) + " --port " + std::to_string(port_));
  if (r.exit_code == 0)
    return {};
  return "scripts/pg " + verb + " failed:\n" + r.output;
}

std::string scratch_postgres::create_database(const std::string& name) {
  auto base = "postgresql://shoutflow@127.0.0.1:" + std::to_string(port_) + "/";
  {
    pqxx::connection conn{base + "shoutflow"};
    pqxx::nontransaction tx{conn};
    tx.exec("CREATE DATABASE " + name);
  }
  journal::migrate(base + name);
  return base + name;
}

// -- commands -----------------------------------------------------------------

const char* to_string(command_outcome o) {
  switch (o) {
    case command_outcome::pending:
      return "pending";
    case command_outcome::acknowledged:
      return "acknowledged";
    case command_outcome::rejected:
      return "rejected";
    case command_outcome::failed:
      return "failed";
  }
  return "?";
}

void command_log::add(const command_record& r) {
  std::lock_guard<std::mutex> guard{mtx_};
  records_.push_back(r);
  switch (r.outcome) {
    case command_outcome::acknowledged:
      ++acknowledged_;
      if (r.result.duplicate())
        ++duplicates_;
      break;
    case command_outcome::rejected:
      ++rejected_;
      ++rejected_by_code_[r.code];
      break;
    case command_outcome::failed:
      ++failed_;
      ++failed_by_code_[r.code];
      break;
    case command_outcome::pending:
      break;
  }
}

void command_log::count_retry(grpc::StatusCode code) {
  std::lock_guard<std::mutex> guard{mtx_};
  ++retried_by_code_[code];
}

std::vector<command_record> command_log::records() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return records_;
}

std::string command_log::summary() const {
  std::lock_guard<std::mutex> guard{mtx_};
  std::ostringstream out;
  out << acknowledged_ << " acknowledged (" << duplicates_ << " duplicate), "
      << rejected_ << " rejected " << counts_text(rejected_by_code_) << ", "
      << failed_ << " failed " << counts_text(failed_by_code_)
      << ", retried attempts " << counts_text(retried_by_code_);
  return out.str();
}

command_client::command_client(target_source targets, retry_policy policy,
                               command_log* log)
  : targets_(std::move(targets)), policy_(policy), log_(log) {
}

command_record command_client::make(const std::string& method,
                                    const std::string& user_id,
                                    const google::protobuf::Message& request) {
  command_record r;
  auto* field = request.GetDescriptor()->FindFieldByName("command_id");
  if (field != nullptr)
    r.command_id = request.GetReflection()->GetString(request, field);
  r.user_id = user_id;
  r.method = method;
  r.request = request.SerializeAsString();
  return r;
}

command_record command_client::execute(command_record r, std::mt19937_64& rng,
                                       bool record) {
  auto started = steady::now();
  auto deadline = started + policy_.budget;
  auto path = "/shoutflow.v1.CommandService/" + r.method;
  auto backoff = policy_.first_backoff;
  grpc::Status last{grpc::StatusCode::UNAVAILABLE, "no attempt made"};
  r.outcome = command_outcome::pending;
  r.attempts = 0;
  for (;;) {
    auto now = steady::now();
    if (now >= deadline) {
      r.outcome = command_outcome::failed;
      r.code = last.error_code();
      r.message = "retry budget of " + std::to_string(policy_.budget.count())
                  + " ms spent; last: " + last.error_message();
      break;
    }
    auto targets = targets_();
    if (targets.empty()) {
      last = {grpc::StatusCode::UNAVAILABLE, "no node to send to"};
    } else {
      auto& target = targets[rng() % targets.size()];
      auto attempt_end = std::min(deadline, now + policy_.attempt_timeout);
      ++r.attempts;
      auto reply
        = unary_raw(channel_to(target), path, r.request,
                    std::chrono::system_clock::now() + (attempt_end - now));
      if (reply.status.ok()) {
        bool parsed = false;
        if (r.method == "Login") {
          v1::LoginResult login;
          parsed = login.ParseFromString(reply.bytes);
          r.result = login.result();
          r.login_success = login.success();
        } else {
          parsed = r.result.ParseFromString(reply.bytes);
        }
        if (parsed) {
          r.outcome = command_outcome::acknowledged;
          r.node = target;
        } else {
          r.outcome = command_outcome::failed;
          r.code = grpc::StatusCode::INTERNAL;
          r.message = "unparseable reply from " + target;
        }
        break;
      }
      if (!transport_failure(reply.status)) {
        r.outcome = command_outcome::rejected;
        r.code = reply.status.error_code();
        r.message = reply.status.error_message();
        break;
      }
      last = reply.status;
      if (log_ != nullptr)
        log_->count_retry(last.error_code());
    }
    // Jittered exponential backoff, never past the budget.
    std::uniform_int_distribution<int64_t> jitter{0, backoff.count() / 2};
    auto pause = backoff + milliseconds(jitter(rng));
    auto left
      = std::chrono::duration_cast<milliseconds>(deadline - steady::now());
    if (left.count() > 0)
      std::this_thread::sleep_for(std::min(pause, left));
    backoff = std::min(backoff * 2, policy_.max_backoff);
  }
  r.took = std::chrono::duration_cast<milliseconds>(steady::now() - started);
  if (record && log_ != nullptr)
    log_->add(r);
  return r;
}

// -- the load -----------------------------------------------------------------

load_driver::load_driver(target_source targets, load_options options)
  : options_(std::move(options)),
    client_(std::move(targets), options_.retry, &log_) {
  for (int k = 0; k < options_.users; ++k)
    users_.push_back(options_.tag + "-u" + std::to_string(k));
}

load_driver::~load_driver() {
  stop();
}

::testing::AssertionResult load_driver::register_users() {
  std::atomic<std::size_t> next{0};
  std::mutex mtx;
  std::vector<std::string> failures;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      std::mt19937_64 rng{options_.seed * 7919 + static_cast<uint64_t>(t)};
      for (auto k = next++; k < users_.size(); k = next++) {
        // Handles: [A-Za-z0-9_]{1,15}, so no '-' from the tag.
        std::string handle = "h";
        for (auto c : options_.tag)
          if (std::isalnum(static_cast<unsigned char>(c)))
            handle += c;
        handle = handle.substr(0, 9) + "_" + std::to_string(k);
        auto req = register_user_request(
          options_.tag + "-reg-" + std::to_string(k), users_[k], handle,
          "User " + std::to_string(k));
        auto r = client_.execute(
          command_client::make("RegisterUser", users_[k], req), rng);
        if (r.outcome != command_outcome::acknowledged) {
          std::lock_guard<std::mutex> guard{mtx};
          failures.push_back(users_[k] + ": " + to_string(r.outcome) + " "
                             + status_code_name(r.code) + " " + r.message);
        }
      }
    });
  for (auto& t : threads)
    t.join();
  if (failures.empty())
    return ::testing::AssertionSuccess();
  auto f = ::testing::AssertionFailure();
  f << failures.size() << " registrations failed";
  for (auto& x : failures)
    f << "\n  " << x;
  return f;
}

void load_driver::start() {
  if (!threads_.empty())
    return;
  stop_ = false;
  for (int t = 0; t < options_.clients; ++t)
    threads_.emplace_back([this, t] { run_client(t); });
}

void load_driver::stop() {
  stop_ = true;
  for (auto& t : threads_)
    t.join();
  threads_.clear();
}

::testing::AssertionResult load_driver::wait_acknowledged(int64_t since,
                                                          int64_t more,
                                                          milliseconds within) {
  auto until = steady::now() + within;
  while (log_.acknowledged() < since + more) {
    if (steady::now() > until)
      return ::testing::AssertionFailure()
             << "only " << log_.acknowledged() - since << " of " << more
             << " more commands acknowledged within " << within.count()
             << " ms (" << log_.summary() << ")";
    std::this_thread::sleep_for(milliseconds(10));
  }
  return ::testing::AssertionSuccess();
}

void load_driver::run_client(int index) {
  std::mt19937_64 rng{options_.seed * 1000003 + static_cast<uint64_t>(index)};
  auto pick = [&](std::size_t n) {
    return static_cast<std::size_t>(rng() % n);
  };
  auto any_user = [&] { return users_[pick(users_.size())]; };
  auto recall = [&](std::vector<std::pair<std::string, std::string>>& list)
    -> std::optional<std::pair<std::string, std::string>> {
    std::lock_guard<std::mutex> guard{known_.mtx};
    if (list.empty())
      return std::nullopt;
    return list[pick(list.size())];
  };
  for (int64_t n = 0; !stop_; ++n) {
    auto cid = options_.tag + "-c" + std::to_string(index) + "-"
               + std::to_string(n);
    auto who = any_user();
    auto roll = rng() % 100;
    auto shout = recall(known_.shouts);
    // Likes, unlikes and deletions name a shout; before one is known, post.
    bool needs_shout = (roll >= 48 && roll < 75) || (roll >= 85 && roll < 90);
    command_record cmd;
    if (roll < 25 || (needs_shout && !shout)) {
      auto r = post_shout_request(cid, who, "shout " + cid);
      if (shout && rng() % 4 == 0)
        r.set_reply_to_shout_id(shout->first);
      cmd = command_client::make("PostShout", who, r);
    } else if (roll < 40) {
      auto whom = any_user();
      if (whom == who)
        continue;
      cmd = command_client::make(
        "Follow", who, target_request<v1::FollowRequest>(cid, who, whom));
    } else if (roll < 48) {
      // Mostly a follow that exists; else maybe none (a no-op success).
      auto pair = rng() % 10 < 7 ? recall(known_.follows) : std::nullopt;
      auto whom = pair ? pair->second : any_user();
      if (pair)
        who = pair->first;
      if (whom == who)
        continue;
      cmd = command_client::make(
        "Unfollow", who, target_request<v1::UnfollowRequest>(cid, who, whom));
    } else if (roll < 68) {
      cmd = command_client::make(
        "LikeShout", who,
        shout_request<v1::LikeShoutRequest>(cid, who, shout->first));
    } else if (roll < 75) {
      auto pair = rng() % 10 < 7 ? recall(known_.likes) : std::nullopt;
      if (pair)
        who = pair->first;
      auto r = shout_request<v1::UnlikeShoutRequest>(
        cid, who, pair ? pair->second : shout->first);
      cmd = command_client::make("UnlikeShout", who, r);
    } else if (roll < 85) {
      auto r = command_request<v1::UpdateProfileRequest>(cid, who);
      switch (rng() % 3) {
        case 0:
          r.set_display_name("Name " + cid);
          break;
        case 1:
          r.set_bio("bio of " + who + " at " + cid);
          break;
        default:
          // A small set of values: some updates change nothing (no-ops).
          r.set_avatar_hash("avatar" + std::to_string(rng() % 3));
      }
      cmd = command_client::make("UpdateProfile", who, r);
    } else if (roll < 90) {
      // Mostly by the author; sometimes by someone else (PERMISSION_DENIED).
      if (rng() % 5 != 0)
        who = shout->second;
      cmd = command_client::make(
        "DeleteShout", who,
        shout_request<v1::DeleteShoutRequest>(cid, who, shout->first));
    } else {
      auto r = command_request<v1::LoginRequest>(cid, who);
      r.set_password(rng() % 100 < 85 ? test_password : "wrong horse");
      r.set_client_ip("10.0.0." + std::to_string(rng() % 250));
      r.set_user_agent("load/" + std::to_string(index));
      cmd = command_client::make("Login", who, r);
    }
    auto done = client_.execute(std::move(cmd), rng);
    if (done.outcome == command_outcome::acknowledged) {
      std::lock_guard<std::mutex> guard{known_.mtx};
      if (done.method == "PostShout" && !done.result.shout_id().empty())
        known_.shouts.emplace_back(done.result.shout_id(), done.user_id);
      else if (done.method == "Follow") {
        v1::FollowRequest r;
        r.ParseFromString(done.request);
        known_.follows.emplace_back(r.user_id(), r.target_user_id());
      } else if (done.method == "LikeShout") {
        v1::LikeShoutRequest r;
        r.ParseFromString(done.request);
        known_.likes.emplace_back(r.user_id(), r.shout_id());
      }
    }
    if (options_.think_time.count() > 0)
      std::this_thread::sleep_for(options_.think_time);
  }
}

} // namespace shoutflow::testing
