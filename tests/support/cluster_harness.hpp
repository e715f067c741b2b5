#pragma once

// Fault-injection harness for a ShoutFlow cluster made of real `shoutflowd`
// processes (binary path in $SHOUTFLOWD, set by ctest), and a retrying load
// driver that records every command it sent and what became of it.
//
// Processes. Node i is a child process spawned with posix_spawn, its output
// (stdout and stderr) appended to a log file per start under the harness's
// log directory. A node keeps its ports across restarts (a restarted pod
// keeps its node id and address). The harness can start, SIGTERM (stop),
// SIGKILL (kill), SIGSTOP (pause) and SIGCONT (resume) a node, and notices
// a node that exits on its own (unexpected_exits()). The destructor
// SIGKILLs and reaps every node still running and, when the current test
// has failed, prints the logs of all nodes (and keeps them); after a pass
// it removes the log directory it made.
//
// Waits are polls of a condition against a deadline: never sleep-and-hope.
//
// Ports are drawn at random below the kernel's ephemeral range: client
// connections (ours, PostgreSQL's) take their local ports from that range,
// so one of them could otherwise occupy a stopped node's port before it
// restarts on it.
//
// Cluster scenarios of different test binaries run one at a time (a file
// lock, `cluster_options::exclusive`): ctest -j2 on two cores would
// otherwise run six nodes at once and starve the heartbeats that the lease
// TTL measures.
//
// Load. A `command_client` sends one command (its serialized request bytes)
// to a random target node, and retries UNAVAILABLE, DEADLINE_EXCEEDED and
// connection failures with the SAME bytes (same command_id) against any
// target for up to a budget (10 s by default). Every command ends as
// acknowledged (with its CommandResult), rejected (a business answer such
// as NOT_FOUND, recorded with its status), or failed (the budget ran out:
// its outcome is unknown). A `load_driver` runs K client threads sending a
// mixed load over a fixed user set through such a client.

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "services/common/status_code_name.hpp"
#include "shoutflow/v1/commands.pb.h"

