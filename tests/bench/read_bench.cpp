// read_bench: a gRPC load client for the QueryService read path, and a
// probe of the live projections' lag.
//
//   read_bench [--target=HOST:PORT] [--mode=timeline|user|floor|lag] [--users=N]
//              [--prefix=STR] [--inflight=K] [--duration=SECONDS]
//              [--warmup=SECONDS] [--channels=C] [--page-size=P]
//              [--deadline-ms=MS]
//              lag only: --command-target=HOST:PORT [--lag-users=W]
//                        [--lag-rate=R] [--settle=SECONDS]
//
// Users are `<prefix><i>` for i in [0, N) (default "bench-user-", as
// shoutflow-bench and rebuild_bench --mode=generate name them).
//
// timeline, user (closed loop): exactly K requests (default 64) in flight
//   for warm-up + duration seconds over uniformly random users: GetTimeline
//   (first page, P entries, default 20) or GetUser; a completion issues the
//   next request. Only completions inside the measurement window count;
//   latency percentiles are exact (every sample kept). For timelines the
//   entries per page are reported, so an empty read model cannot pass for
//   a fast one.
//
// floor (closed loop, as user): GetUser with ids the service rejects at
//   validation (INVALID_ARGUMENT, counted as answers), so neither the query
//   pool nor the database is involved: the cost of the gRPC round trip
//   alone, client and server on this machine. No read can be served faster
//   through gRPC here, which bounds what a query's ratio to pgbench can be.
//
// lag: how long a committed write takes to become visible to a reader.
//   Opens one Watch stream per probe user (W users spread over [0, N),
//   default 32), each on the user's document and the user's home timeline,
//   and waits until every stream has delivered its initial document (so
//   every subscription is in place). Then posts shouts from the probe users
//   in turn, open loop at R per second (default 50), through the
//   CommandService. For each post: sent (scheduled) time, reply time and
//   the CommandResult's global_position P; each stream reports the arrival
//   of the DocumentChange at P of the author's document (users projection,
//   then a GetUser) and of the home timeline entry (timelines projection,
//   then a GetShout, which needs the shouts projection too). "Visible" is
//   when both have arrived. The commit happened between sending and the
//   reply, so
//     lag (lower bound)  = visible - reply   (0 when visible first)
//     lag (upper bound)  = visible - sent
//   bracket commit -> visible; both are reported (p50/p99/max), with each
//   projection's share and the count of posts never seen within `settle`
//   seconds after the run (default 5). The probe's own write load (R/s) is
//   small beside the write load the caller runs meanwhile (shoutflow-bench).
//
// Output: a human summary and one machine-readable line,
//   RESULT mode=timeline|user|floor inflight=K users=N seconds=D ok=.. errors=..
//          rps=.. p50_ms=.. p90_ms=.. p99_ms=.. p999_ms=.. max_ms=..
//          sent=.. cpu_s=.. items_per_page=..
//   RESULT mode=lag rate=R probes=W seconds=D samples=.. missing=.. ...
// Exit status 1 when nothing succeeded (or, for lag, no stream opened).

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "services/bench/lib/in_flight.hpp"
#include "shoutflow/v1/commands.grpc.pb.h"
#include "shoutflow/v1/queries.grpc.pb.h"
#include "tests/bench/bench_support.hpp"

