// write_bench: a gRPC load client for the CommandService write path.
//
//   write_bench [--target=HOST:PORT] [--users=N] [--inflight=K]
//               [--duration=SECONDS] [--warmup=SECONDS] [--rate=R]
//               [--channels=C] [--deadline-ms=MS] [--prefix=STR]
//               [--no-register] [--register-only]
//
// 1. Registers N users (`<prefix><i>`, handle `b<i>`) with K requests in
//    flight. Command ids are `reg-<user_id>`, so a rerun against the same
//    database answers them as duplicates and registers nothing twice;
//    ALREADY_EXISTS counts as registered for the same reason.
// 2. Runs PostShout over uniformly random users for warm-up + duration
//    seconds, either
//    * closed loop (default): exactly K requests in flight; a completion
//      issues the next request, or
//    * open loop (--rate R): requests are scheduled at fixed intervals of
//      1/R s, whatever the server does; latency is measured from the
//      scheduled send time, so a stalled server shows up in the percentiles
//      instead of silently slowing the sender (no coordinated omission).
//
// Only completions inside the measurement window (after the warm-up; in the
// open loop: requests scheduled inside it) count. Output: a human summary
// and one machine-readable line,
//   RESULT mode=closed|open inflight=K rate=R users=N seconds=D ok=.. errors=..
//          rps=.. p50_ms=.. p90_ms=.. p99_ms=.. p999_ms=.. max_ms=..
//          sent=.. cpu_s=..
// where `sent` counts every request of the run (warm-up included) and
// `cpu_s` is this client's own CPU time over the whole run.
// Exit status 1 when registration fails or no request succeeded.
//
// Requests use the gRPC callback API: completions run on gRPC's own threads
// and issue the next request from there, so one sender thread (open loop)
// or none (closed loop) keeps K in flight.

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "shoutflow/v1/commands.grpc.pb.h"
#include "tests/bench/bench_support.hpp"

namespace {

using namespace shoutflow;
using clock_type = std::chrono::steady_clock;
using std::chrono::duration;
using std::chrono::duration_cast;
using std::chrono::nanoseconds;

struct options {
  std::string target = "127.0.0.1:50051";
  int users = 10000;
  int inflight = 64;
  double duration_s = 20;
  double warmup_s = 3;
  /// 0: closed loop; otherwise requests per second (open loop).
  double rate = 0;
  int channels = 2;
  int deadline_ms = 10000;
  std::string prefix = "bench-user-";
  bool do_register = true;
  bool register_only = false;
  /// Open loop only: bound on requests in flight (memory), far above what a
  /// healthy run needs; reaching it delays sends, which the latency shows.
  int max_outstanding = 20000;
};

constexpr bench::program cli{
  "write_bench",
  "usage: write_bench [--target=HOST:PORT] [--users=N] [--inflight=K] "
  "[--duration=S] [--warmup=S] [--rate=R] [--channels=C] [--deadline-ms=MS] "
  "[--prefix=STR] [--no-register] [--register-only]\n"};

options parse(int argc, char** argv) {
  options o;
  bench::flags flag{cli, argc, argv};
  while (flag.next()) {
    const auto& name = flag.name();
    if (name == "target")
      o.target = flag.text();
    else if (name == "users")
      o.users = flag.integer<int>(1, 1e8);
    else if (name == "inflight")
      o.inflight = flag.integer<int>(1, 100000);
    else if (name == "duration")
      o.duration_s = flag.number(0.1, 86400);
    else if (name == "warmup")
      o.warmup_s = flag.number(0, 3600);
    else if (name == "rate")
      o.rate = flag.number(1, 1e7);
    else if (name == "channels")
      o.channels = flag.integer<int>(1, 64);
    else if (name == "deadline-ms")
      o.deadline_ms = flag.integer<int>(1, 6e5);
    else if (name == "prefix")
      o.prefix = flag.text();
    else if (name == "no-register")
      o.do_register = false;
    else if (name == "register-only")
      o.register_only = true;
    else
      flag.unknown();
  }
  return o;
}

/// Collects outcomes of requests that fall inside the measurement window.
/// Callbacks arrive on several gRPC threads; at the rates involved (well
/// below a million per second) one mutex is not a bottleneck.
class recorder {
public:
  void add(nanoseconds latency, grpc::StatusCode code) {
    std::lock_guard<std::mutex> guard{mu_};
    if (code == grpc::StatusCode::OK)
      latencies_.push_back(latency.count());
    else
      ++errors_[code];
  }