namespace shoutflow::testing {

// -- run parameters -----------------------------------------------------------

/// The seed of this test's randomized choices: $SHOUTFLOW_SEED when set
/// (to replay a run), else a fresh random one. Prints it with the test's
/// name every time it is called, so a failing run can be replayed.
uint64_t scenario_seed();

/// True when $SHOUTFLOW_SOAK=1: scenarios run more cycles and longer loads.
bool soak();

/// $SHOUTFLOWD, or an empty string when it is not set.
std::string shoutflowd_binary();

/// Whether `binary --help` lists --caf-port, i.e. the binary accepts the
/// cluster flags (the single-node validation tests switch them on exactly
/// then, so they keep running before and after the cluster code lands).
bool binary_has_cluster_flags(const std::string& binary);

/// A TCP port nobody listened on a moment ago, below the ephemeral range,
/// never handed out twice by this process.
int reserve_port();

// -- raw gRPC -----------------------------------------------------------------

/// A channel to `address` ("host:port") that reconnects quickly after the
/// node behind it restarts (reconnect backoff 100-500 ms, not gRPC's
/// default of up to two minutes). Cached per address; thread-safe.
std::shared_ptr<grpc::Channel> channel_to(const std::string& address);

struct raw_reply {
  grpc::Status status;
  std::string bytes;
};

/// One unary call of `method` ("/package.Service/Method") with the request
/// given as serialized bytes; blocks until the reply or `deadline`.
raw_reply unary_raw(const std::shared_ptr<grpc::Channel>& channel,
                    const std::string& method, const std::string& request,
                    std::chrono::system_clock::time_point deadline);

/// grpc.health.v1.Health/Check for the server ("") answers SERVING.
bool health_serving(const std::string& address,
                    std::chrono::milliseconds timeout);

enum class health_answer { serving, not_serving, unknown_service, no_answer };

/// grpc.health.v1.Health/Check of `service` ("" for the server).
health_answer health_check(const std::string& address,
                           const std::string& service,
                           std::chrono::milliseconds timeout);

/// "SERVING", "NOT_SERVING", ...
const char* to_string(health_answer a);

/// Whether a failed call is a transport failure worth retrying with the
/// same command_id: UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED (we never
/// cancel a command ourselves, so the server went away), and UNKNOWN or
/// INTERNAL statuses whose message is a transport error (reset stream,
/// closed socket).
bool transport_failure(const grpc::Status& status);

/// "UNAVAILABLE", "NOT_FOUND", ... (services/common/status_code_name.hpp),
/// in this namespace for the harness's users, who print statuses.
using services::status_code_name;

// -- processes ----------------------------------------------------------------

struct node_ports {
  int command = 0;
  int query = 0;
  int admin = 0;
  int caf = 0;
};

struct cluster_options {
  /// The binary; empty: $SHOUTFLOWD.
  std::string binary;
  /// The database every node uses (a test_database's url()).
  std::string db_url;
  /// Pass --caf-port, --heartbeat-interval, --lease-ttl and
  /// --shutdown-grace. Today's single-node binary rejects them; with this
  /// off, "settled" means "every running node is healthy" and nothing is
  /// read from the cluster tables.
  bool cluster_flags = true;
  std::string heartbeat_interval = "500ms";
  /// Also the lease TTL the harness assumes when it waits for fail-over.
  std::chrono::milliseconds lease_ttl{3000};
  std::chrono::milliseconds shutdown_grace{20000};
  /// Appended to every node's command line (e.g. {"--shards", "64"}).
  std::vector<std::string> extra_flags;
  /// Appended to node i's command line after those (e.g. its --roles).
  std::map<int, std::vector<std::string>> node_flags;
  /// Where the node logs go; empty: a fresh directory under
  /// ::testing::TempDir(), removed when the test passes.
  std::string log_dir;
  /// Hold the machine-wide cluster-test lock while the harness lives.
  bool exclusive = true;
  /// On test failure, print at most this many trailing bytes of each log.
  std::size_t log_tail_bytes = 256 * 1024;
};

/// The lease TTL as the --lease-ttl value ("3000ms").
std::string duration_flag(std::chrono::milliseconds d);

class cluster_harness {
public:
  /// `nodes` slots (0 .. nodes-1), none started.
  cluster_harness(cluster_options options, int nodes);
  ~cluster_harness();

  cluster_harness(const cluster_harness&) = delete;
  cluster_harness& operator=(const cluster_harness&) = delete;

  const cluster_options& options() const {
    return options_;
  }

  /// Number of slots.
  int size() const;
  /// Adds a slot with fresh ports (not started); returns its index.
  int add_node();

  /// Spawns node i (which must not be running) with its fixed ports.
  ::testing::AssertionResult start(int i);
  /// SIGTERM, then waits up to `timeout` (default: the shutdown grace plus
  /// 5 s) for the exit. Returns the wait status, or -1 if the node did not
  /// exit in time (it is then SIGKILLed and reaped) or was not running.
  int stop(int i, std::optional<std::chrono::milliseconds> timeout = {});
  /// SIGKILL and reap.
  void kill(int i);
  /// SIGSTOP / SIGCONT.
  void pause(int i);
  void resume(int i);

  /// The process exists (paused counts); reaps it and records its exit if
  /// it has gone.
  bool running(int i);
  bool paused(int i) const;
  /// Running, not paused, not being stopped.
  bool live(int i);
  std::vector<int> running_nodes();
  std::vector<int> live_nodes();

  const node_ports& ports(int i) const;
  std::string command_address(int i) const;
  std::string query_address(int i) const;
  std::string admin_address(int i) const;

  /// Addresses clients may use, as a load balancer in front of the pods
  /// would offer them: nodes that are running, have passed wait_ready
  /// since their last start and are not being stopped (Kubernetes takes a
  /// terminating pod out of its Service). A paused node stays a target:
  /// nobody outside knows it is frozen. Thread-safe.
  std::vector<std::string> command_targets() const;
  std::vector<std::string> query_targets() const;
  std::vector<std::string> admin_targets() const;

  /// Node i's output over all its starts (each start's file, in order).
  std::string log(int i) const;
  /// The logs of all nodes, each cut to its last `tail_bytes` bytes.
  void dump_logs(std::ostream& out, std::size_t tail_bytes) const;

