// cluster_bench: what running as a cluster costs and how it behaves under
// faults (docs/benchmarks.md, "The cluster (issue 12)"). Real shoutflowd
// processes on loopback, started by the cluster harness
// (tests/support/cluster_harness.hpp), each scenario on fresh databases.
//
//   cluster_bench [--scenarios=LIST] [--json=FILE] [--summary=FILE]
//                 [--log-dir=DIR] [--shoutflowd=PATH] [--seed=N] [--quick]
//                 [--users=N] [--clients=K] [--duration=S] [--warmup=S]
//                 [--lag-rate=R] [--probe-rate=P] [--kills=N]
//                 [--handoff-clients=K] [--idle-seconds=S] [--minutes=M]
//                 [--load-clients=K] [--node-args='--flag value ...']
//
// Scenarios (LIST is comma-separated; default: all, in this order):
//   write_scaling      closed-loop PostShout (K in flight, N warm users)
//                      against 1 node, then against 3 nodes (requests spread
//                      over the nodes' CommandServices); commands/s of each
//                      and the ratio 3/1 (target >= 0.8).
//   lag                open-loop PostShout at a fixed rate (default: half of
//                      write_scaling's 1-node peak) against 1 node, then 3;
//                      for P sampled commands a second, the time from the
//                      acknowledgement until a QueryService read with
//                      min_position = the command's global_position answers
//                      (GetShout and GetUser alternately, on a random node);
//                      p50/p99 and the ratio 3/1 (target <= 1.5).
//   failover           3 nodes under a light mixed load; N SIGKILLs of a
//                      random node, each timed from the SIGKILL until every
//                      lease is owned by a live node and unexpired; the node
//                      is restarted after the cluster has settled (target:
//                      every one <= 5 s).
//   handoff_pause      3 nodes under closed-loop PostShout (K client threads,
//                      retrying with the same command_id); a 4th node joins,
//                      later it is SIGTERMed; latency of every command,
//                      steady state against the two hand-off windows
//                      (target: p99 < 1 s), and the SIGTERM's exit.
//   idle_cost          3 idle nodes, settled, for S seconds: CPU of each
//                      shoutflowd and of PostgreSQL (this cluster's
//                      backends, the server's background processes), as %
//                      of one core (target: well under 1 % each).
//   no_false_failover  3 nodes under a moderate mixed load for M minutes,
//                      no fault injected: lease epochs granted and member
//                      state changes seen (must be 0).
//
// The nodes run with production settings (heartbeat 500ms, lease TTL 3s,
// shutdown grace 20s, 256 shards, 2 partitions, projection poll 200ms)
// except the password hash cost (--pwhash-opslimit 1 --pwhash-memlimit
// 8192, libsodium's minimum, as the harness sets it).
//
// Output: one JSON object per scenario, one per line (JSON Lines), on stdout
// or appended to --json FILE as each scenario ends; a readable summary on
// stderr (and appended to --summary FILE). Node logs are kept under
// --log-dir (else the harness removes them). Needs SHOUTFLOW_DB_URL (a
// server where the user may CREATE DATABASE) and the shoutflowd binary
// ($SHOUTFLOWD, --shoutflowd, or bin/shoutflowd next to this program).
// Exit status 1 when a scenario could not run (a target missed is not a
// failure of the program: the JSON says "met": false).

#include <arpa/inet.h>
#include <dirent.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pqxx/pqxx>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "services/bench/lib/in_flight.hpp"
#include "shoutflow/v1/commands.grpc.pb.h"
#include "shoutflow/v1/queries.grpc.pb.h"
#include "tests/bench/bench_support.hpp"
#include "tests/support/cluster_harness.hpp"
#include "tests/support/test_db.hpp"

namespace {

using namespace shoutflow;
namespace sft = shoutflow::testing;
using shoutflow::testing::cluster_harness;
using shoutflow::testing::cluster_options;
using shoutflow::testing::command_client;
using shoutflow::testing::command_outcome;
using shoutflow::testing::command_record;
using shoutflow::testing::load_driver;
using shoutflow::testing::load_options;
using shoutflow::testing::retry_policy;
using shoutflow::testing::test_database;
using steady = std::chrono::steady_clock;
using std::chrono::duration;
using std::chrono::duration_cast;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;

const std::vector<std::string> all_scenarios
  = {"write_scaling", "lag",       "failover",
     "handoff_pause", "idle_cost", "no_false_failover"};

struct options {
  std::vector<std::string> scenarios = all_scenarios;
  std::string json_file;
  std::string summary_file;
  std::string log_dir;
  std::string binary;
  uint64_t seed = 0;
  int users = 10000;
  int clients = 64;
  double duration_s = 20;
  double warmup_s = 3;
  double lag_rate = 0; // 0: half of the 1-node peak (500 without it)
  double probe_rate = 50;
  int kills = 10;
  int handoff_clients = 16;
  double idle_s = 60;
  double minutes = 10;
  int load_clients = 4;
  bool quick = false;
  /// Appended to every node's command line (experiments; recorded).
  std::vector<std::string> node_args;
};

constexpr bench::program cli{
  "cluster_bench",
  "usage: cluster_bench [--scenarios=LIST] [--json=FILE] [--summary=FILE] "
  "[--log-dir=DIR] [--shoutflowd=PATH] [--seed=N] [--quick] [--users=N] "
  "[--clients=K] [--duration=S] [--warmup=S] [--lag-rate=R] "
  "[--probe-rate=P] [--kills=N] [--handoff-clients=K] [--idle-seconds=S] "
  "[--minutes=M] [--load-clients=K] [--node-args='--flag value ...']\n"
  "  LIST: comma-separated of write_scaling, lag, failover, handoff_pause, "
  "idle_cost, no_false_failover (default: all)\n"
  "  --quick: smoke run (500 users, 3 s runs, 2 kills, 10 s idle, 1 "
  "minute)\n"};

std::string self_dir() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string{"."} : p.parent_path().string();
}

options parse(int argc, char** argv) {
  options o;
  std::optional<int> users, kills;
  std::optional<double> duration_s, warmup_s, idle_s, minutes;
  bench::flags flag{cli, argc, argv};
  while (flag.next()) {
    const auto& name = flag.name();
    if (name == "scenarios") {
      o.scenarios.clear();
      std::stringstream in{flag.text()};
      std::string s;
      while (std::getline(in, s, ',')) {
        if (std::find(all_scenarios.begin(), all_scenarios.end(), s)
            == all_scenarios.end())
          cli.usage_error("unknown scenario '" + s + "'");
        o.scenarios.push_back(s);
      }
      if (o.scenarios.empty())
        cli.usage_error("--scenarios names none");
    } else if (name == "json")
      o.json_file = flag.text();
    else if (name == "summary")
      o.summary_file = flag.text();
    else if (name == "log-dir")
      o.log_dir = flag.text();
    else if (name == "shoutflowd")
      o.binary = flag.text();
    else if (name == "seed")
      o.seed = flag.integer<uint64_t>(0, 9e15);
    else if (name == "quick")
      o.quick = true;
    else if (name == "users")
      users = flag.integer<int>(1, 1e7);
    else if (name == "clients")
      o.clients = flag.integer<int>(1, 10000);
    else if (name == "duration")
      duration_s = flag.number(0.5, 86400);
    else if (name == "warmup")
      warmup_s = flag.number(0, 3600);
    else if (name == "lag-rate")
      o.lag_rate = flag.number(1, 1e6);
    else if (name == "probe-rate")
      o.probe_rate = flag.number(0.1, 10000);
    else if (name == "kills")
      kills = flag.integer<int>(1, 10000);
    else if (name == "handoff-clients")
      o.handoff_clients = flag.integer<int>(1, 1000);
    else if (name == "idle-seconds")
      idle_s = flag.number(1, 86400);
    else if (name == "minutes")
      minutes = flag.number(0.05, 24 * 60);
    else if (name == "load-clients")
      o.load_clients = flag.integer<int>(1, 1000);
    else if (name == "node-args") {
      std::istringstream in{flag.text()};
      std::string a;
      while (in >> a)
        o.node_args.push_back(a);
    } else
      flag.unknown();
  }
  if (o.quick) {
    o.users = 500;
    o.duration_s = 3;
    o.warmup_s = 1;
    o.kills = 2;
    o.idle_s = 10;
    o.minutes = 1;
  }
  o.users = users.value_or(o.users);
  o.kills = kills.value_or(o.kills);
  o.duration_s = duration_s.value_or(o.duration_s);
  o.warmup_s = warmup_s.value_or(o.warmup_s);
  o.idle_s = idle_s.value_or(o.idle_s);
  o.minutes = minutes.value_or(o.minutes);
  if (o.binary.empty())
    o.binary = sft::shoutflowd_binary();
  if (o.binary.empty())
    o.binary = self_dir() + "/shoutflowd";
  if (::access(o.binary.c_str(), X_OK) != 0)
    cli.usage_error("shoutflowd binary '" + o.binary
                    + "' is not executable (set $SHOUTFLOWD or --shoutflowd)");
  if (o.seed == 0)
    o.seed = (static_cast<uint64_t>(std::random_device{}()) << 20)
             ^ std::random_device{}();
  return o;
}

// -- small helpers ------------------------------------------------------------