namespace {

using namespace shoutflow;
using clock_type = std::chrono::steady_clock;
using std::chrono::duration;
using std::chrono::duration_cast;
using std::chrono::nanoseconds;

struct options {
  std::string target = "127.0.0.1:50052";
  std::string command_target;
  std::string mode = "timeline";
  int users = 10000;
  std::string prefix = "bench-user-";
  int inflight = 64;
  double duration_s = 20;
  double warmup_s = 3;
  int channels = 2;
  int page_size = 20;
  int deadline_ms = 10000;
  int lag_users = 32;
  double lag_rate = 50;
  double settle_s = 5;
};

constexpr bench::program cli{
  "read_bench",
  "usage: read_bench [--target=HOST:PORT] [--mode=timeline|user|floor|lag] "
  "[--users=N] [--prefix=STR] [--inflight=K] [--duration=S] [--warmup=S] "
  "[--channels=C] [--page-size=P] [--deadline-ms=MS] "
  "[--command-target=HOST:PORT] [--lag-users=W] [--lag-rate=R] "
  "[--settle=S]\n"};

options parse(int argc, char** argv) {
  options o;
  bench::flags flag{cli, argc, argv};
  while (flag.next()) {
    const auto& name = flag.name();
    if (name == "target")
      o.target = flag.text();
    else if (name == "command-target")
      o.command_target = flag.text();
    else if (name == "mode")
      o.mode = flag.text();
    else if (name == "users")
      o.users = flag.integer<int>(1, 1e8);
    else if (name == "prefix")
      o.prefix = flag.text();
    else if (name == "inflight")
      o.inflight = flag.integer<int>(1, 100000);
    else if (name == "duration")
      o.duration_s = flag.number(0.1, 86400);
    else if (name == "warmup")
      o.warmup_s = flag.number(0, 3600);
    else if (name == "channels")
      o.channels = flag.integer<int>(1, 64);
    else if (name == "page-size")
      o.page_size = flag.integer<int>(1, 100);
    else if (name == "deadline-ms")
      o.deadline_ms = flag.integer<int>(1, 6e5);
    else if (name == "lag-users")
      o.lag_users = flag.integer<int>(1, 1000);
    else if (name == "lag-rate")
      o.lag_rate = flag.number(0.1, 1e5);
    else if (name == "settle")
      o.settle_s = flag.number(0, 600);
    else
      flag.unknown();
  }
  if (o.mode != "timeline" && o.mode != "user" && o.mode != "floor"
      && o.mode != "lag")
    cli.usage_error("--mode must be timeline, user or lag");
  if (o.mode == "lag" && o.command_target.empty())
    cli.usage_error("--mode=lag needs --command-target");
  if (o.mode == "lag" && o.lag_users > o.users)
    cli.usage_error("--lag-users must not exceed --users");
  return o;
}

std::vector<std::shared_ptr<grpc::Channel>>
open_channels(const std::string& target, int count) {
  std::vector<std::shared_ptr<grpc::Channel>> out;
  for (int i = 0; i < count; ++i) {
    grpc::ChannelArguments args;
    // Distinct arguments and a local pool give each channel its own TCP
    // connection, so the load spreads over several HTTP/2 connections.
    args.SetInt("shoutflow.bench.channel", i);
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    auto ch = grpc::CreateCustomChannel(
      target, grpc::InsecureChannelCredentials(), args);
    if (!ch->WaitForConnected(std::chrono::system_clock::now()
                              + std::chrono::seconds(10))) {
      std::fprintf(stderr, "read_bench: cannot connect to %s\n",
                   target.c_str());
      std::exit(1);
    }
    out.push_back(std::move(ch));
  }
  return out;
}

// -- closed loop over GetTimeline / GetUser -----------------------------------

class reads {
public:
  explicit reads(const options& o) : opt_(o) {
    for (auto& ch : open_channels(o.target, o.channels))
      stubs_.push_back(v1::QueryService::NewStub(ch));
  }