  struct summary {
    std::size_t ok = 0;
    std::size_t errors = 0;
    std::map<int, std::size_t> by_code;
    bench::percentiles latency;
  };

  summary summarize() {
    std::lock_guard<std::mutex> guard{mu_};
    summary s;
    s.ok = latencies_.size();
    for (auto& [code, n] : errors_) {
      s.errors += n;
      s.by_code[static_cast<int>(code)] = n;
    }
    s.latency = bench::summarize(latencies_);
    return s;
  }

private:
  std::mutex mu_;
  std::vector<int64_t> latencies_;
  std::map<grpc::StatusCode, std::size_t> errors_;
};

/// Counts requests in flight; wait_zero() returns once all have completed.
class in_flight {
public:
  void up() {
    std::lock_guard<std::mutex> guard{mu_};
    ++n_;
  }
  void down() {
    std::lock_guard<std::mutex> guard{mu_};
    if (--n_ == 0)
      cv_.notify_all();
  }
  int count() {
    std::lock_guard<std::mutex> guard{mu_};
    return n_;
  }
  bool wait_zero(std::chrono::seconds timeout) {
    std::unique_lock<std::mutex> lock{mu_};
    return cv_.wait_for(lock, timeout, [&] { return n_ == 0; });
  }
  bool wait_below(int limit, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock{mu_};
    return cv_.wait_for(lock, timeout, [&] { return n_ < limit; });
  }

private:
  std::mutex mu_;
  std::condition_variable cv_;
  int n_ = 0;
};

class client {
public:
  explicit client(const options& o) : opt_(o) {
    for (int i = 0; i < o.channels; ++i) {
      grpc::ChannelArguments args;
      // Distinct arguments and a local pool give each channel its own TCP
      // connection, so the load spreads over several HTTP/2 connections.
      args.SetInt("shoutflow.bench.channel", i);
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      auto ch = grpc::CreateCustomChannel(
        o.target, grpc::InsecureChannelCredentials(), args);
      if (!ch->WaitForConnected(std::chrono::system_clock::now()
                                + std::chrono::seconds(10))) {
        std::fprintf(stderr, "write_bench: cannot connect to %s\n",
                     o.target.c_str());
        std::exit(1);
      }
      stubs_.push_back(v1::CommandService::NewStub(ch));
    }
    std::random_device rd;
    run_id_ = std::to_string(rd() % 100000000);
  }

  std::string user_id(int i) const { return opt_.prefix + std::to_string(i); }