std::string format(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string format(const char* f, ...) {
  va_list ap;
  va_start(ap, f);
  va_list again;
  va_copy(again, ap);
  auto n = std::vsnprintf(nullptr, 0, f, ap);
  va_end(ap);
  std::string out(n > 0 ? static_cast<std::size_t>(n) : 0, '\0');
  if (n > 0)
    std::vsnprintf(out.data(), out.size() + 1, f, again);
  va_end(again);
  return out;
}

double seconds_between(steady::time_point a, steady::time_point b) {
  return duration<double>(b - a).count();
}

steady::duration secs(double s) {
  return duration_cast<steady::duration>(duration<double>(s));
}

void progress(const std::string& line) {
  std::cerr << "[cluster_bench] " << line << std::endl;
}

void check(const ::testing::AssertionResult& r, const std::string& what) {
  if (!r)
    throw std::runtime_error(what + ": " + r.message());
}

std::string read_file(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

// -- JSON (just enough to write it; literals from the bench library) ---------

std::string jstr(const std::string& s) {
  return bench::json_quote(s);
}

std::string jnum(double x) {
  return bench::json_number(x);
}

/// A JSON object whose members keep their insertion order.
class jobj {
public:
  jobj& raw(const std::string& key, const std::string& json) {
    members_.emplace_back(key, json);
    return *this;
  }
  jobj& num(const std::string& key, double x) {
    return raw(key, jnum(x));
  }
  jobj& str(const std::string& key, const std::string& s) {
    return raw(key, jstr(s));
  }
  jobj& flag(const std::string& key, bool b) {
    return raw(key, b ? "true" : "false");
  }
  jobj& obj(const std::string& key, const jobj& o) {
    return raw(key, o.text());
  }
  std::string text() const {
    std::string out = "{";
    for (std::size_t i = 0; i < members_.size(); ++i)
      out += (i > 0 ? "," : "") + jstr(members_[i].first) + ":"
             + members_[i].second;
    return out + "}";
  }

private:
  std::vector<std::pair<std::string, std::string>> members_;
};

std::string jarr(const std::vector<std::string>& items) {
  std::string out = "[";
  for (std::size_t i = 0; i < items.size(); ++i)
    out += (i > 0 ? "," : "") + items[i];
  return out + "]";
}

jobj percentiles_json(const bench::percentiles& p, std::size_t count) {
  jobj o;
  o.num("count", static_cast<double>(count))
    .num("p50_ms", p.p50)
    .num("p90_ms", p.p90)
    .num("p99_ms", p.p99)
    .num("p999_ms", p.p999)
    .num("max_ms", p.max);
  return o;
}

std::string percentiles_text(const bench::percentiles& p) {
  return format("p50 %.1f ms, p99 %.1f ms, max %.1f ms", p.p50, p.p99, p.max);
}

// -- the machine --------------------------------------------------------------

std::string loadavg() {
  auto avg = bench::load_average();
  return format("%.2f %.2f %.2f", avg[0], avg[1], avg[2]);
}

std::string cpu_model() {
  auto model = bench::read_machine().cpu_model;
  return model.empty() ? "unknown" : model;
}

/// Machine-wide CPU time from /proc/stat (ticks): busy and total.
struct machine_cpu {
  long long busy = 0, total = 0;
};

machine_cpu read_machine_cpu() {
  std::istringstream in{read_file("/proc/stat")};
  std::string cpu;
  in >> cpu;
  std::vector<long long> v;
  long long x = 0;
  for (int i = 0; i < 8 && (in >> x); ++i)
    v.push_back(x);
  machine_cpu m;
  for (auto t : v)
    m.total += t;
  m.busy = m.total - (v.size() > 4 ? v[3] + v[4] : 0);
  return m;
}

double busy_pct(const machine_cpu& a, const machine_cpu& b) {
  auto total = b.total - a.total;
  return total > 0 ? 100.0 * static_cast<double>(b.busy - a.busy)
                       / static_cast<double>(total)
                   : 0;
}

// -- processes (/proc) --------------------------------------------------------

const double clk_tck = static_cast<double>(::sysconf(_SC_CLK_TCK));

struct proc_stat {
  pid_t ppid = 0;
  long long ticks = 0; // utime + stime
};

std::optional<proc_stat> read_proc_stat(pid_t pid) {
  auto s = read_file("/proc/" + std::to_string(pid) + "/stat");
  auto r = s.rfind(')');
  if (r == std::string::npos || r + 2 >= s.size())
    return std::nullopt;
  std::istringstream in{s.substr(r + 2)};
  std::vector<std::string> f;
  std::string t;
  while (f.size() < 13 && (in >> t))
    f.push_back(t);
  if (f.size() < 13 || f[0] == "Z")
    return std::nullopt;
  proc_stat st;
  st.ppid = static_cast<pid_t>(std::stol(f[1]));
  st.ticks = std::stoll(f[11]) + std::stoll(f[12]);
  return st;
}

std::vector<std::string> proc_args(pid_t pid) {
  auto s = read_file("/proc/" + std::to_string(pid) + "/cmdline");
  std::vector<std::string> args;
  std::string cur;
  for (char c : s) {
    if (c == '\0') {
      args.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty())
    args.push_back(cur);
  return args;
}

std::vector<pid_t> all_pids() {
  std::vector<pid_t> out;
  if (auto* d = ::opendir("/proc")) {
    while (auto* e = ::readdir(d)) {
      char* end = nullptr;
      auto v = std::strtol(e->d_name, &end, 10);
      if (end != e->d_name && *end == '\0' && v > 0)
        out.push_back(static_cast<pid_t>(v));
    }
    ::closedir(d);
  }
  return out;
}

/// The pid of the shoutflowd process listening on `command_port` (the
/// harness keeps its pids to itself, so they are found by command line).
pid_t node_pid(const std::string& binary, int command_port) {
  auto port = std::to_string(command_port);
  for (auto pid : all_pids()) {
    auto args = proc_args(pid);
    if (args.empty() || args[0] != binary)
      continue;
    for (std::size_t i = 0; i + 1 < args.size(); ++i)
      if (args[i] == "--command-port" && args[i + 1] == port)
        return pid;
  }
  return 0;
}

/// The PostgreSQL server's processes, by kind: client backends of this
/// cluster's database, other client backends (other tenants), and the rest
/// (the postmaster, checkpointer, WAL writer, autovacuum, ...).
struct pg_processes {
  std::vector<pid_t> ours, other_clients, background;
};

/// The postmaster of the server behind `url`, from a backend's parent; 0
/// when the server's processes are not visible here.
pid_t postmaster_of(const std::string& url) {
  try {
    pqxx::connection conn{url};
    pqxx::nontransaction tx{conn};
    auto pid = tx.exec1("SELECT pg_backend_pid()")[0].as<int>();
    auto st = read_proc_stat(pid);
    return st ? st->ppid : 0;
  } catch (const std::exception&) {
    return 0;
  }
}

pg_processes list_pg(pid_t postmaster, const std::string& db) {
  pg_processes out;
  if (postmaster <= 0)
    return out;
  out.background.push_back(postmaster);
  for (auto pid : all_pids()) {
    auto st = read_proc_stat(pid);
    if (!st || st->ppid != postmaster)
      continue;
    auto args = proc_args(pid);
    std::string title = args.empty() ? "" : args[0];
    // A client backend: "postgres: <user> <database> <host(port)> <state>".
    const std::string prefix = "postgres: ";
    bool client = false;
    std::string database;
    if (title.rfind(prefix, 0) == 0) {
      std::istringstream in{title.substr(prefix.size())};
      std::string user, host;
      in >> user >> database >> host;
      client = host.find('(') != std::string::npos || host == "[local]";
    }
    if (!client)
      out.background.push_back(pid);
    else if (database == db)
      out.ours.push_back(pid);
    else
      out.other_clients.push_back(pid);
  }
  return out;
}

/// CPU ticks of groups of processes between a baseline and the last sample.
/// A process first seen after the baseline counts from zero (it started
/// inside the window); one that exited keeps its last sample.
class tick_book {
public:
  void see(const std::string& group, const std::vector<pid_t>& pids,
           bool baseline) {
    std::lock_guard<std::mutex> guard{mtx_};
    auto& g = groups_[group];
    for (auto pid : pids) {
      auto st = read_proc_stat(pid);
      if (!st)
        continue;
      auto it = g.find(pid);
      if (it == g.end())
        g[pid] = {baseline ? st->ticks : 0, st->ticks};
      else
        it->second.second = st->ticks;
    }
  }
  double cpu_seconds(const std::string& group) const {
    std::lock_guard<std::mutex> guard{mtx_};
    auto it = groups_.find(group);
    if (it == groups_.end())
      return 0;
    long long t = 0;
    for (auto& [pid, v] : it->second)
      t += v.second - v.first;
    return static_cast<double>(t) / clk_tck;
  }
  std::size_t processes(const std::string& group) const {
    std::lock_guard<std::mutex> guard{mtx_};
    auto it = groups_.find(group);
    return it == groups_.end() ? 0 : it->second.size();
  }

private:
  mutable std::mutex mtx_;
  std::map<std::string, std::map<pid_t, std::pair<long long, long long>>>
    groups_;
};

/// CPU ticks of every thread of the given processes, by thread id, with
/// the thread's name (/proc/PID/task/TID/stat).
struct thread_sample {
  std::string name;
  long long ticks = 0;
};

std::map<pid_t, thread_sample> read_threads(const std::vector<pid_t>& pids) {
  std::map<pid_t, thread_sample> out;
  for (auto pid : pids) {
    auto dir = "/proc/" + std::to_string(pid) + "/task";
    auto* d = ::opendir(dir.c_str());
    if (d == nullptr)
      continue;
    while (auto* e = ::readdir(d)) {
      char* end = nullptr;
      auto tid = std::strtol(e->d_name, &end, 10);
      if (end == e->d_name || *end != '\0' || tid <= 0)
        continue;
      auto s = read_file(dir + "/" + e->d_name + "/stat");
      auto l = s.find('(');
      auto r = s.rfind(')');
      if (l == std::string::npos || r == std::string::npos || r < l)
        continue;
      std::istringstream in{s.substr(r + 2)};
      std::vector<std::string> f;
      std::string t;
      while (f.size() < 13 && (in >> t))
        f.push_back(t);
      if (f.size() < 13)
        continue;
      out[static_cast<pid_t>(tid)] = {s.substr(l + 1, r - l - 1),
                                      std::stoll(f[11]) + std::stoll(f[12])};
    }
    ::closedir(d);
  }
  return out;
}

/// CPU seconds by thread name between two samples (a thread that started
/// in between counts from zero; one that ended is lost), largest first:
/// "name 1.23 s, ...".
std::vector<std::pair<std::string, double>>
threads_by_name(const std::map<pid_t, thread_sample>& before,
                const std::map<pid_t, thread_sample>& after) {
  std::map<std::string, long long> by_name;
  for (auto& [tid, t] : after) {
    auto it = before.find(tid);
    by_name[t.name] += t.ticks - (it == before.end() ? 0 : it->second.ticks);
  }
  std::vector<std::pair<std::string, double>> out;
  for (auto& [name, ticks] : by_name)
    out.emplace_back(name, static_cast<double>(ticks) / clk_tck);
  std::sort(out.begin(), out.end(),
            [](auto& a, auto& b) { return a.second > b.second; });
  return out;
}

/// The top `n` of threads_by_name as text, each as % of one core over
/// `seconds`.
std::string threads_text(const std::vector<std::pair<std::string, double>>& v,
                         double seconds, std::size_t n = 6) {
  std::string out;
  for (std::size_t i = 0; i < v.size() && i < n; ++i)
    out += format("%s%s %.2f%%", i ? ", " : "", v[i].first.c_str(),
                  100.0 * v[i].second / seconds);
  return out.empty() ? "none" : out;
}

/// Transactions committed or rolled back in the database of `url` so far
/// (pg_stat_database; flushed by backends at most once a second).
long long db_transactions(const std::string& url) {
  pqxx::connection conn{url};
  pqxx::nontransaction tx{conn};
  return tx
    .exec1("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE "
           "datname = current_database()")[0]
    .as<long long>();
}

/// Calls f every `period` on its own thread until destroyed.
class periodic {
public:
  periodic(milliseconds period, std::function<void()> f)
    : period_(period), f_(std::move(f)), thread_([this] { run(); }) {
  }
  ~periodic() {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  periodic(const periodic&) = delete;
  periodic& operator=(const periodic&) = delete;

private:
  void run() {
    std::unique_lock<std::mutex> lock{mtx_};
    while (!stop_) {
      lock.unlock();
      f_();
      lock.lock();
      cv_.wait_for(lock, period_, [this] { return stop_; });
    }
  }
  milliseconds period_;
  std::function<void()> f_;
  std::mutex mtx_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

// -- a cluster on a fresh database --------------------------------------------

struct cluster_env {
  std::unique_ptr<test_database> db;
  // Declared after db: destroyed (nodes killed) before the database is
  // dropped.
  std::unique_ptr<cluster_harness> h;
  pid_t postmaster = 0;

  std::vector<std::string> command_addresses() {
    std::vector<std::string> out;
    for (auto i : h->live_nodes())
      out.push_back(h->command_address(i));
    return out;
  }
  std::vector<std::string> query_addresses() {
    std::vector<std::string> out;
    for (auto i : h->live_nodes())
      out.push_back(h->query_address(i));
    return out;
  }
  std::vector<pid_t> node_pids() {
    std::vector<pid_t> out;
    for (auto i : h->live_nodes())
      if (auto pid = node_pid(h->options().binary, h->ports(i).command))
        out.push_back(pid);
    return out;
  }
  /// The database's clock, as text for a later comparison in SQL.
  std::string db_now() const {
    pqxx::connection conn{db->url()};
    pqxx::nontransaction tx{conn};
    return tx.exec1("SELECT clock_timestamp()::text")[0].as<std::string>();
  }
};

/// Production settings except the password hash cost: the harness passes
/// --projection-poll 20ms (a test setting) and switches metrics off; the
/// later flags put both back to shoutflowd's defaults (the last one wins).
cluster_options cluster_settings(const options& o, const std::string& db_url,
                                 const std::string& label) {
  cluster_options co;
  co.binary = o.binary;
  co.db_url = db_url;
  co.extra_flags = {"--projection-poll", "200ms", "--metrics-port", "0"};
  co.extra_flags.insert(co.extra_flags.end(), o.node_args.begin(),
                        o.node_args.end());
  if (!o.log_dir.empty()) {
    co.log_dir = o.log_dir + "/" + label;
    std::filesystem::create_directories(co.log_dir);
  }
  return co;
}

std::unique_ptr<cluster_env> bring_up(const options& o,
                                      const std::string& label, int nodes) {
  auto env = std::make_unique<cluster_env>();
  env->db = std::make_unique<test_database>();
  env->postmaster = postmaster_of(env->db->url());
  env->h = std::make_unique<cluster_harness>(
    cluster_settings(o, env->db->url(), label), nodes);
  progress(format("%s: starting %d node%s on database %s (logs %s)",
                  label.c_str(), nodes, nodes == 1 ? "" : "s",
                  env->db->name().c_str(), env->h->options().log_dir.c_str()));
  for (int i = 0; i < nodes; ++i)
    check(env->h->start(i), "start node " + std::to_string(i));
  for (int i = 0; i < nodes; ++i)
    check(env->h->wait_ready(i, seconds(60)),
          "node " + std::to_string(i) + " ready");
  check(env->h->wait_cluster_settled(seconds(60)), "cluster settled");
  return env;
}

// -- the asynchronous command client ------------------------------------------

bool retryable(grpc::StatusCode code) {
  return code == grpc::StatusCode::UNAVAILABLE
         || code == grpc::StatusCode::DEADLINE_EXCEEDED;
}

std::string user_id(int i) {
  return "cb-u" + std::to_string(i);
}

struct registration {
  int ok = 0;
  int failed = 0;
  int64_t max_position = 0;
  std::string last_user;
  double seconds = 0;
};

struct load_spec {
  /// 0: closed loop with `inflight` chains; else requests per second.
  double rate = 0;
  int inflight = 64;
  double warmup_s = 3;
  double duration_s = 20;
  int users = 1;
  std::string tag = "ps";
  int deadline_ms = 10000;
  /// Called on a gRPC thread for every acknowledged command, with whether
  /// it counts (inside the measurement window).
  std::function<void(const v1::CommandResult&, steady::time_point, bool)>
    on_ack;
  /// Called at the start (true) and end (false) of the measurement window.
  std::function<void(bool)> on_window;
};

struct load_result {
  std::size_t ok = 0, errors = 0;
  std::map<std::string, std::size_t> by_code;
  bench::percentiles latency;
  double rps = 0;
  double client_cpu_s = 0;
};

/// PostShout load over the CommandServices of several nodes, with the gRPC
/// callback API (like shoutflow-bench): closed loop (chain k always uses node
/// k mod n) or open loop (request i goes to node i mod n), latency from
/// the intended send time (no coordinated omission). Requests are not
/// retried: in a steady cluster nothing should fail, and errors are
/// counted.
class fleet {
public:
  explicit fleet(const std::vector<std::string>& addresses,
                 int channels_per_node = 2) {
    for (auto& a : addresses) {
      std::vector<std::unique_ptr<v1::CommandService::Stub>> per_node;
      for (int c = 0; c < channels_per_node; ++c) {
        grpc::ChannelArguments args;
        // Own TCP connection per channel.
        args.SetInt("shoutflow.bench.channel", c);
        args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
        auto ch = grpc::CreateCustomChannel(
          a, grpc::InsecureChannelCredentials(), args);
        if (!ch->WaitForConnected(std::chrono::system_clock::now()
                                  + seconds(10)))
          throw std::runtime_error("cannot connect to " + a);
        per_node.push_back(v1::CommandService::NewStub(ch));
      }
      stubs_.push_back(std::move(per_node));
    }
    run_id_ = std::to_string(std::random_device{}() % 100000000);
  }

  v1::CommandService::Stub& stub(uint64_t k) {
    auto n = k % stubs_.size();
    auto c = (k / stubs_.size()) % stubs_[n].size();
    return *stubs_[n][c];
  }

  /// Registers users 0..n-1 with `inflight` in flight; retries UNAVAILABLE
  /// and DEADLINE_EXCEEDED (same command id) up to 5 times.
  registration register_users(int n, int inflight) {
    registration out;
    std::mutex mtx;
    std::atomic<int> next{0};
    bench::in_flight flight;
    auto started = steady::now();
    struct call {
      grpc::ClientContext ctx;
      v1::RegisterUserRequest req;
      v1::CommandResult resp;
      int index = 0;
      int attempt = 0;
    };
    std::function<void()> issue;
    std::function<void(std::unique_ptr<call>)> send;
    send = [&](std::unique_ptr<call> c) {
      c->ctx.set_deadline(std::chrono::system_clock::now() + seconds(10));
      auto* raw = c.release();
      stub(static_cast<uint64_t>(raw->index))
        .async()
        ->RegisterUser(
          &raw->ctx, &raw->req, &raw->resp, [&, raw](grpc::Status s) {
            std::unique_ptr<call> own{raw};
            if (retryable(s.error_code()) && own->attempt < 4) {
              auto again = std::make_unique<call>();
              again->req = own->req;
              again->index = own->index;
              again->attempt = own->attempt + 1;
              send(std::move(again));
              return;
            }
            {
              std::lock_guard<std::mutex> guard{mtx};
              if (s.ok()) {
                ++out.ok;
                if (own->resp.global_position() > out.max_position) {
                  out.max_position = own->resp.global_position();
                  out.last_user = own->req.user_id();
                }
              } else {
                if (out.failed++ < 5)
                  progress("RegisterUser " + own->req.user_id() + ": "
                           + sft::status_code_name(s.error_code()) + " "
                           + s.error_message());
              }
            }
            issue();
            // The context goes before the count (after it the
            // channels may go: a double free at exit).
            own.reset();
            flight.down();
          });
    };
    issue = [&] {
      int i = next++;
      if (i >= n)
        return;
      flight.up();
      auto c = std::make_unique<call>();
      c->index = i;
      c->req.set_command_id("reg-" + user_id(i));
      c->req.set_user_id(user_id(i));
      c->req.set_handle("c" + std::to_string(i));
      c->req.set_display_name("Cluster Bench " + std::to_string(i));
      c->req.set_email(user_id(i) + "@bench.example.com");
      c->req.set_password("bench password " + std::to_string(i));
      send(std::move(c));
    };
    for (int k = 0; k < inflight; ++k)
      issue();
    while (!flight.wait_zero(seconds(1)))
      ;
    out.seconds = seconds_between(started, steady::now());
    return out;
  }

  load_result run(const load_spec& spec) {
    std::mutex mtx;
    std::vector<int64_t> latencies;
    std::map<std::string, std::size_t> errors;
    bench::in_flight flight;
    std::atomic<bool> stopping{false};
    std::atomic<uint64_t> counter{0};
    auto cpu_start = bench::cpu_seconds();
    auto start = steady::now();
    auto window_begin = start + secs(spec.warmup_s);
    auto window_end = window_begin + secs(spec.duration_s);
    std::thread window_hook;
    if (spec.on_window)
      window_hook = std::thread([&] {
        std::this_thread::sleep_until(window_begin);
        spec.on_window(true);
        std::this_thread::sleep_until(window_end);
        spec.on_window(false);
      });

    struct call {
      grpc::ClientContext ctx;
      v1::PostShoutRequest req;
      v1::CommandResult resp;
      steady::time_point intended;
      uint64_t chain = 0;
    };
    std::function<void(steady::time_point, uint64_t, bool)> issue;
    issue = [&](steady::time_point intended, uint64_t chain, bool closed) {
      thread_local std::mt19937_64 rng{std::random_device{}()};
      auto n = counter++;
      auto c = std::make_unique<call>();
      c->intended = intended;
      c->chain = chain;
      std::uniform_int_distribution<int> pick{0, spec.users - 1};
      auto id = spec.tag + "-" + run_id_ + "-" + std::to_string(n);
      c->req.set_command_id(id);
      c->req.set_user_id(user_id(pick(rng)));
      c->req.set_text("shout " + id + " from the cluster benchmark");
      c->ctx.set_deadline(std::chrono::system_clock::now()
                          + milliseconds(spec.deadline_ms));
      flight.up();
      auto* raw = c.release();
      stub(closed ? chain : n)
        .async()
        ->PostShout(
          &raw->ctx, &raw->req, &raw->resp, [&, raw, closed](grpc::Status s) {
            std::unique_ptr<call> own{raw};
            auto done = steady::now();
            bool counted = closed ? done >= window_begin && done < window_end
                                  : own->intended >= window_begin
                                      && own->intended < window_end;
            if (counted) {
              std::lock_guard<std::mutex> guard{mtx};
              if (s.ok())
                latencies.push_back(
                  duration_cast<nanoseconds>(done - own->intended).count());
              else
                ++errors[sft::status_code_name(s.error_code())];
            }
            if (s.ok() && spec.on_ack)
              spec.on_ack(own->resp, done, counted);
            if (closed && !stopping.load() && done < window_end)
              issue(steady::now(), own->chain, true);
            own.reset(); // before the count, as above
            flight.down();
          });
    };
    if (spec.rate <= 0) {
      for (int k = 0; k < spec.inflight; ++k)
        issue(steady::now(), static_cast<uint64_t>(k), true);
      std::this_thread::sleep_until(window_end);
      stopping = true;
    } else {
      auto interval = duration<double>(1.0 / spec.rate);
      for (uint64_t i = 0;; ++i) {
        auto intended = start + duration_cast<nanoseconds>(interval * i);
        if (intended >= window_end)
          break;
        if (intended > steady::now())
          std::this_thread::sleep_until(intended);
        while (!flight.wait_below(20000, milliseconds(100)))
          ;
        issue(intended, 0, false);
      }
      stopping = true;
    }
    if (!flight.wait_zero(milliseconds(spec.deadline_ms + 30000)))
      progress(format("%d requests still in flight",
                      static_cast<int>(flight.count())));
    if (window_hook.joinable())
      window_hook.join();
    load_result r;
    r.client_cpu_s = bench::cpu_seconds() - cpu_start;
    std::lock_guard<std::mutex> guard{mtx};
    r.ok = latencies.size();
    for (auto& [code, n] : errors) {
      r.errors += n;
      r.by_code[code] = n;
    }
    r.latency = bench::summarize(latencies);
    r.rps = static_cast<double>(r.ok) / spec.duration_s;
    return r;
  }

private:
  std::vector<std::vector<std::unique_ptr<v1::CommandService::Stub>>> stubs_;
  std::string run_id_;
};

std::string codes_text(const std::map<std::string, std::size_t>& m) {
  std::string out;
  for (auto& [code, n] : m)
    out += (out.empty() ? "" : ", ") + code + " " + std::to_string(n);
  return out.empty() ? "none" : out;
}

jobj codes_json(const std::map<std::string, std::size_t>& m) {
  jobj o;
  for (auto& [code, n] : m)
    o.num(code, static_cast<double>(n));
  return o;
}

/// Waits until the read models on every query node have reached `position`
/// (a GetUser of `user` with min_position); the seconds it took.
double wait_caught_up(const std::vector<std::string>& query_addresses,
                      const std::string& user, int64_t position,
                      milliseconds within) {
  auto started = steady::now();
  auto until = started + within;
  for (auto& a : query_addresses) {
    auto stub = v1::QueryService::NewStub(sft::channel_to(a));
    for (;;) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + seconds(10));
      v1::GetUserRequest req;
      req.set_user_id(user);
      req.set_min_position(position);
      v1::UserView view;
      auto s = stub->GetUser(&ctx, req, &view);
      if (s.ok())
        break;
      if (steady::now() > until)
        throw std::runtime_error(
          "the read models on " + a + " did not reach position "
          + std::to_string(position) + ": " + s.error_message());
    }
  }
  return seconds_between(started, steady::now());
}

// -- the lag probe ------------------------------------------------------------

/// For a sampled acknowledged PostShout, the time from its acknowledgement
/// until a read with min_position = its global_position answers on a
/// random query node: GetShout (the shout document) and GetUser (the
/// author's document, whose shout count it changes) alternately. A read
/// that ends with DEADLINE_EXCEEDED (the node waits at most
/// --query-max-wait, 5 s) or UNAVAILABLE is sent again, still timed from
/// the acknowledgement, until 30 s have passed (then it counts as missing).
class lag_prober {
public:
  explicit lag_prober(const std::vector<std::string>& query_addresses,
                      uint64_t seed)
    : rng_(seed) {
    for (auto& a : query_addresses) {
      grpc::ChannelArguments args;
      args.SetInt("shoutflow.bench.probe", 1);
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      stubs_.push_back(v1::QueryService::NewStub(grpc::CreateCustomChannel(
        a, grpc::InsecureChannelCredentials(), args)));
    }
  }
  ~lag_prober() {
    wait_idle(seconds(60));
  }
  lag_prober(const lag_prober&) = delete;
  lag_prober& operator=(const lag_prober&) = delete;

  void probe(const v1::CommandResult& r, steady::time_point ack) {
    auto p = std::make_shared<probe_state>();
    p->shout = (samples_++ % 2) == 0;
    p->id = p->shout ? r.shout_id() : r.user_id();
    p->position = r.global_position();
    p->ack = ack;
    flight_.up();
    send(p);
  }

  bool wait_idle(milliseconds within) {
    return flight_.wait_zero(within);
  }

  struct result {
    std::vector<int64_t> shout_ns, user_ns;
    std::map<std::string, std::size_t> missing;
    std::size_t resent = 0;
  };
  result take() {
    std::lock_guard<std::mutex> guard{mtx_};
    return result_;
  }

private:
  struct probe_state {
    bool shout = true;
    std::string id;
    int64_t position = 0;
    steady::time_point ack;
  };
  struct call {
    grpc::ClientContext ctx;
    v1::GetShoutRequest shout_req;
    v1::ShoutView shout_resp;
    v1::GetUserRequest user_req;
    v1::UserView user_resp;
    std::shared_ptr<probe_state> p;
  };

  void send(const std::shared_ptr<probe_state>& p) {
    auto* c = new call;
    c->p = p;
    c->ctx.set_deadline(std::chrono::system_clock::now() + seconds(10));
    std::size_t node = 0;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      node = static_cast<std::size_t>(rng_() % stubs_.size());
    }
    auto done = [this, c](grpc::Status s) {
      auto p = c->p;
      delete c; // before finish() counts it done (in_flight.hpp)
      finish(p, s);
    };
    auto& stub = *stubs_[node];
    if (p->shout) {
      c->shout_req.set_shout_id(p->id);
      c->shout_req.set_min_position(p->position);
      stub.async()->GetShout(&c->ctx, &c->shout_req, &c->shout_resp, done);
    } else {
      c->user_req.set_user_id(p->id);
      c->user_req.set_min_position(p->position);
      stub.async()->GetUser(&c->ctx, &c->user_req, &c->user_resp, done);
    }
  }

  void finish(const std::shared_ptr<probe_state>& p, const grpc::Status& s) {
    auto now = steady::now();
    if (s.ok()) {
      std::lock_guard<std::mutex> guard{mtx_};
      (p->shout ? result_.shout_ns : result_.user_ns)
        .push_back(duration_cast<nanoseconds>(now - p->ack).count());
    } else if (retryable(s.error_code()) && now - p->ack < seconds(30)) {
      {
        std::lock_guard<std::mutex> guard{mtx_};
        ++result_.resent;
      }
      send(p);
      return;
    } else {
      std::lock_guard<std::mutex> guard{mtx_};
      ++result_.missing[sft::status_code_name(s.error_code())];
    }
    flight_.down();
  }

  std::vector<std::unique_ptr<v1::QueryService::Stub>> stubs_;
  std::mutex mtx_;
  std::mt19937_64 rng_;
  result result_;
  std::atomic<uint64_t> samples_{0};
  bench::in_flight flight_;
};

// -- scenario bookkeeping -----------------------------------------------------

/// One scenario's report: parameters, results, the target's verdict, the
/// readable summary.
struct report {
  std::string name;
  std::string load_start = loadavg();
  std::string started_utc;
  steady::time_point started = steady::now();
  jobj params;
  jobj results;
  std::string target;
  std::optional<bool> met;
  std::vector<std::string> lines; // summary lines
  std::string error;

  explicit report(std::string n) : name(std::move(n)) {
    auto t = std::time(nullptr);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
    started_utc = buf;
  }
  void line(const std::string& s) {
    lines.push_back(s);
  }
};

class output {
public:
  explicit output(const options& o) : opt_(o) {
  }

  void emit(report& r) {
    auto load_end = loadavg();
    jobj machine;
    machine.num("nproc", static_cast<double>(::sysconf(_SC_NPROCESSORS_ONLN)))
      .str("model_name", cpu_model())
      .str("loadavg_start", r.load_start)
      .str("loadavg_end", load_end);
    jobj o;
    o.str("scenario", r.name)
      .str("started_utc", r.started_utc)
      .num("seconds", std::round(seconds_between(r.started, steady::now())))
      .obj("machine", machine)
      .obj("parameters", r.params)
      .obj("results", r.results)
      .str("target", r.target)
      .raw("met", r.met ? (*r.met ? "true" : "false") : "null");
    if (!r.error.empty())
      o.str("error", r.error);
    auto line = o.text() + "\n";
    if (opt_.json_file.empty()) {
      std::fputs(line.c_str(), stdout);
      std::fflush(stdout);
    } else {
      std::ofstream out{opt_.json_file, std::ios::app};
      out << line;
    }
    std::ostringstream text;
    text << "\n== " << r.name << " (" << r.started_utc << ", "
         << std::lround(seconds_between(r.started, steady::now())) << " s) ==\n"
         << "machine: nproc " << ::sysconf(_SC_NPROCESSORS_ONLN) << ", '"
         << cpu_model() << "', load average " << r.load_start << " -> "
         << load_end << "\n";
    for (auto& l : r.lines)
      text << l << "\n";
    if (!r.error.empty())
      text << "ERROR: " << r.error << "\n";
    if (!r.target.empty())
      text << "target: " << r.target << ": "
           << (r.met ? (*r.met ? "met" : "MISSED") : "not measured") << "\n";
    std::cerr << text.str() << std::flush;
    if (!opt_.summary_file.empty()) {
      std::ofstream out{opt_.summary_file, std::ios::app};
      out << text.str();
    }
  }

private:
  const options& opt_;
};

/// Facts shared between scenarios.
struct shared_facts {
  double peak_1node = 0;
  double peak_3node = 0;
};

std::string settings_note(const options& o) {
  std::string note
    = "production defaults (heartbeat 500ms, lease TTL 3s, shutdown grace "
      "20s, 256 shards, 2 partitions per projection, projection poll 200ms) "
      "except the password hash cost: --pwhash-opslimit 1 --pwhash-memlimit "
      "8192";
  if (!o.node_args.empty()) {
    note += "; and, for this run, every node gets";
    for (auto& a : o.node_args)
      note += " " + a;
  }
  return note;
}

// -- Prometheus scrapes -------------------------------------------------------

/// The metrics port a node printed in its log ("metrics on
/// http://HOST:PORT/metrics"); 0 when it has none.
int metrics_port(const std::string& log) {
  const std::string marker = "metrics on http://";
  auto at = log.rfind(marker);
  if (at == std::string::npos)
    return 0;
  auto colon = log.find(':', at + marker.size());
  if (colon == std::string::npos)
    return 0;
  return std::atoi(log.c_str() + colon + 1);
}

/// The value of every unlabelled sample in a plain HTTP GET of
/// 127.0.0.1:port/metrics; empty when the scrape fails.
std::map<std::string, double> scrape(int port) {
  std::map<std::string, double> out;
  if (port <= 0)
    return out;
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return out;
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string text;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    std::string req = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL)
        == static_cast<ssize_t>(req.size())) {
      char buf[65536];
      ssize_t n = 0;
      while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0)
        text.append(buf, static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  std::istringstream in{text};
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#' || line.find('{') != std::string::npos)
      continue;
    std::istringstream fields{line};
    std::string name;
    double v = 0;
    if (fields >> name >> v)
      out[name] = v;
  }
  return out;
}