  /// Exits the harness did not cause ("node 2 exited with status 134 ...").
  std::vector<std::string> unexpected_exits();

  /// Node i answers SERVING on its command, query and admin ports. Fails
  /// early (with the log) if the process exits.
  ::testing::AssertionResult wait_ready(int i, std::chrono::milliseconds within
                                               = std::chrono::seconds(30));

  /// With cluster flags: every row of `leases` is owned by the current
  /// incarnation of a live node (its cluster_members row, not 'down') and
  /// unexpired by the database clock, and there is a shard lease for every
  /// shard. Without: true.
  ::testing::AssertionResult leases_settled();
  /// leases_settled(), and every live node has its cluster_members row in
  /// state 'up' with an incarnation newer than its previous starts'.
  /// Without cluster flags: every live node answers SERVING.
  ::testing::AssertionResult cluster_settled();

  /// Polls leases_settled() until it holds; the time it took, or nothing
  /// (and the last reason in `why`) when `within` ran out.
  std::optional<std::chrono::milliseconds>
  wait_leases_settled(std::chrono::milliseconds within,
                      std::string* why = nullptr);
  ::testing::AssertionResult
  wait_cluster_settled(std::chrono::milliseconds within
                       = std::chrono::seconds(30));

private:
  struct node_slot {
    node_ports ports;
    pid_t pid = -1;
    bool paused = false;
    bool stopping = false;
    bool ready = false;
    /// The harness is about to cause this exit.
    bool expect_exit = false;
    int starts = 0;
    std::vector<std::string> logs;
    /// cluster_members incarnations of earlier processes of this node.
    std::set<std::string> stale_incarnations;
  };

  node_slot& slot(int i);
  const node_slot& slot(int i) const;
  std::vector<std::string> args_of(int i) const;
  void note_exit(int i, int wait_status);
  std::vector<std::string> targets(int node_ports::*port) const;
  /// Reads the incarnation currently registered for node i (if any).
  std::optional<std::string> registered_incarnation(int i) const;

  cluster_options options_;
  mutable std::mutex mtx_; // guards slots_ (targets are read by clients)
  /// A deque: references to a slot stay valid when add_node() grows it.
  std::deque<node_slot> slots_;
  std::vector<std::string> unexpected_;
  int lock_fd_ = -1;
  /// The harness made the log directory: it removes it after a pass.
  bool owns_log_dir_ = false;
};

/// A throwaway PostgreSQL server (scripts/pg, found through
/// $SHOUTFLOW_PG_SCRIPT, with its own data directory and port), for
/// scenarios that restart the server under the cluster without disturbing
/// tests that run beside them on the shared one. Stopped and removed on
/// destruction.
class scratch_postgres {
public:
  scratch_postgres();
  ~scratch_postgres();

  scratch_postgres(const scratch_postgres&) = delete;
  scratch_postgres& operator=(const scratch_postgres&) = delete;

  /// Empty when the server is up, else what went wrong.
  const std::string& error() const {
    return error_;
  }

  /// Creates and migrates database `name`; its URL.
  std::string create_database(const std::string& name);

  /// `scripts/pg <verb>` (start, stop, restart) on this server: empty on
  /// success, else the script's output.
  std::string pg(const std::string& verb);

private:
  std::string script_;
  std::string dir_;
  int port_ = 0;
  std::string error_;
};

// -- commands -----------------------------------------------------------------

enum class command_outcome { pending, acknowledged, rejected, failed };

const char* to_string(command_outcome o);

/// One command a client sent and what became of it.
struct command_record {
  std::string command_id;
  /// The user whose stream the command appends to.
  std::string user_id;
  /// CommandService method name ("PostShout").
  std::string method;
  /// The serialized request: every attempt sends exactly these bytes.
  std::string request;