  bool run() {
    std::mutex mu;
    std::vector<int64_t> latencies;
    std::map<int, std::size_t> errors;
    int64_t items = 0;
    int64_t full_pages = 0;
    int64_t mismatches = 0;
    bench::in_flight flight;
    std::atomic<bool> stopping{false};
    std::atomic<uint64_t> counter{0};
    auto cpu_start = bench::cpu_seconds();
    auto start = clock_type::now();
    auto window_begin
      = start + duration_cast<nanoseconds>(duration<double>(opt_.warmup_s));
    auto window_end
      = window_begin
        + duration_cast<nanoseconds>(duration<double>(opt_.duration_s));
    bool timeline = opt_.mode == "timeline";
    bool floor = opt_.mode == "floor";

    struct call {
      grpc::ClientContext ctx;
      v1::GetTimelineRequest timeline_req;
      v1::TimelinePage page;
      v1::GetUserRequest user_req;
      v1::UserView user;
      clock_type::time_point started;
    };
    std::function<void()> issue;
    issue = [&] {
      thread_local std::mt19937_64 rng{std::random_device{}()};
      ++counter;
      std::uniform_int_distribution<int> pick{0, opt_.users - 1};
      // '!' is not allowed in a user id.
      auto user = (floor ? "!" : opt_.prefix) + std::to_string(pick(rng));
      auto* c = new call;
      c->ctx.set_deadline(std::chrono::system_clock::now()
                          + std::chrono::milliseconds(opt_.deadline_ms));
      flight.up();
      c->started = clock_type::now();
      auto done = [&, c](grpc::Status s) {
        std::unique_ptr<call> owned{c};
        auto now = clock_type::now();
        if (now >= window_begin && now < window_end) {
          std::lock_guard<std::mutex> guard{mu};
          if (floor && s.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
            latencies.push_back(
              duration_cast<nanoseconds>(now - owned->started).count());
          } else if (s.ok() && !floor) {
            latencies.push_back(
              duration_cast<nanoseconds>(now - owned->started).count());
            if (timeline) {
              items += owned->page.shouts_size();
              if (owned->page.shouts_size() == opt_.page_size)
                ++full_pages;
            } else if (owned->user.user_id() != owned->user_req.user_id()) {
              ++mismatches;
            }
          } else {
            ++errors[static_cast<int>(s.error_code())];
            if (errors.size() == 1 && errors.begin()->second == 1)
              std::fprintf(stderr, "read_bench: first error: %d %s\n",
                           static_cast<int>(s.error_code()),
                           s.error_message().c_str());
          }
        }
        if (!stopping.load() && now < window_end)
          issue();
        // The call (its ClientContext) goes before the count: once it is
        // zero, run() returns and the stubs and channels go, and a context
        // freed after them was a double free at exit (seen once).
        owned.reset();
        flight.down();
      };
      auto& stub = next_stub();
      if (timeline) {
        c->timeline_req.set_user_id(user);
        c->timeline_req.set_page_size(opt_.page_size);
        stub.async()->GetTimeline(&c->ctx, &c->timeline_req, &c->page, done);
      } else {
        c->user_req.set_user_id(user);
        stub.async()->GetUser(&c->ctx, &c->user_req, &c->user, done);
      }
    };
    for (int k = 0; k < opt_.inflight; ++k)
      issue();
    std::this_thread::sleep_until(window_end);
    stopping = true;
    if (!flight.wait_zero(std::chrono::seconds(opt_.deadline_ms / 1000 + 30)))
      std::fprintf(stderr, "read_bench: %d requests still in flight\n",
                   static_cast<int>(flight.count()));
    auto cpu = bench::cpu_seconds() - cpu_start;
    std::lock_guard<std::mutex> guard{mu};
    auto ok = latencies.size();
    std::size_t failed = 0;
    for (auto& [code, n] : errors)
      failed += n;
    auto p = bench::summarize(latencies);
    double rps = static_cast<double>(ok) / opt_.duration_s;
    double per_page
      = ok == 0 ? 0.0 : static_cast<double>(items) / static_cast<double>(ok);
    const char* what = timeline ? "GetTimeline"
                       : floor  ? "GetUser (rejected at validation)"
                                : "GetUser";
    std::printf("%s closed loop: %d in flight, %.1f s measured after %.1f s "
                "warm-up, %d users\n",
                what, opt_.inflight, opt_.duration_s, opt_.warmup_s,
                opt_.users);
    std::printf("  ok %zu, errors %zu", ok, failed);
    for (auto& [code, n] : errors)
      std::printf(" [code %d: %zu]", code, n);
    std::printf("\n  throughput %.1f requests/s\n", rps);
    std::printf("  latency ms: p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  "
                "max %.3f\n",
                p.p50, p.p90, p.p99, p.p999, p.max);
    if (timeline)
      std::printf("  %.2f entries per page, %lld of %zu pages full (%d)\n",
                  per_page, static_cast<long long>(full_pages), ok,
                  opt_.page_size);
    else if (mismatches > 0)
      std::printf("  %lld answers named another user\n",
                  static_cast<long long>(mismatches));
    std::printf("RESULT mode=%s inflight=%d users=%d seconds=%.2f ok=%zu "
                "errors=%zu rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f "
                "p999_ms=%.3f max_ms=%.3f sent=%llu cpu_s=%.2f "
                "items_per_page=%.2f full_pages=%lld mismatches=%lld\n",
                opt_.mode.c_str(), opt_.inflight, opt_.users, opt_.duration_s,
                ok, failed, rps, p.p50, p.p90, p.p99, p.p999, p.max,
                static_cast<unsigned long long>(counter.load()), cpu, per_page,
                static_cast<long long>(full_pages),
                static_cast<long long>(mismatches));
    std::fflush(stdout);
    return ok > 0 && mismatches == 0;
  }

private:
  v1::QueryService::Stub& next_stub() {
    return *stubs_[next_++ % stubs_.size()];
  }