/// Sum of a metric over the scrapes of several nodes.
double metric_sum(const std::vector<std::map<std::string, double>>& scrapes,
                  const std::string& name) {
  double t = 0;
  for (auto& m : scrapes) {
    auto it = m.find(name);
    if (it != m.end())
      t += it->second;
  }
  return t;
}

// -- 1. write_scaling ---------------------------------------------------------

struct write_run {
  int nodes = 0;
  registration reg;
  load_result load;
  double node_cpu_s = 0, pg_cpu_s = 0, busy = 0;
  std::size_t node_processes = 0;
  long long transactions = 0;
  std::vector<std::pair<std::string, double>> threads;
  /// Journal batches and writes in the window (all nodes, from metrics).
  double batches = 0, batch_writes = 0, commit_s = 0;
};

write_run measure_writes(const options& o, int nodes) {
  write_run w;
  w.nodes = nodes;
  auto env = bring_up(o, "write_scaling-" + std::to_string(nodes) + "n", nodes);
  fleet f{env->command_addresses()};
  progress(format("registering %d users", o.users));
  w.reg = f.register_users(o.users, o.clients);
  if (w.reg.failed > 0)
    throw std::runtime_error(std::to_string(w.reg.failed)
                             + " registrations failed");
  auto caught = wait_caught_up(env->query_addresses(), w.reg.last_user,
                               w.reg.max_position, seconds(120));
  progress(format("registered in %.1f s; read models caught up %.1f s later; "
                  "closed loop, %d in flight, %.0f s + %.0f s warm-up "
                  "(load %s)",
                  w.reg.seconds, caught, o.clients, o.duration_s, o.warmup_s,
                  loadavg().c_str()));
  tick_book ticks;
  machine_cpu m0, m1;
  std::map<pid_t, thread_sample> th0, th1;
  long long tx0 = 0, tx1 = 0;
  auto pids = env->node_pids();
  std::vector<int> ports;
  for (auto i : env->h->live_nodes())
    ports.push_back(metrics_port(env->h->log(i)));
  std::vector<std::map<std::string, double>> sc0, sc1;
  auto scrape_all = [&] {
    std::vector<std::map<std::string, double>> all;
    for (auto p : ports)
      all.push_back(scrape(p));
    return all;
  };
  load_spec spec;
  spec.inflight = o.clients;
  spec.warmup_s = o.warmup_s;
  spec.duration_s = o.duration_s;
  spec.users = o.users;
  spec.on_window = [&](bool begin) {
    ticks.see("nodes", pids, begin);
    ticks.see("pg", list_pg(env->postmaster, env->db->name()).ours, begin);
    (begin ? m0 : m1) = read_machine_cpu();
    (begin ? th0 : th1) = read_threads(pids);
    (begin ? tx0 : tx1) = db_transactions(env->db->url());
    (begin ? sc0 : sc1) = scrape_all();
  };
  w.load = f.run(spec);
  w.threads = threads_by_name(th0, th1);
  w.transactions = tx1 - tx0;
  auto delta = [&](const std::string& name) {
    return metric_sum(sc1, name) - metric_sum(sc0, name);
  };
  w.batches = delta("shoutflow_journal_batches_total");
  w.batch_writes = delta("shoutflow_journal_writes_total");
  w.commit_s = delta("shoutflow_journal_commit_seconds_sum");
  w.node_cpu_s = ticks.cpu_seconds("nodes");
  w.node_processes = ticks.processes("nodes");
  w.pg_cpu_s = ticks.cpu_seconds("pg");
  w.busy = busy_pct(m0, m1);
  return w;
}