  command_outcome outcome = command_outcome::pending;
  /// Acknowledged: the result (for Login, LoginResult.result).
  v1::CommandResult result;
  bool login_success = false;
  /// Rejected or failed: the final status.
  grpc::StatusCode code = grpc::StatusCode::OK;
  std::string message;
  int attempts = 0;
  std::chrono::milliseconds took{0};
  /// Acknowledged: the node that answered.
  std::string node;
};

struct retry_policy {
  /// Total time a command may take over all its attempts.
  std::chrono::milliseconds budget{10000};
  /// Deadline of one attempt (a frozen node holds an attempt this long).
  std::chrono::milliseconds attempt_timeout{3000};
  std::chrono::milliseconds first_backoff{25};
  std::chrono::milliseconds max_backoff{500};
};

/// Where commands may go: addresses of CommandService endpoints.
using target_source = std::function<std::vector<std::string>()>;

/// Every command sent through clients that share it. Thread-safe.
class command_log {
public:
  void add(const command_record& r);
  std::vector<command_record> records() const;
  int64_t acknowledged() const {
    return acknowledged_;
  }
  int64_t rejected() const {
    return rejected_;
  }
  int64_t failed() const {
    return failed_;
  }
  /// "1234 acknowledged (12 duplicate), 56 rejected {NOT_FOUND: 50, ...},
  /// 0 failed, retries {UNAVAILABLE: 7}".
  std::string summary() const;
  void count_retry(grpc::StatusCode code);

private:
  mutable std::mutex mtx_;
  std::vector<command_record> records_;
  std::map<grpc::StatusCode, int64_t> rejected_by_code_, failed_by_code_,
    retried_by_code_;
  int64_t duplicates_ = 0;
  std::atomic<int64_t> acknowledged_{0}, rejected_{0}, failed_{0};
};

/// Sends commands with retries (see the top of this file).
class command_client {
public:
  command_client(target_source targets, retry_policy policy, command_log* log);

  /// Sends `r` (command_id, user_id, method, request set) until it is
  /// acknowledged, rejected, or the budget is spent; records it in the log
  /// (when `record`) and returns it.
  command_record execute(command_record r, std::mt19937_64& rng,
                         bool record = true);

  /// Builds the record for `request` (any *Request of CommandService).
  static command_record make(const std::string& method,
                             const std::string& user_id,
                             const google::protobuf::Message& request);

  const retry_policy& policy() const {
    return policy_;
  }

private:
  target_source targets_;
  retry_policy policy_;
  command_log* log_;
};

// -- the load -----------------------------------------------------------------

struct load_options {
  /// Prefix of command ids, user ids and handles (unique per database).
  std::string tag = "ld";
  int clients = 4;
  int users = 16;
  uint64_t seed = 1;
  retry_policy retry;
  /// Pause between two commands of one client (keeps two cores from
  /// saturating, which would starve heartbeats rather than test fail-over).
  std::chrono::milliseconds think_time{5};
};

/// K client threads sending a mixed load over a fixed set of registered
/// users: PostShout (some replies), Follow, Unfollow, LikeShout,
/// UnlikeShout, UpdateProfile, DeleteShout (sometimes someone else's:
/// PERMISSION_DENIED), Login (sometimes a wrong password). Each command has
/// a unique command_id.
class load_driver {
public:
  load_driver(target_source targets, load_options options);
  ~load_driver();

  load_driver(const load_driver&) = delete;
  load_driver& operator=(const load_driver&) = delete;

  /// Registers the user set (each must be acknowledged).
  ::testing::AssertionResult register_users();
  const std::vector<std::string>& users() const {
    return users_;
  }

  void start();
  /// Stops the clients after their current command (which keeps its full
  /// retry budget) and joins them.
  void stop();
  bool started() const {
    return !threads_.empty();
  }

  /// Waits until `more` commands beyond `since` were acknowledged.
  ::testing::AssertionResult
  wait_acknowledged(int64_t since, int64_t more,
                    std::chrono::milliseconds within);

  command_log& log() {
    return log_;
  }
  const command_log& log() const {
    return log_;
  }
  command_client& client() {
    return client_;
  }

private:
  void run_client(int index);

  struct knowledge {
    std::mutex mtx;
    std::vector<std::pair<std::string, std::string>> shouts;  // id, author
    std::vector<std::pair<std::string, std::string>> follows; // who, whom
    std::vector<std::pair<std::string, std::string>> likes;   // who, shout
  };

  load_options options_;
  command_log log_;
  command_client client_;
  std::vector<std::string> users_;
  knowledge known_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

} // namespace shoutflow::testing