  /// Registers every user; false when some could not be registered.
  bool register_users() {
    std::atomic<int> next{0};
    std::atomic<int> failed{0};
    std::atomic<int> duplicates{0};
    in_flight flight;
    auto started = clock_type::now();
    // Each chain registers users until none are left; K chains run at once.
    std::function<void()> issue;
    struct call {
      grpc::ClientContext ctx;
      v1::RegisterUserRequest req;
      v1::CommandResult resp;
      int attempt = 0;
    };
    // A retry is a new call (a ClientContext cannot be reused) with the
    // same request, hence the same command id.
    std::function<void(v1::RegisterUserRequest, int)> send;
    send = [&](v1::RegisterUserRequest req, int attempt) {
      auto* c = new call;
      c->req = std::move(req);
      c->attempt = attempt;
      c->ctx.set_deadline(std::chrono::system_clock::now()
                          + std::chrono::milliseconds(opt_.deadline_ms));
      stub().async()->RegisterUser(
        &c->ctx, &c->req, &c->resp, [&, c](grpc::Status s) {
          std::unique_ptr<call> owned{c};
          auto code = s.error_code();
          bool retryable = code == grpc::StatusCode::UNAVAILABLE
                           || code == grpc::StatusCode::DEADLINE_EXCEEDED;
          if (retryable && owned->attempt + 1 < 5) {
            send(std::move(owned->req), owned->attempt + 1);
            return;
          }
          if (s.ok() && owned->resp.duplicate())
            ++duplicates;
          if (!s.ok() && code != grpc::StatusCode::ALREADY_EXISTS) {
            if (failed++ < 5)
              std::fprintf(stderr, "write_bench: RegisterUser %s: %d %s\n",
                           owned->req.user_id().c_str(),
                           static_cast<int>(code), s.error_message().c_str());
          }
          issue();
          flight.down();
        });
    };
    issue = [&] {
      int i = next++;
      if (i >= opt_.users)
        return;
      flight.up();
      v1::RegisterUserRequest req;
      auto id = user_id(i);
      req.set_command_id("reg-" + id);
      req.set_user_id(id);
      req.set_handle("b" + std::to_string(i));
      req.set_display_name("Bench User " + std::to_string(i));
      req.set_email(id + "@bench.example.com");
      req.set_password("bench password " + std::to_string(i));
      send(std::move(req), 0);
    };
    for (int k = 0; k < opt_.inflight; ++k)
      issue();
    while (!flight.wait_zero(std::chrono::seconds(1)))
      ;
    double secs = duration<double>(clock_type::now() - started).count();
    std::printf("registered %d users in %.1f s (%.0f/s; %d already "
                "registered by an earlier run, %d failed)\n",
                opt_.users, secs, opt_.users / secs, duplicates.load(),
                failed.load());
    std::printf("RESULT mode=register users=%d seconds=%.2f rps=%.1f "
                "duplicates=%d failed=%d\n",
                opt_.users, secs, opt_.users / secs, duplicates.load(),
                failed.load());
    std::fflush(stdout);
    return failed == 0;
  }