double spec_seconds(const write_run& w) {
  return w.load.rps > 0 ? static_cast<double>(w.load.ok) / w.load.rps : 1;
}

jobj write_run_json(const write_run& w) {
  auto per_cmd = [&](double s) {
    return w.load.ok > 0 ? 1e6 * s / static_cast<double>(w.load.ok) : 0;
  };
  jobj cpu;
  cpu.num("shoutflowd_us", std::round(per_cmd(w.node_cpu_s)))
    .num("postgres_backends_us", std::round(per_cmd(w.pg_cpu_s)))
    .num("client_us", std::round(per_cmd(w.load.client_cpu_s)));
  jobj o;
  o.num("nodes", w.nodes)
    .num("commands_per_s", std::round(w.load.rps * 10) / 10)
    .num("ok", static_cast<double>(w.load.ok))
    .num("errors", static_cast<double>(w.load.errors))
    .obj("errors_by_code", codes_json(w.load.by_code))
    .obj("latency", percentiles_json(w.load.latency, w.load.ok))
    .obj("cpu_per_command", cpu)
    .num("machine_busy_pct", std::round(w.busy))
    .num("database_transactions_per_command",
         w.load.ok > 0 ? std::round(100.0 * static_cast<double>(w.transactions)
                                    / static_cast<double>(w.load.ok))
                           / 100
                       : 0)
    .num("journal_batches_per_s", std::round(w.batches / spec_seconds(w)))
    .num("journal_writes_per_batch",
         w.batches > 0 ? std::round(10 * w.batch_writes / w.batches) / 10 : 0)
    .num("journal_begin_to_commit_ms",
         w.batches > 0 ? std::round(100 * 1000 * w.commit_s / w.batches) / 100
                       : 0)
    .str("shoutflowd_threads_pct_of_core",
         threads_text(w.threads, spec_seconds(w), 8))
    .num("registration_per_s",
         std::round(w.reg.ok / std::max(w.reg.seconds, 1e-9)));
  return o;
}