  options opt_;
  std::vector<std::unique_ptr<v1::QueryService::Stub>> stubs_;
  std::atomic<std::size_t> next_{0};
};

// -- lag ----------------------------------------------------------------------

/// Times of one log position, as the probe learns them.
struct observation {
  bool ours = false;
  bool counted = false;
  clock_type::time_point sent, reply;
  std::optional<clock_type::time_point> user_seen, timeline_seen;
};

class lag_tracker {
public:
  enum kind_t { user_doc, timeline_entry };

  void arrived(int64_t position, kind_t kind, clock_type::time_point at) {
    std::lock_guard<std::mutex> guard{mu_};
    auto& o = seen_[position];
    auto& slot = kind == user_doc ? o.user_seen : o.timeline_seen;
    if (!slot)
      slot = at;
    ++changes_;
    cv_.notify_all();
  }

  void replied(int64_t position, clock_type::time_point sent,
               clock_type::time_point reply, bool counted) {
    std::lock_guard<std::mutex> guard{mu_};
    auto& o = seen_[position];
    o.ours = true;
    o.counted = counted;
    o.sent = sent;
    o.reply = reply;
    cv_.notify_all();
  }

  /// Waits until every counted post has been seen in both ways, or until
  /// `deadline`.
  void wait_all(clock_type::time_point deadline) {
    std::unique_lock<std::mutex> lock{mu_};
    cv_.wait_until(lock, deadline, [&] {
      for (auto& [pos, o] : seen_)
        if (o.ours && o.counted && (!o.user_seen || !o.timeline_seen))
          return false;
      return true;
    });
  }

  std::map<int64_t, observation> snapshot() {
    std::lock_guard<std::mutex> guard{mu_};
    return seen_;
  }

  int64_t changes() {
    std::lock_guard<std::mutex> guard{mu_};
    return changes_;
  }

private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<int64_t, observation> seen_;
  int64_t changes_ = 0;
};

/// One Watch stream on a user's document and home timeline.
class watch_reader final : public grpc::ClientReadReactor<v1::DocumentChange> {
public:
  watch_reader(v1::QueryService::Stub& stub, const std::string& user,
               lag_tracker& tracker)
    : user_(user), tracker_(tracker) {
    req_.add_user_ids(user);
    req_.set_timeline_user_id(user);
    stub.async()->Watch(&ctx_, &req_, this);
    StartRead(&msg_);
    StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok)
      return; // the stream is over: OnDone follows
    auto now = clock_type::now();
    if (msg_.global_position() == 0) {
      if (msg_.has_user())
        ready_ = true;
    } else if (msg_.has_user()) {
      if (msg_.user().user_id() == user_)
        tracker_.arrived(msg_.global_position(), lag_tracker::user_doc, now);
    } else if (msg_.has_timeline_entry()) {
      if (msg_.timeline_entry().author_id() == user_)
        tracker_.arrived(msg_.global_position(), lag_tracker::timeline_entry,
                         now);
    }
    StartRead(&msg_);
  }

  void OnDone(const grpc::Status& s) override {
    std::lock_guard<std::mutex> guard{mu_};
    status_ = s;
    done_ = true;
    cv_.notify_all();
  }

  bool ready() const {
    return ready_.load();
  }

  void cancel() {
    ctx_.TryCancel();
  }

  /// The stream's final status (once done), or nothing after the timeout.
  std::optional<grpc::Status> wait_done(std::chrono::seconds timeout) {
    std::unique_lock<std::mutex> lock{mu_};
    if (!cv_.wait_for(lock, timeout, [&] { return done_; }))
      return std::nullopt;
    return status_;
  }

  bool done() {
    std::lock_guard<std::mutex> guard{mu_};
    return done_;
  }

  const std::string& user() const {
    return user_;
  }

private:
  std::string user_;
  lag_tracker& tracker_;
  grpc::ClientContext ctx_;
  v1::WatchRequest req_;
  v1::DocumentChange msg_;
  std::atomic<bool> ready_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  grpc::Status status_;
};

class lag_probe {
public:
  explicit lag_probe(const options& o) : opt_(o) {
    for (auto& ch : open_channels(o.target, o.channels))
      query_stubs_.push_back(v1::QueryService::NewStub(ch));
    for (auto& ch : open_channels(o.command_target, 1))
      command_stubs_.push_back(v1::CommandService::NewStub(ch));
    std::random_device rd;
    run_id_ = std::to_string(rd() % 100000000);
  }