  /// Runs PostShout load; returns false when nothing succeeded.
  bool run_load() {
    recorder rec;
    in_flight flight;
    std::atomic<bool> stopping{false};
    std::atomic<uint64_t> counter{0};
    auto cpu_start = bench::cpu_seconds();
    auto start = clock_type::now();
    auto window_begin = start + duration_cast<nanoseconds>(
                                  duration<double>(opt_.warmup_s));
    auto window_end = window_begin + duration_cast<nanoseconds>(
                                       duration<double>(opt_.duration_s));

    struct call {
      grpc::ClientContext ctx;
      v1::PostShoutRequest req;
      v1::CommandResult resp;
      clock_type::time_point intended;
    };
    // Issues one PostShout measured from `intended`; `chain` keeps the
    // closed loop going from the completion callback.
    std::function<void(clock_type::time_point, bool)> issue;
    issue = [&](clock_type::time_point intended, bool chain) {
      thread_local std::mt19937_64 rng{std::random_device{}()};
      auto n = counter++;
      auto c = std::make_unique<call>();
      c->intended = intended;
      std::uniform_int_distribution<int> pick{0, opt_.users - 1};
      c->req.set_command_id("ps-" + run_id_ + "-" + std::to_string(n));
      c->req.set_user_id(user_id(pick(rng)));
      c->req.set_text("shout " + std::to_string(n)
                      + " from the write benchmark client");
      c->ctx.set_deadline(std::chrono::system_clock::now()
                          + std::chrono::milliseconds(opt_.deadline_ms));
      flight.up();
      auto* raw = c.release();
      stub().async()->PostShout(
        &raw->ctx, &raw->req, &raw->resp, [&, raw, chain](grpc::Status s) {
          std::unique_ptr<call> c{raw};
          auto done = clock_type::now();
          bool counted = opt_.rate > 0
                           ? c->intended >= window_begin
                               && c->intended < window_end
                           : done >= window_begin && done < window_end;
          if (counted)
            rec.add(done - c->intended, s.error_code());
          if (chain && !stopping.load() && done < window_end)
            issue(clock_type::now(), true);
          flight.down();
        });
    };

    if (opt_.rate <= 0) {
      for (int k = 0; k < opt_.inflight; ++k)
        issue(clock_type::now(), true);
      std::this_thread::sleep_until(window_end);
      stopping = true;
    } else {
      auto interval = duration<double>(1.0 / opt_.rate);
      for (uint64_t i = 0;; ++i) {
        auto intended = start + duration_cast<nanoseconds>(interval * i);
        if (intended >= window_end)
          break;
        if (intended > clock_type::now())
          std::this_thread::sleep_until(intended);
        while (!flight.wait_below(opt_.max_outstanding,
                                  std::chrono::milliseconds(100)))
          ;
        issue(intended, false);
      }
      stopping = true;
    }
    if (!flight.wait_zero(std::chrono::seconds(opt_.deadline_ms / 1000 + 30)))
      std::fprintf(stderr, "write_bench: %d requests still in flight\n",
                   flight.count());
    auto cpu = bench::cpu_seconds() - cpu_start;
    auto sent = counter.load();
    auto s = rec.summarize();
    double rps = static_cast<double>(s.ok) / opt_.duration_s;
    const char* mode = opt_.rate > 0 ? "open" : "closed";
    if (opt_.rate > 0)
      std::printf("open loop: %.1f requests/s scheduled, %.1f s measured "
                  "after %.1f s warm-up, %d users\n",
                  opt_.rate, opt_.duration_s, opt_.warmup_s, opt_.users);
    else
      std::printf("closed loop: %d in flight, %.1f s measured after %.1f s "
                  "warm-up, %d users\n",
                  opt_.inflight, opt_.duration_s, opt_.warmup_s, opt_.users);
    std::printf("  ok %zu, errors %zu", s.ok, s.errors);
    for (auto& [code, n] : s.by_code)
      std::printf(" [code %d: %zu]", code, n);
    std::printf("\n  throughput %.1f commands/s\n", rps);
    auto& p = s.latency;
    std::printf("  latency ms: p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  "
                "max %.3f\n",
                p.p50, p.p90, p.p99, p.p999, p.max);
    std::printf("RESULT mode=%s inflight=%d rate=%.1f users=%d seconds=%.2f "
                "ok=%zu errors=%zu rps=%.1f p50_ms=%.3f p90_ms=%.3f "
                "p99_ms=%.3f p999_ms=%.3f max_ms=%.3f sent=%llu "
                "cpu_s=%.2f\n",
                mode, opt_.rate > 0 ? 0 : opt_.inflight, opt_.rate,
                opt_.users, opt_.duration_s, s.ok, s.errors, rps, p.p50, p.p90,
                p.p99, p.p999, p.max, static_cast<unsigned long long>(sent),
                cpu);
    std::fflush(stdout);
    return s.ok > 0;
  }

private:
  v1::CommandService::Stub& stub() {
    auto i = next_stub_++ % stubs_.size();
    return *stubs_[i];
  }

  options opt_;
  std::vector<std::unique_ptr<v1::CommandService::Stub>> stubs_;
  std::atomic<std::size_t> next_stub_{0};
  std::string run_id_;
};

} // namespace

int main(int argc, char** argv) {
  auto opt = parse(argc, argv);
  client c{opt};
  if (opt.do_register && !c.register_users())
    return 1;
  if (opt.register_only)
    return 0;
  return c.run_load() ? 0 : 1;
}