void write_run_lines(report& r, const write_run& w) {
  auto per_cmd = [&](double s) {
    return w.load.ok > 0 ? 1e6 * s / static_cast<double>(w.load.ok) : 0;
  };
  r.line(format("%d node%s  %.1f commands/s (%zu ok, errors %s); latency %s",
                w.nodes, w.nodes == 1 ? " " : "s", w.load.rps, w.load.ok,
                codes_text(w.load.by_code).c_str(),
                percentiles_text(w.load.latency).c_str()));
  r.line(format("         CPU per command: shoutflowd %.0f us (%zu "
                "processes), its PostgreSQL backends %.0f us, client %.0f "
                "us; machine busy %.0f%%; registration %.0f/s",
                per_cmd(w.node_cpu_s), w.node_processes, per_cmd(w.pg_cpu_s),
                per_cmd(w.load.client_cpu_s), w.busy,
                w.reg.ok / std::max(w.reg.seconds, 1e-9)));
  r.line(format("         journal (all nodes): %.0f batches/s, %.1f writes per "
                "batch, %.2f ms BEGIN..COMMIT",
                w.batches / spec_seconds(w),
                w.batches > 0 ? w.batch_writes / w.batches : 0.0,
                w.batches > 0 ? 1000 * w.commit_s / w.batches : 0.0));
  r.line(format("         database transactions per command %.2f; "
                "shoutflowd threads (all nodes, %% of one core): ",
                w.load.ok > 0 ? static_cast<double>(w.transactions)
                                  / static_cast<double>(w.load.ok)
                              : 0.0)
         + threads_text(w.threads, spec_seconds(w)));
}

void write_scaling(const options& o, report& r, shared_facts& facts) {
  r.params.num("clients_in_flight", o.clients)
    .num("users", o.users)
    .num("warmup_s", o.warmup_s)
    .num("duration_s", o.duration_s)
    .str("command", "PostShout, uniformly random warm users")
    .str("settings", settings_note(o));
  r.line(format("PostShout closed loop, %d in flight (gRPC callback API, 2 "
                "connections per node; with 3 nodes, in-flight chain k "
                "always uses node k mod 3), %d warm users registered first, "
                "%.0f s measured after %.0f s warm-up, fresh database per "
                "run",
                o.clients, o.users, o.duration_s, o.warmup_s));
  r.line(std::string{"nodes: "} + settings_note(o));
  auto one = measure_writes(o, 1);
  facts.peak_1node = one.load.rps;
  auto three = measure_writes(o, 3);
  facts.peak_3node = three.load.rps;
  double ratio = one.load.rps > 0 ? three.load.rps / one.load.rps : 0;
  write_run_lines(r, one);
  write_run_lines(r, three);
  r.line(format("RATIO 3 nodes / 1 node = %.2f", ratio));
  r.results.obj("one_node", write_run_json(one))
    .obj("three_nodes", write_run_json(three))
    .num("ratio_3_to_1", std::round(ratio * 1000) / 1000);
  r.target = "3-node / 1-node throughput >= 0.8";
  r.met = ratio >= 0.8;
}

// -- 2. lag -------------------------------------------------------------------

struct lag_run {
  int nodes = 0;
  load_result load;
  lag_prober::result probes;
  bench::percentiles all, shout, user;
  std::size_t samples = 0;
  double caught_up_s = 0;
  double rate = 0;
  double busy = 0;
};

lag_run measure_lag(const options& o, int nodes, double rate) {
  lag_run l;
  l.nodes = nodes;
  l.rate = rate;
  auto env = bring_up(o, format("lag-%dn-%.0f", nodes, rate), nodes);
  fleet f{env->command_addresses()};
  progress(format("registering %d users", o.users));
  auto reg = f.register_users(o.users, o.clients);
  if (reg.failed > 0)
    throw std::runtime_error(std::to_string(reg.failed)
                             + " registrations failed");
  l.caught_up_s = wait_caught_up(env->query_addresses(), reg.last_user,
                                 reg.max_position, seconds(120));
  progress(format("open loop at %.0f/s, %.0f s + %.0f s warm-up, probing "
                  "%.0f commands/s (load %s)",
                  rate, o.duration_s, o.warmup_s, o.probe_rate,
                  loadavg().c_str()));
  lag_prober prober{env->query_addresses(), o.seed + nodes};
  auto every = std::max<uint64_t>(
    1, static_cast<uint64_t>(std::llround(rate / o.probe_rate)));
  std::atomic<uint64_t> acks{0};
  load_spec spec;
  spec.rate = rate;
  spec.warmup_s = o.warmup_s;
  spec.duration_s = o.duration_s;
  spec.users = o.users;
  spec.tag = "lag";
  machine_cpu m0, m1;
  spec.on_window = [&](bool begin) { (begin ? m0 : m1) = read_machine_cpu(); };
  spec.on_ack = [&](const v1::CommandResult& res, steady::time_point at,
                    bool counted) {
    if (counted && acks++ % every == 0)
      prober.probe(res, at);
  };
  l.load = f.run(spec);
  if (!prober.wait_idle(seconds(60)))
    progress("lag probes still waiting after 60 s");
  l.probes = prober.take();
  l.busy = busy_pct(m0, m1);
  auto both = l.probes.shout_ns;
  both.insert(both.end(), l.probes.user_ns.begin(), l.probes.user_ns.end());
  l.samples = both.size();
  l.all = bench::summarize(both);
  l.shout = bench::summarize(l.probes.shout_ns);
  l.user = bench::summarize(l.probes.user_ns);
  return l;
}

jobj lag_run_json(const lag_run& l) {
  std::size_t missing = 0;
  for (auto& [c, n] : l.probes.missing)
    missing += n;
  jobj o;
  o.num("nodes", l.nodes)
    .num("rate_per_s", l.rate)
    .num("machine_busy_pct", std::round(l.busy))
    .obj("ack_to_visible", percentiles_json(l.all, l.samples))
    .obj("shout_document", percentiles_json(l.shout, l.probes.shout_ns.size()))
    .obj("user_document", percentiles_json(l.user, l.probes.user_ns.size()))
    .num("missing", static_cast<double>(missing))
    .obj("missing_by_code", codes_json(l.probes.missing))
    .num("reads_resent", static_cast<double>(l.probes.resent))
    .num("achieved_commands_per_s", std::round(l.load.rps * 10) / 10)
    .num("write_errors", static_cast<double>(l.load.errors))
    .obj("write_latency", percentiles_json(l.load.latency, l.load.ok));
  return o;
}