  bool run() {
    lag_tracker tracker;
    std::vector<std::unique_ptr<watch_reader>> streams;
    auto stride = std::max(1, opt_.users / opt_.lag_users);
    for (int i = 0; i < opt_.lag_users; ++i)
      streams.push_back(std::make_unique<watch_reader>(
        *query_stubs_[static_cast<std::size_t>(i) % query_stubs_.size()],
        opt_.prefix + std::to_string(i * stride), tracker));
    // Each stream subscribes before it reads the initial document, so its
    // arrival means the subscription is in place.
    auto ready_by = clock_type::now() + std::chrono::seconds(30);
    for (auto& s : streams)
      while (!s->ready()) {
        if (s->done() || clock_type::now() > ready_by) {
          std::fprintf(stderr,
                       "read_bench: the Watch stream of %s did not "
                       "open\n",
                       s->user().c_str());
          for (auto& t : streams)
            t->cancel();
          for (auto& t : streams)
            t->wait_done(std::chrono::seconds(10));
          return false;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    auto changes_before = tracker.changes();

    bench::in_flight flight;
    std::mutex mu;
    std::map<int, std::size_t> write_errors;
    auto cpu_start = bench::cpu_seconds();
    auto start = clock_type::now();
    auto window_begin
      = start + duration_cast<nanoseconds>(duration<double>(opt_.warmup_s));
    auto window_end
      = window_begin
        + duration_cast<nanoseconds>(duration<double>(opt_.duration_s));
    struct call {
      grpc::ClientContext ctx;
      v1::PostShoutRequest req;
      v1::CommandResult resp;
      clock_type::time_point intended;
    };
    auto interval = duration<double>(1.0 / opt_.lag_rate);
    uint64_t n = 0;
    for (;; ++n) {
      auto intended = start + duration_cast<nanoseconds>(interval * n);
      if (intended >= window_end)
        break;
      if (intended > clock_type::now())
        std::this_thread::sleep_until(intended);
      auto* c = new call;
      c->intended = intended;
      auto& author = streams[n % streams.size()]->user();
      c->req.set_command_id("lag-" + run_id_ + "-" + std::to_string(n));
      c->req.set_user_id(author);
      c->req.set_text("lag probe " + std::to_string(n));
      c->ctx.set_deadline(std::chrono::system_clock::now()
                          + std::chrono::milliseconds(opt_.deadline_ms));
      flight.up();
      bool counted = intended >= window_begin;
      command_stubs_.front()->async()->PostShout(
        &c->ctx, &c->req, &c->resp, [&, c, counted](grpc::Status s) {
          std::unique_ptr<call> owned{c};
          auto now = clock_type::now();
          if (s.ok()) {
            tracker.replied(owned->resp.global_position(), owned->intended, now,
                            counted);
          } else if (counted) {
            std::lock_guard<std::mutex> guard{mu};
            ++write_errors[static_cast<int>(s.error_code())];
          }
          owned.reset(); // before the count: see the closed loop
          flight.down();
        });
    }
    if (!flight.wait_zero(std::chrono::seconds(opt_.deadline_ms / 1000 + 30)))
      std::fprintf(stderr, "read_bench: %d posts still in flight\n",
                   static_cast<int>(flight.count()));
    tracker.wait_all(
      clock_type::now()
      + duration_cast<nanoseconds>(duration<double>(opt_.settle_s)));
    auto cpu = bench::cpu_seconds() - cpu_start;
    auto changes = tracker.changes() - changes_before;
    for (auto& s : streams)
      s->cancel();
    int ended_early = 0;
    for (auto& s : streams) {
      auto st = s->wait_done(std::chrono::seconds(10));
      if (st && st->error_code() != grpc::StatusCode::CANCELLED) {
        if (ended_early++ == 0)
          std::fprintf(stderr, "read_bench: a Watch stream ended: %d %s\n",
                       static_cast<int>(st->error_code()),
                       st->error_message().c_str());
      }
    }

    std::vector<int64_t> lower, upper, users_lag, timeline_lag, writes;
    int64_t samples = 0, missing_user = 0, missing_timeline = 0, early = 0;
    for (auto& [pos, o] : tracker.snapshot()) {
      if (!o.ours || !o.counted)
        continue;
      ++samples;
      writes.push_back(duration_cast<nanoseconds>(o.reply - o.sent).count());
      if (!o.user_seen)
        ++missing_user;
      if (!o.timeline_seen)
        ++missing_timeline;
      auto from_reply = [&](clock_type::time_point t) {
        return std::max<int64_t>(
          0, duration_cast<nanoseconds>(t - o.reply).count());
      };
      if (o.user_seen)
        users_lag.push_back(from_reply(*o.user_seen));
      if (o.timeline_seen)
        timeline_lag.push_back(from_reply(*o.timeline_seen));
      if (o.user_seen && o.timeline_seen) {
        auto visible = std::max(*o.user_seen, *o.timeline_seen);
        if (visible < o.reply)
          ++early;
        lower.push_back(from_reply(visible));
        upper.push_back(duration_cast<nanoseconds>(visible - o.sent).count());
      }
    }
    std::size_t failed = 0;
    for (auto& [code, k] : write_errors)
      failed += k;
    auto lo = bench::summarize(lower);
    auto up = bench::summarize(upper);
    auto us = bench::summarize(users_lag);
    auto tl = bench::summarize(timeline_lag);
    auto wr = bench::summarize(writes);
    std::printf("lag probe: %d Watch streams (user document + home "
                "timeline), %.1f posts/s, %.1f s measured after %.1f s "
                "warm-up\n",
                opt_.lag_users, opt_.lag_rate, opt_.duration_s, opt_.warmup_s);
    std::printf("  posts %lld (write errors %zu), changes received %lld\n",
                static_cast<long long>(samples), failed,
                static_cast<long long>(changes));
    std::printf("  never seen within %.0f s: user document %lld, timeline "
                "entry %lld\n",
                opt_.settle_s, static_cast<long long>(missing_user),
                static_cast<long long>(missing_timeline));
    std::printf("  write (send -> reply) ms: p50 %.3f  p99 %.3f  max %.3f\n",
                wr.p50, wr.p99, wr.max);
    std::printf("  lag, reply -> visible (lower bound) ms: p50 %.3f  p90 "
                "%.3f  p99 %.3f  max %.3f (%lld visible before the reply)\n",
                lo.p50, lo.p90, lo.p99, lo.max, static_cast<long long>(early));
    std::printf("  lag, send -> visible (upper bound) ms:  p50 %.3f  p90 "
                "%.3f  p99 %.3f  max %.3f\n",
                up.p50, up.p90, up.p99, up.max);
    std::printf("  by read model, reply -> arrival ms: user document p50 "
                "%.3f p99 %.3f; timeline entry p50 %.3f p99 %.3f\n",
                us.p50, us.p99, tl.p50, tl.p99);
    std::printf("RESULT mode=lag rate=%.1f probes=%d seconds=%.2f "
                "samples=%lld write_errors=%zu missing_user=%lld "
                "missing_timeline=%lld changes=%lld early=%lld "
                "lag_p50_ms=%.3f lag_p90_ms=%.3f lag_p99_ms=%.3f "
                "lag_max_ms=%.3f e2e_p50_ms=%.3f e2e_p90_ms=%.3f "
                "e2e_p99_ms=%.3f e2e_max_ms=%.3f user_p50_ms=%.3f "
                "user_p99_ms=%.3f timeline_p50_ms=%.3f timeline_p99_ms=%.3f "
                "write_p50_ms=%.3f write_p99_ms=%.3f streams_ended=%d "
                "cpu_s=%.2f\n",
                opt_.lag_rate, opt_.lag_users, opt_.duration_s,
                static_cast<long long>(samples), failed,
                static_cast<long long>(missing_user),
                static_cast<long long>(missing_timeline),
                static_cast<long long>(changes), static_cast<long long>(early),
                lo.p50, lo.p90, lo.p99, lo.max, up.p50, up.p90, up.p99, up.max,
                us.p50, us.p99, tl.p50, tl.p99, wr.p50, wr.p99, ended_early,
                cpu);
    std::fflush(stdout);
    return samples > 0 && !lower.empty();
  }

private:
  options opt_;
  std::vector<std::unique_ptr<v1::QueryService::Stub>> query_stubs_;
  std::vector<std::unique_ptr<v1::CommandService::Stub>> command_stubs_;
  std::string run_id_;
};

} // namespace

int main(int argc, char** argv) {
  auto opt = parse(argc, argv);
  if (opt.mode == "lag")
    return lag_probe{opt}.run() ? 0 : 1;
  return reads{opt}.run() ? 0 : 1;
}