void lag_run_lines(report& r, const lag_run& l) {
  std::size_t missing = 0;
  for (auto& [c, n] : l.probes.missing)
    missing += n;
  r.line(format("%d node%s  at %.0f/s: ack -> visible %s (%zu samples; "
                "shout document "
                "p50 %.1f / p99 %.1f ms, user document p50 %.1f / p99 %.1f "
                "ms); missing %zu, reads resent %zu",
                l.nodes, l.nodes == 1 ? " " : "s", l.rate,
                percentiles_text(l.all).c_str(), l.samples, l.shout.p50,
                l.shout.p99, l.user.p50, l.user.p99, missing, l.probes.resent));
  r.line(format("         writes: achieved %.1f/s, errors %s, latency %s; "
                "machine busy %.0f%%",
                l.load.rps, codes_text(l.load.by_code).c_str(),
                percentiles_text(l.load.latency).c_str(), l.busy));
}

void lag(const options& o, report& r, const shared_facts& facts) {
  double rate = o.lag_rate;
  std::string why = "--lag-rate";
  if (rate <= 0 && facts.peak_1node > 0) {
    rate = std::round(facts.peak_1node / 2);
    why = format("half of write_scaling's 1-node peak of %.0f/s",
                 facts.peak_1node);
  } else if (rate <= 0) {
    rate = 500;
    why = "default (write_scaling not run)";
  }
  r.params.num("rate_per_s", rate)
    .str("rate_from", why)
    .num("probes_per_s", o.probe_rate)
    .num("users", o.users)
    .num("warmup_s", o.warmup_s)
    .num("duration_s", o.duration_s)
    .str("settings", settings_note(o));
  r.line(format("open-loop PostShout at %.0f/s (%s) over %d warm users, "
                "%.0f s after %.0f s warm-up; for ~%.0f acknowledged "
                "commands a second, the time from the acknowledgement until "
                "GetShout / GetUser (alternately; random node) with "
                "min_position = its global_position answers",
                rate, why.c_str(), o.users, o.duration_s, o.warmup_s,
                o.probe_rate));
  r.line(std::string{"nodes: "} + settings_note(o));
  auto one = measure_lag(o, 1, rate);
  auto three = measure_lag(o, 3, rate);
  lag_run_lines(r, one);
  lag_run_lines(r, three);
  double p99_ratio = one.all.p99 > 0 ? three.all.p99 / one.all.p99 : 0;
  double p50_ratio = one.all.p50 > 0 ? three.all.p50 / one.all.p50 : 0;
  r.line(
    format("RATIO 3 nodes / 1 node: p50 %.2f, p99 %.2f", p50_ratio, p99_ratio));
  r.results.obj("one_node", lag_run_json(one))
    .obj("three_nodes", lag_run_json(three))
    .num("ratio_p50_3_to_1", std::round(p50_ratio * 1000) / 1000)
    .num("ratio_p99_3_to_1", std::round(p99_ratio * 1000) / 1000);
  // On a small machine the 3-node cluster's own peak can be close to the
  // rate above; the same probe at half of its own peak separates running
  // near saturation from crossing nodes.
  if (o.lag_rate <= 0 && facts.peak_3node > 0
      && std::round(facts.peak_3node / 2) < rate) {
    auto own = measure_lag(o, 3, std::round(facts.peak_3node / 2));
    r.line(
      format("and at half of the 3-node peak of %.0f/s:", facts.peak_3node));
    lag_run_lines(r, own);
    r.line(format("         (against 1 node at %.0f/s: p50 %.2f x, p99 "
                  "%.2f x)",
                  rate, one.all.p50 > 0 ? own.all.p50 / one.all.p50 : 0.0,
                  one.all.p99 > 0 ? own.all.p99 / one.all.p99 : 0.0));
    r.results.obj("three_nodes_at_half_own_peak", lag_run_json(own));
  }
  r.target = "3-node lag p99 <= 1.5 x 1-node";
  r.met = p99_ratio > 0 && p99_ratio <= 1.5;
}

// -- 3. failover --------------------------------------------------------------

std::unique_ptr<load_driver> mixed_load(cluster_env& env,
                                        const std::string& tag, int clients,
                                        uint64_t seed) {
  load_options lo;
  lo.tag = tag;
  lo.clients = clients;
  lo.users = 64;
  lo.seed = seed;
  auto* h = env.h.get();
  auto load
    = std::make_unique<load_driver>([h] { return h->command_targets(); }, lo);
  check(load->register_users(), "register the load's users");
  load->start();
  return load;
}

std::string load_text(const load_driver& l, double secs_run) {
  return format("%.0f commands/s acknowledged; ",
                static_cast<double>(l.log().acknowledged())
                  / std::max(secs_run, 1e-9))
         + l.log().summary();
}

void failover(const options& o, report& r) {
  std::mt19937_64 rng{o.seed ^ 0xfa11};
  r.params.num("nodes", 3)
    .num("kills", o.kills)
    .num("load_clients", o.load_clients)
    .str("load", "the harness's mixed load (PostShout, Follow, Like, "
                 "UpdateProfile, DeleteShout, Login, ...), 64 users, 5 ms "
                 "think time per client, retried with the same command_id")
    .str("settings", settings_note(o))
    .num("seed", static_cast<double>(o.seed));
  r.line(format("3 nodes, a light mixed load (%d clients with 5 ms think "
                "time, 64 users); %d times: SIGKILL a random node, time "
                "until every lease is owned by a live node and unexpired "
                "(polled every ~20 ms), then restart it and wait until the "
                "cluster has settled",
                o.load_clients, o.kills));
  r.line(std::string{"nodes: "} + settings_note(o));
  auto env = bring_up(o, "failover", 3);
  auto load = mixed_load(*env, "fo", o.load_clients, o.seed);
  auto load_started = steady::now();
  check(load->wait_acknowledged(0, 50, seconds(30)), "load progress");
  auto ttl = env->h->options().lease_ttl;
  std::vector<int64_t> took_ns;
  std::vector<std::string> kills;
  for (int k = 0; k < o.kills; ++k) {
    auto victim = static_cast<int>(rng() % 3);
    auto t0 = steady::now();
    env->h->kill(victim);
    std::string why;
    auto settled = env->h->wait_leases_settled(ttl + seconds(20), &why);
    auto took = steady::now() - t0;
    if (!settled)
      throw std::runtime_error(
        format("kill %d (node %d): leases not owned "
               "again within %lld ms: ",
               k + 1, victim,
               static_cast<long long>((ttl + seconds(20)).count()))
        + why);
    took_ns.push_back(duration_cast<nanoseconds>(took).count());
    auto ms = duration<double, std::milli>(took).count();
    progress(format("kill %d: node %d SIGKILLed, every lease owned again "
                    "after %.0f ms",
                    k + 1, victim, ms));
    kills.push_back(
      jobj{}.num("node", victim).num("ms", std::round(ms)).text());
    check(env->h->start(victim), "restart node " + std::to_string(victim));
    check(env->h->wait_ready(victim, seconds(60)),
          "node " + std::to_string(victim) + " ready again");
    check(env->h->wait_cluster_settled(seconds(60)), "settled after restart");
    auto acked = load->log().acknowledged();
    check(load->wait_acknowledged(acked, 20, seconds(30)),
          "load progress after restart");
  }
  load->stop();
  auto run_s = seconds_between(load_started, steady::now());
  auto p = bench::summarize(took_ns);
  auto unexpected = env->h->unexpected_exits();
  r.line(format("fail-over (SIGKILL -> every lease owned again): %zu kills, "
                "min %.0f ms, p50 %.0f ms, p90 %.0f ms, max %.0f ms",
                took_ns.size(),
                took_ns.empty() ? 0.0
                                : static_cast<double>(*std::min_element(
                                    took_ns.begin(), took_ns.end()))
                                    / 1e6,
                p.p50, p.p90, p.max));
  std::string each;
  for (std::size_t k = 0; k < took_ns.size(); ++k)
    each += format("%s%.0f", k ? ", " : "",
                   static_cast<double>(took_ns[k]) / 1e6);
  r.line("         each (ms): " + each);
  r.line("load     " + load_text(*load, run_s));
  r.line(format("unexpected node exits: %zu", unexpected.size()));
  for (auto& u : unexpected)
    r.line("         " + u);
  jobj res;
  res.num("kills", static_cast<double>(took_ns.size()))
    .num("min_ms", took_ns.empty()
                     ? 0
                     : std::round(static_cast<double>(*std::min_element(
                                    took_ns.begin(), took_ns.end()))
                                  / 1e6))
    .num("p50_ms", std::round(p.p50))
    .num("p90_ms", std::round(p.p90))
    .num("max_ms", std::round(p.max))
    .raw("each", jarr(kills))
    .num("load_acknowledged", static_cast<double>(load->log().acknowledged()))
    .num("load_failed", static_cast<double>(load->log().failed()))
    .str("load_summary", load->log().summary())
    .num("unexpected_exits", static_cast<double>(unexpected.size()));
  r.results = res;
  r.target = "every fail-over <= 5 s (heartbeat 500ms, lease TTL 3s)";
  r.met = !took_ns.empty() && p.max <= 5000;
}

// -- 4. handoff_pause ---------------------------------------------------------

struct issued {
  steady::time_point at;
  int64_t ns = 0;
  command_outcome outcome = command_outcome::pending;
  int attempts = 0;
  /// The address that acknowledged it.
  std::string node;
};

void handoff_pause(const options& o, report& r) {
  const double steady_before_s = o.quick ? 5 : 15;
  const double between_s = o.quick ? 5 : 15;
  const double after_s = o.quick ? 3 : 10;
  r.params.num("nodes", 3)
    .num("client_threads", o.handoff_clients)
    .num("users", o.users)
    .num("steady_before_s", steady_before_s)
    .num("between_s", between_s)
    .num("after_s", after_s)
    .str("command", "PostShout, retried (same command_id) on UNAVAILABLE, "
                    "DEADLINE_EXCEEDED and transport errors for up to 10 s")
    .str("settings", settings_note(o));
  r.line(format("3 nodes, %d users; closed loop of %d client threads, each "
                "one PostShout at a time through the harness's retrying "
                "client (same command_id, any ready node, 10 s budget; the "
                "latency is the command's, over all its attempts); steady "
                "%.0f s, then a 4th node joins (window: start -> cluster "
                "settled, node 3 'up' with its share), %.0f s later SIGTERM "
                "(window: SIGTERM -> exit and every lease owned again), "
                "%.0f s more",
                o.users, o.handoff_clients, steady_before_s, between_s,
                after_s));
  r.line(std::string{"nodes: "} + settings_note(o));
  auto env = bring_up(o, "handoff_pause", 3);
  {
    fleet f{env->command_addresses()};
    progress(format("registering %d users", o.users));
    auto reg = f.register_users(o.users, 64);
    if (reg.failed > 0)
      throw std::runtime_error(std::to_string(reg.failed)
                               + " registrations failed");
  }
  auto* h = env->h.get();
  sft::command_log log;
  command_client client{[h] { return h->command_targets(); }, retry_policy{},
                        &log};
  std::atomic<bool> stop{false};
  std::vector<std::vector<issued>> per_thread(
    static_cast<std::size_t>(o.handoff_clients));
  std::vector<std::thread> threads;
  // Stops and joins the clients however this function ends.
  struct joiner {
    std::atomic<bool>& stop;
    std::vector<std::thread>& threads;
    ~joiner() {
      stop = true;
      for (auto& t : threads)
        if (t.joinable())
          t.join();
    }
  } join_clients{stop, threads};
  auto load_start = steady::now();
  for (int t = 0; t < o.handoff_clients; ++t)
    threads.emplace_back([&, t] {
      std::mt19937_64 rng{o.seed * 31 + static_cast<uint64_t>(t)};
      auto& mine = per_thread[static_cast<std::size_t>(t)];
      for (int64_t n = 0; !stop; ++n) {
        v1::PostShoutRequest req;
        auto user = user_id(static_cast<int>(rng() % o.users));
        req.set_command_id("ho-" + std::to_string(t) + "-" + std::to_string(n));
        req.set_user_id(user);
        req.set_text("hand-off shout " + std::to_string(n));
        issued s;
        s.at = steady::now();
        auto rec = client.execute(command_client::make("PostShout", user, req),
                                  rng, false);
        s.ns = duration_cast<nanoseconds>(steady::now() - s.at).count();
        s.outcome = rec.outcome;
        s.attempts = rec.attempts;
        s.node = rec.node;
        mine.push_back(s);
      }
    });
  std::this_thread::sleep_for(secs(steady_before_s));

  // The join.
  auto join_db = env->db_now();
  auto t_join = steady::now();
  auto fourth = h->add_node();
  check(h->start(fourth), "start node 3");
  check(h->wait_ready(fourth, seconds(60)), "node 3 ready");
  auto t_ready = steady::now();
  check(h->wait_cluster_settled(seconds(60)), "settled with 4 nodes");
  auto t_join_end = steady::now();
  progress(format("node 3 joined: ready after %.2f s, settled after %.2f s",
                  seconds_between(t_join, t_ready),
                  seconds_between(t_join, t_join_end)));
  std::this_thread::sleep_for(secs(between_s));

  // The leave.
  auto term_db = env->db_now();
  auto t_term = steady::now();
  int status = h->stop(fourth);
  auto t_exit = steady::now();
  std::string why;
  auto settled = h->wait_leases_settled(seconds(30), &why);
  if (!settled)
    throw std::runtime_error("leases not settled after the SIGTERM: " + why);
  check(h->wait_cluster_settled(seconds(30)), "settled with 3 nodes");
  auto t_leave_end = steady::now();
  bool exit_ok = status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  auto grace = h->options().shutdown_grace;
  progress(format(
    "node 3 SIGTERMed: %s after %.2f s; leases settled "
    "%.2f s after the SIGTERM",
    status < 0 ? "did not exit"
    : WIFEXITED(status)
      ? ("exit status " + std::to_string(WEXITSTATUS(status))).c_str()
      : "killed by a signal",
    seconds_between(t_term, t_exit), seconds_between(t_term, t_leave_end)));
  std::this_thread::sleep_for(secs(after_s));
  stop = true;
  for (auto& t : threads)
    if (t.joinable())
      t.join();
  auto t_end = steady::now();

  // Leases that moved in each window.
  long long moved_join = 0, moved_leave = 0;
  {
    pqxx::connection conn{env->db->url()};
    pqxx::read_transaction tx{conn};
    moved_join = tx.exec_params1("SELECT count(*) FROM lease_history WHERE "
                                 "acquired_at > $1::timestamptz AND "
                                 "acquired_at < $2::timestamptz",
                                 join_db, term_db)[0]
                   .as<long long>();
    moved_leave = tx.exec_params1("SELECT count(*) FROM lease_history WHERE "
                                  "acquired_at > $1::timestamptz",
                                  term_db)[0]
                    .as<long long>();
  }

  // Classify every command by when it was issued.
  std::vector<int64_t> steady_ns, join_ns, leave_ns;
  std::size_t failed_steady = 0, failed_join = 0, failed_leave = 0;
  std::size_t retried = 0, over_1s = 0;
  auto warm_until = load_start + secs(o.warmup_s);
  for (auto& v : per_thread)
    for (auto& s : v) {
      if (s.at < warm_until)
        continue;
      bool failed = s.outcome != command_outcome::acknowledged;
      if (s.attempts > 1)
        ++retried;
      if (s.at >= t_join && s.at <= t_join_end) {
        join_ns.push_back(s.ns);
        failed_join += failed;
      } else if (s.at >= t_term && s.at <= t_leave_end) {
        leave_ns.push_back(s.ns);
        failed_leave += failed;
      } else {
        steady_ns.push_back(s.ns);
        failed_steady += failed;
      }
      if (s.ns > 1000000000LL && s.at >= t_join)
        ++over_1s;
    }
  std::vector<int64_t> hand_ns = join_ns;
  hand_ns.insert(hand_ns.end(), leave_ns.begin(), leave_ns.end());
  auto ps = bench::summarize(steady_ns), pj = bench::summarize(join_ns),
       pl = bench::summarize(leave_ns), ph = bench::summarize(hand_ns);
  double total_s = seconds_between(load_start, t_end);
  std::size_t total = 0;
  for (auto& v : per_thread)
    total += v.size();

  r.line(format("steady   %zu commands: %s (failed %zu)", steady_ns.size(),
                percentiles_text(ps).c_str(), failed_steady));
  r.line(format("join     %zu commands issued in %.2f s (ready %.2f s, "
                "settled %.2f s after the start; %lld leases granted): %s "
                "(failed %zu)",
                join_ns.size(), seconds_between(t_join, t_join_end),
                seconds_between(t_join, t_ready),
                seconds_between(t_join, t_join_end), moved_join,
                percentiles_text(pj).c_str(), failed_join));
  r.line(format("leave    %zu commands issued in %.2f s (SIGTERM -> exit "
                "%.2f s, %s, grace %.0f s; %lld leases granted): %s (failed "
                "%zu)",
                leave_ns.size(), seconds_between(t_term, t_leave_end),
                seconds_between(t_term, t_exit),
                exit_ok ? "exit status 0" : "NOT a clean exit 0",
                duration<double>(grace).count(), moved_leave,
                percentiles_text(pl).c_str(), failed_leave));
  r.line(format("hand-off windows together: %s; commands over 1 s after the "
                "join started: %zu; commands that needed a retry: %zu; "
                "throughput %.0f commands/s overall",
                percentiles_text(ph).c_str(), over_1s, retried,
                static_cast<double>(total) / total_s));
  r.line("commands: " + log.summary());
  // The slowest commands after the join started, for the logs.
  std::vector<const issued*> slow;
  for (auto& v : per_thread)
    for (auto& s : v)
      if (s.at >= t_join)
        slow.push_back(&s);
  std::sort(slow.begin(), slow.end(),
            [](auto* a, auto* b) { return a->ns > b->ns; });
  std::vector<std::string> slow_json;
  for (std::size_t k = 0; k < slow.size() && k < 5; ++k) {
    auto& s = *slow[k];
    std::string node = s.node;
    for (int i = 0; i < h->size(); ++i)
      if (h->command_address(i) == s.node)
        node = "node " + std::to_string(i);
    auto text = format("issued %+.2f s after the join started (SIGTERM at "
                       "%+.2f s): %.0f ms, %d attempt%s, %s by %s",
                       seconds_between(t_join, s.at),
                       seconds_between(t_join, t_term),
                       static_cast<double>(s.ns) / 1e6, s.attempts,
                       s.attempts == 1 ? "" : "s", sft::to_string(s.outcome),
                       node.empty() ? "-" : node.c_str());
    r.line("  slow: " + text);
    slow_json.push_back(jstr(text));
  }
  auto window_json = [](const bench::percentiles& p, std::size_t n,
                        std::size_t failed) {
    auto o = percentiles_json(p, n);
    o.num("failed", static_cast<double>(failed));
    return o;
  };
  jobj join;
  join.num("window_s", seconds_between(t_join, t_join_end))
    .num("ready_after_s", seconds_between(t_join, t_ready))
    .num("leases_granted", static_cast<double>(moved_join))
    .obj("latency", window_json(pj, join_ns.size(), failed_join));
  jobj leave;
  leave.num("window_s", seconds_between(t_term, t_leave_end))
    .num("sigterm_to_exit_s", seconds_between(t_term, t_exit))
    .num("exit_status",
         status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1)
    .flag("exited_0_within_grace", exit_ok && (t_exit - t_term) <= grace)
    .num("grace_s", duration<double>(grace).count())
    .num("leases_granted", static_cast<double>(moved_leave))
    .obj("latency", window_json(pl, leave_ns.size(), failed_leave));
  r.results.obj("steady", window_json(ps, steady_ns.size(), failed_steady))
    .obj("join", join)
    .obj("leave", leave)
    .obj("handoff_windows",
         window_json(ph, hand_ns.size(), failed_join + failed_leave))
    .num("commands_over_1s_after_join", static_cast<double>(over_1s))
    .num("commands_retried", static_cast<double>(retried))
    .str("commands_summary", log.summary())
    .raw("slowest_after_join", jarr(slow_json))
    .num("throughput_per_s", std::round(static_cast<double>(total) / total_s));
  r.target = "p99 of the commands issued during each hand-off < 1 s, none "
             "failed; SIGTERM exits 0 within the grace";
  r.met = pj.p99 < 1000 && pl.p99 < 1000 && exit_ok
          && (t_exit - t_term) <= grace && failed_join + failed_leave == 0;
}

// -- 5. idle_cost -------------------------------------------------------------

void idle_cost(const options& o, report& r) {
  const double quiet_s = o.quick ? 3 : 10;
  r.params.num("nodes", 3)
    .num("quiet_before_s", quiet_s)
    .num("measured_s", o.idle_s)
    .str("settings", settings_note(o));
  r.line(format("3 nodes, no client; after the cluster settled and %.0f s "
                "more, %.0f s measured: utime+stime from /proc/PID/stat of "
                "each shoutflowd and of the PostgreSQL server's processes "
                "(sampled every second), as %% of one core",
                quiet_s, o.idle_s));
  r.line(std::string{"nodes: "} + settings_note(o));
  auto env = bring_up(o, "idle_cost", 3);
  std::this_thread::sleep_for(secs(quiet_s));
  std::vector<std::pair<int, pid_t>> nodes;
  for (auto i : env->h->live_nodes())
    nodes.emplace_back(i, node_pid(env->h->options().binary,
                                   env->h->ports(i).command));
  tick_book ticks;
  auto sample = [&](bool baseline) {
    for (auto& [i, pid] : nodes)
      ticks.see("node" + std::to_string(i), {pid}, baseline);
    auto pg = list_pg(env->postmaster, env->db->name());
    ticks.see("pg_ours", pg.ours, baseline);
    ticks.see("pg_background", pg.background, baseline);
    ticks.see("pg_other_clients", pg.other_clients, baseline);
  };
  long long tx0 = 0, tx1 = 0;
  auto xacts = [&] { return db_transactions(env->db->url()); };
  std::vector<pid_t> node_pids;
  for (auto& [i, pid] : nodes)
    node_pids.push_back(pid);
  tx0 = xacts();
  sample(true);
  auto th0 = read_threads(node_pids);
  auto m0 = read_machine_cpu();
  auto t0 = steady::now();
  {
    bool first = true;
    periodic sampler{milliseconds(1000), [&] {
                       if (!first)
                         sample(false);
                       first = false;
                     }};
    std::this_thread::sleep_for(secs(o.idle_s));
  }
  sample(false);
  auto th1 = read_threads(node_pids);
  auto m1 = read_machine_cpu();
  double measured = seconds_between(t0, steady::now());
  auto threads = threads_by_name(th0, th1);
  tx1 = xacts();
  auto pct = [&](const std::string& g) {
    return 100.0 * ticks.cpu_seconds(g) / measured;
  };
  jobj per_node;
  double worst_node = 0;
  std::string nodes_text;
  for (auto& [i, pid] : nodes) {
    auto p = pct("node" + std::to_string(i));
    worst_node = std::max(worst_node, p);
    per_node.num("node" + std::to_string(i), std::round(p * 1000) / 1000);
    nodes_text += format("%snode %d %.3f%%", nodes_text.empty() ? "" : ", ", i,
                         p);
  }
  bool pg_visible = env->postmaster > 0;
  double pg_cluster = pct("pg_ours") + pct("pg_background");
  r.line("shoutflowd (% of one core): " + nodes_text);
  r.line("         by thread name, all nodes together: "
         + threads_text(threads, measured, 8));
  if (pg_visible) {
    r.line(format("PostgreSQL: this cluster's backends %.3f%% (%zu "
                  "processes) + the server's background processes %.3f%% "
                  "(%zu) = %.3f%%; other tenants' backends %.3f%% (%zu)",
                  pct("pg_ours"), ticks.processes("pg_ours"),
                  pct("pg_background"), ticks.processes("pg_background"),
                  pg_cluster, pct("pg_other_clients"),
                  ticks.processes("pg_other_clients")));
  } else {
    r.line("PostgreSQL: its processes are not visible from here (not "
           "measured)");
  }
  double tps = static_cast<double>(tx1 - tx0) / measured;
  r.line(format("this cluster's database: %.1f transactions/s (from "
                "pg_stat_database); machine busy %.0f%% (other tenants "
                "included)",
                tps, busy_pct(m0, m1)));
  jobj pg;
  pg.num("cluster_backends_pct", std::round(pct("pg_ours") * 1000) / 1000)
    .num("cluster_backends", static_cast<double>(ticks.processes("pg_ours")))
    .num("background_pct", std::round(pct("pg_background") * 1000) / 1000)
    .num("cluster_plus_background_pct", std::round(pg_cluster * 1000) / 1000)
    .num("other_tenants_backends_pct",
         std::round(pct("pg_other_clients") * 1000) / 1000)
    .flag("measured", pg_visible);
  r.results.obj("shoutflowd_pct_of_core", per_node)
    .str("shoutflowd_threads_pct_of_core", threads_text(threads, measured, 12))
    .obj("postgres", pg)
    .num("measured_s", std::round(measured * 10) / 10)
    .num("database_transactions_per_s", std::round(tps * 10) / 10)
    .num("machine_busy_pct", std::round(busy_pct(m0, m1)));
  r.target = "well under 1% of a core for each shoutflowd and for "
             "PostgreSQL (this cluster's backends + background processes)";
  r.met = worst_node < 1.0 && (!pg_visible || pg_cluster < 1.0);
}

// -- 6. no_false_failover -----------------------------------------------------

void no_false_failover(const options& o, report& r) {
  auto clients = o.load_clients * 2;
  r.params.num("nodes", 3)
    .num("minutes", o.minutes)
    .num("load_clients", clients)
    .str("load", "the harness's mixed load, 64 users, 5 ms think time per "
                 "client")
    .str("settings", settings_note(o));
  r.line(format("3 nodes under a moderate mixed load (%d clients with 5 ms "
                "think time, 64 users) for %.1f minutes, no fault injected; "
                "counted: lease epochs granted after the start "
                "(lease_history), cluster_members rows not 'up' or with a "
                "new incarnation (polled every 250 ms), node exits, and the "
                "nodes' log lines that mean a lease or a member was lost",
                clients, o.minutes));
  r.line(std::string{"nodes: "} + settings_note(o));
  auto env = bring_up(o, "no_false_failover", 3);
  auto load = mixed_load(*env, "nf", clients, o.seed ^ 0x5eed);
  check(load->wait_acknowledged(0, 50, seconds(30)), "load progress");
  auto start_db = env->db_now();
  auto t0 = steady::now();
  auto acked0 = load->log().acknowledged();
  std::map<int, std::string> initial;
  {
    pqxx::connection conn{env->db->url()};
    pqxx::read_transaction tx{conn};
    for (const auto& row : tx.exec("SELECT node_id, incarnation, state FROM "
                                   "cluster_members"))
      initial[row[0].as<int>()] = row[1].as<std::string>() + "/"
                                  + row[2].as<std::string>();
  }
  std::mutex mtx;
  std::vector<std::string> member_events;
  std::map<int, std::string> last = initial;
  int poll_errors = 0;
  {
    auto conn = std::make_shared<pqxx::connection>(env->db->url());
    periodic watcher{
      milliseconds(250), [&] {
        try {
          pqxx::read_transaction tx{*conn};
          std::map<int, std::string> now;
          for (const auto& row : tx.exec("SELECT node_id, incarnation, state "
                                         "FROM cluster_members"))
            now[row[0].as<int>()] = row[1].as<std::string>() + "/"
                                    + row[2].as<std::string>();
          std::lock_guard<std::mutex> guard{mtx};
          if (now != last) {
            std::string e = format("%.1f s:",
                                   seconds_between(t0, steady::now()));
            for (auto& [id, v] : now)
              e += format(" node %d %s", id, v.c_str());
            member_events.push_back(e);
            last = now;
          }
        } catch (const std::exception&) {
          std::lock_guard<std::mutex> guard{mtx};
          ++poll_errors;
        }
      }};
    auto until = t0 + secs(o.minutes * 60);
    while (steady::now() < until) {
      std::this_thread::sleep_until(
        std::min(until, steady::now() + seconds(60)));
      progress(
        format("no_false_failover: %.0f of %.0f s, %lld commands, "
               "load %s",
               seconds_between(t0, steady::now()), o.minutes * 60,
               static_cast<long long>(load->log().acknowledged() - acked0),
               loadavg().c_str()));
    }
  }
  auto run_s = seconds_between(t0, steady::now());
  auto acked = load->log().acknowledged() - acked0;
  load->stop();
  long long granted = 0;
  std::vector<std::string> grants;
  {
    pqxx::connection conn{env->db->url()};
    pqxx::read_transaction tx{conn};
    auto rows = tx.exec_params("SELECT resource, part, epoch, owner_node, "
                               "acquired_at::text FROM lease_history WHERE "
                               "acquired_at > $1::timestamptz ORDER BY "
                               "acquired_at",
                               start_db);
    granted = static_cast<long long>(rows.size());
    for (const auto& row : rows)
      if (grants.size() < 10)
        grants.push_back(
          row[0].as<std::string>() + "/" + row[1].as<std::string>() + " epoch "
          + row[2].as<std::string>() + " to node " + row[3].as<std::string>()
          + " at " + row[4].as<std::string>());
  }
  auto unexpected = env->h->unexpected_exits();
  const std::vector<std::string> patterns
    = {"lost ",           "declared node",           "declared down",
       "could not renew", "membership round failed", "hand-off of"};
  std::map<std::string, std::size_t> log_hits;
  for (int i = 0; i < env->h->size(); ++i) {
    std::istringstream in{env->h->log(i)};
    std::string line;
    while (std::getline(in, line))
      for (auto& p : patterns)
        if (line.find(p) != std::string::npos)
          ++log_hits[p];
  }
  std::size_t log_total = 0;
  for (auto& [p, n] : log_hits)
    log_total += n;
  std::size_t member_changes = member_events.size();
  r.line(format("%.1f minutes, %lld commands acknowledged (%.0f/s); %s",
                run_s / 60, static_cast<long long>(acked),
                static_cast<double>(acked) / run_s,
                load->log().summary().c_str()));
  r.line(format("lease epochs granted after the start: %lld; member state "
                "changes seen: %zu; unexpected node exits: %zu; log lines "
                "about lost leases or members: %zu; membership polls that "
                "failed: %d",
                granted, member_changes, unexpected.size(), log_total,
                poll_errors));
  for (auto& g : grants)
    r.line("         granted " + g);
  for (auto& e : member_events)
    r.line("         members at " + e);
  for (auto& [p, n] : log_hits)
    r.line(format("         log '%s': %zu", p.c_str(), n));
  for (auto& u : unexpected)
    r.line("         " + u);
  std::vector<std::string> events_json, grants_json;
  for (auto& e : member_events)
    events_json.push_back(jstr(e));
  for (auto& g : grants)
    grants_json.push_back(jstr(g));
  jobj hits;
  for (auto& [p, n] : log_hits)
    hits.num(p, static_cast<double>(n));
  r.results.num("minutes", std::round(run_s / 6) / 10)
    .num("commands_acknowledged", static_cast<double>(acked))
    .num("commands_per_s", std::round(static_cast<double>(acked) / run_s))
    .num("commands_failed", static_cast<double>(load->log().failed()))
    .num("lease_epochs_granted", static_cast<double>(granted))
    .raw("lease_grants", jarr(grants_json))
    .num("member_state_changes", static_cast<double>(member_changes))
    .raw("member_events", jarr(events_json))
    .num("unexpected_exits", static_cast<double>(unexpected.size()))
    .obj("log_lines", hits)
    .num("membership_poll_errors", poll_errors);
  r.target = "0 lease epoch changes and 0 member state changes without a "
             "fault";
  r.met = granted == 0 && member_changes == 0 && unexpected.empty();
}

} // namespace

int main(int argc, char** argv) {
  auto opt = parse(argc, argv);
  if (!opt.json_file.empty())
    std::ofstream{opt.json_file, std::ios::app};
  output out{opt};
  shared_facts facts;
  progress(format("shoutflowd %s, seed %llu, machine: nproc %ld, '%s', "
                  "load average %s",
                  opt.binary.c_str(), static_cast<unsigned long long>(opt.seed),
                  ::sysconf(_SC_NPROCESSORS_ONLN), cpu_model().c_str(),
                  loadavg().c_str()));
  int failures = 0;
  for (auto& name : opt.scenarios) {
    report r{name};
    progress("scenario " + name);
    try {
      if (name == "write_scaling")
        write_scaling(opt, r, facts);
      else if (name == "lag")
        lag(opt, r, facts);
      else if (name == "failover")
        failover(opt, r);
      else if (name == "handoff_pause")
        handoff_pause(opt, r);
      else if (name == "idle_cost")
        idle_cost(opt, r);
      else if (name == "no_false_failover")
        no_false_failover(opt, r);
    } catch (const std::exception& e) {
      r.error = e.what();
      r.met.reset();
      ++failures;
    }
    out.emit(r);
  }
  return failures == 0 ? 0 : 1;
}
