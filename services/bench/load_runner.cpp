#include "services/bench/load_runner.hpp"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <functional>
#include <thread>

#include "services/bench/lib/in_flight.hpp"
#include "services/bench/lib/machine.hpp"
#include "services/common/status_code_name.hpp"

namespace shoutflow::bench {

namespace {

using clock_type = std::chrono::steady_clock;
using std::chrono::duration;
using std::chrono::duration_cast;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;

/// Waits until `flight` has none in flight, saying so every 10 s (every
/// request has a deadline, so this ends).
void drain(in_flight& flight, const char* what) {
  while (!flight.wait_zero(std::chrono::seconds(10)))
    std::fprintf(stderr, "shoutflow-bench: %s: %llu requests in flight\n", what,
                 static_cast<unsigned long long>(flight.count()));
}

template <class Req, class Resp>
struct call {
  grpc::ClientContext ctx;
  Req req;
  Resp resp;
};

/// Starts one unary call with the callback API. `start(ctx, req, resp, cb)`
/// invokes the stub; `done(status, req, resp)` runs on a gRPC thread. The
/// call's ClientContext is gone before `done` runs: `done` counts the call
/// finished, after which the runner may return and its channels go, and a
/// context freed after them was a double free at exit.
template <class Resp, class Req, class Start, class Done>
void unary(Req req, milliseconds deadline, Start start, Done done) {
  auto* c = new call<Req, Resp>;
  c->req = std::move(req);
  c->ctx.set_deadline(std::chrono::system_clock::now() + deadline);
  start(&c->ctx, &c->req, &c->resp,
        [c, done = std::move(done)](grpc::Status s) mutable {
          Req rq = std::move(c->req);
          Resp rs = std::move(c->resp);
          delete c;
          done(s, rq, rs);
        });
}

bool retryable(grpc::StatusCode code) {
  return code == grpc::StatusCode::UNAVAILABLE
         || code == grpc::StatusCode::DEADLINE_EXCEEDED;
}

std::mt19937_64& thread_rng() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return rng;
}

} // namespace

struct load_runner::impl {
  const options& opt;
  target_pool& pool;
  user_space users;
  shout_ids shouts;
  std::atomic<int64_t> max_position{0};
  std::string run_id;
  milliseconds deadline;

  impl(const options& o, target_pool& p)
    : opt(o), pool(p), users{o.prefix, o.users}, deadline(o.deadline_ms) {
    run_id = o.run_id;
    if (run_id.empty())
      run_id = std::to_string(std::random_device{}() % 1000000000);
  }

  void note(const v1::CommandResult& r) {
    auto pos = r.global_position();
    auto seen = max_position.load();
    while (pos > seen && !max_position.compare_exchange_weak(seen, pos))
      ;
    if (!r.shout_id().empty())
      shouts.add(r.shout_id(), r.global_position());
  }

  int random_user() {
    std::uniform_int_distribution<int> d{0, opt.users - 1};
    return d(thread_rng());
  }

  // ---------------------------------------------------------- prepare

  /// Sends `count` commands built by `build(i)` with K in flight, retrying
  /// transport failures with the same request (hence command id).
  template <class Req, class Build, class Start>
  phase_result
  phase(const char* name, uint64_t count, Build build, Start start) {
    phase_result r;
    r.name = name;
    r.requests = count;
    if (count == 0)
      return r;
    bool is_register = std::string{name} == "register_user";
    std::atomic<uint64_t> next{0}, duplicates{0}, failed{0};
    in_flight flight;
    auto t0 = clock_type::now();
    std::function<void()> issue_next;
    std::function<void(Req, int)> send;
    send = [&](Req req, int attempt) {
      unary<v1::CommandResult>(
        std::move(req), deadline,
        [&](auto* ctx, auto* rq, auto* rs, auto cb) {
          start(pool.command(), ctx, rq, rs, std::move(cb));
        },
        [&, attempt](const grpc::Status& s, Req& rq,
                     const v1::CommandResult& rs) {
          if (retryable(s.error_code()) && attempt + 1 < 5) {
            send(std::move(rq), attempt + 1);
            return;
          }
          if (s.ok()) {
            if (rs.duplicate())
              ++duplicates;
            note(rs);
          } else if (is_register
                     && s.error_code() == grpc::StatusCode::ALREADY_EXISTS) {
            // Registered by an earlier run under another command id.
            ++duplicates;
          } else if (failed++ < 5) {
            std::fprintf(stderr, "shoutflow-bench: %s %s: %s %s\n", name,
                         rq.user_id().c_str(),
                         services::status_code_name(s.error_code()).c_str(),
                         s.error_message().c_str());
          }
          issue_next();
          flight.down();
        });
    };
    issue_next = [&] {
      auto i = next++;
      if (i >= count)
        return;
      flight.up();
      send(build(i), 0);
    };
    for (int k = 0; k < opt.prepare_inflight; ++k)
      issue_next();
    drain(flight, name);
    r.duplicates = duplicates;
    r.failed = failed;
    r.seconds = duration<double>(clock_type::now() - t0).count();
    return r;
  }

  prepare_result prepare() {
    prepare_result out;
    auto n = static_cast<uint64_t>(opt.users);
    out.phases.push_back(phase<v1::RegisterUserRequest>(
      "register_user", n,
      [&](uint64_t i) {
        v1::RegisterUserRequest req;
        auto index = static_cast<int>(i);
        auto id = users.user_id(index);
        req.set_command_id("reg-" + id);
        req.set_user_id(id);
        req.set_handle(users.handle(index));
        req.set_display_name("Bench User " + std::to_string(i));
        req.set_email(id + "@bench.example.com");
        req.set_password("bench password " + std::to_string(i));
        return req;
      },
      [](v1::CommandService::Stub& stub, auto* ctx, auto* req, auto* resp,
         auto cb) {
        stub.async()->RegisterUser(ctx, req, resp, std::move(cb));
      }));
    auto follows = static_cast<uint64_t>(opt.follows);
    out.phases.push_back(phase<v1::FollowRequest>(
      "follow", n * follows,
      [&](uint64_t j) {
        auto i = static_cast<int>(j / follows);
        auto k = static_cast<int>(j % follows);
        auto target = users.user_id(users.follow_target(i, k, opt.follows));
        v1::FollowRequest req;
        req.set_command_id("fol-" + users.user_id(i) + "-" + target);
        req.set_user_id(users.user_id(i));
        req.set_target_user_id(target);
        return req;
      },
      [](v1::CommandService::Stub& stub, auto* ctx, auto* req, auto* resp,
         auto cb) { stub.async()->Follow(ctx, req, resp, std::move(cb)); }));
    auto seeds = static_cast<uint64_t>(opt.seed_shouts);
    out.phases.push_back(phase<v1::PostShoutRequest>(
      "seed_shout", n * seeds,
      [&](uint64_t j) {
        auto i = static_cast<int>(j / seeds);
        auto id = users.user_id(i);
        v1::PostShoutRequest req;
        req.set_command_id("seed-" + id + "-" + std::to_string(j % seeds));
        req.set_user_id(id);
        req.set_text("seed shout " + std::to_string(j % seeds) + " of " + id);
        return req;
      },
      [](v1::CommandService::Stub& stub, auto* ctx, auto* req, auto* resp,
         auto cb) { stub.async()->PostShout(ctx, req, resp, std::move(cb)); }));
    for (auto& p : out.phases)
      if (p.failed > 0) {
        out.ok = false;
        out.error = std::to_string(p.failed) + " " + p.name
                    + " requests failed";
        return out;
      }
    if (mix_reads(opt.mix) && pool.has_queries())
      wait_read_models(out);
    return out;
  }

  /// Waits until every query target's read models have applied the
  /// prepare's last write: the first read of the load then finds them.
  void wait_read_models(prepare_result& out) {
    auto t0 = clock_type::now();
    auto give_up = t0 + std::chrono::seconds(300);
    for (auto* stub : pool.query_per_target()) {
      for (;;) {
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + deadline);
        v1::GetUserRequest req;
        req.set_user_id(users.user_id(0));
        req.set_min_position(max_position.load());
        v1::UserView view;
        auto s = stub->GetUser(&ctx, req, &view);
        if (s.ok())
          break;
        if (!retryable(s.error_code()) || clock_type::now() >= give_up) {
          out.ok = false;
          out.error = "read models did not reach position "
                      + std::to_string(max_position.load()) + ": "
                      + services::status_code_name(s.error_code()) + " "
                      + s.error_message();
          return;
        }
      }
    }
    out.read_wait_s = duration<double>(clock_type::now() - t0).count();
  }

  // -------------------------------------------------------------- load

  struct run_state {
    recorder rec;
    op_picker picker;
    in_flight flight;
    std::atomic<bool> stopping{false};
    std::atomic<uint64_t> sent{0};
    std::atomic<int64_t> next_probe_ns{0};
    clock_type::time_point start, window_begin, window_end;
    bool open_loop;
    std::function<void(clock_type::time_point, bool)> issue;

    run_state(clock_type::time_point s, mix_kind m)
      : rec(s), picker(m), start(s) {
    }

    bool in_window(clock_type::time_point t) const {
      return t >= window_begin && t < window_end;
    }
  };

  /// Follows an acknowledged PostShout with a GetShout that waits for its
  /// position: the time from the acknowledgement until a read model shows
  /// the write ("visible"), at most probe_rate times a second.
  void maybe_probe(run_state& st, const v1::CommandResult& r,
                   clock_type::time_point acked) {
    if (opt.probe_rate <= 0 || r.shout_id().empty())
      return;
    auto now_ns = duration_cast<nanoseconds>(acked - st.start).count();
    auto due = st.next_probe_ns.load();
    auto interval = static_cast<int64_t>(1e9 / opt.probe_rate);
    if (now_ns < due
        || !st.next_probe_ns.compare_exchange_strong(due, now_ns + interval))
      return;
    v1::GetShoutRequest req;
    req.set_shout_id(r.shout_id());
    req.set_min_position(r.global_position());
    st.flight.up();
    ++st.sent;
    unary<v1::ShoutView>(
      std::move(req), deadline,
      [&](auto* ctx, auto* rq, auto* rs, auto cb) {
        pool.query().async()->GetShout(ctx, rq, rs, std::move(cb));
      },
      [&st, acked](const grpc::Status& s, auto&, auto&) {
        auto done = clock_type::now();
        st.rec.add(op_kind::visible, done - acked, s.ok(), s.error_code(),
                   st.in_window(acked), done);
        st.flight.down();
      });
  }

  /// Sends one operation; `finish(ok, code)` runs when it completes.
  template <class Finish>
  void send(run_state& st, op_kind op, uint64_t n, Finish finish) {
    auto& rng = thread_rng();
    switch (op) {
      case op_kind::post_shout: {
        v1::PostShoutRequest req;
        req.set_command_id("ps-" + run_id + "-" + std::to_string(n));
        req.set_user_id(users.user_id(random_user()));
        // The text of the earlier write_bench, so payloads (and the pgbench
        // baseline sized after them) stay comparable across runs.
        req.set_text("shout " + std::to_string(n)
                     + " from the write benchmark client");
        unary<v1::CommandResult>(
          std::move(req), deadline,
          [&](auto* ctx, auto* rq, auto* rs, auto cb) {
            pool.command().async()->PostShout(ctx, rq, rs, std::move(cb));
          },
          [this, &st, finish](const grpc::Status& s, auto&,
                              const v1::CommandResult& r) {
            if (s.ok()) {
              shouts.add(r.shout_id(), r.global_position());
              maybe_probe(st, r, clock_type::now());
            }
            finish(s.ok(), s.error_code());
          });
        return;
      }
      case op_kind::get_timeline: {
        v1::GetTimelineRequest req;
        req.set_user_id(users.user_id(random_user()));
        req.set_page_size(opt.page_size);
        unary<v1::TimelinePage>(
          std::move(req), deadline,
          [&](auto* ctx, auto* rq, auto* rs, auto cb) {
            pool.query().async()->GetTimeline(ctx, rq, rs, std::move(cb));
          },
          [finish](const grpc::Status& s, auto&, auto&) {
            finish(s.ok(), s.error_code());
          });
        return;
      }
      case op_kind::get_shout: {
        v1::GetShoutRequest req;
        if (auto shout = shouts.any(rng)) {
          req.set_shout_id(shout->id);
          req.set_min_position(shout->position);
        }
        unary<v1::ShoutView>(
          std::move(req), deadline,
          [&](auto* ctx, auto* rq, auto* rs, auto cb) {
            pool.query().async()->GetShout(ctx, rq, rs, std::move(cb));
          },
          [finish](const grpc::Status& s, auto&, auto&) {
            finish(s.ok(), s.error_code());
          });
        return;
      }
      case op_kind::get_user:
      case op_kind::floor: {
        bool floor = op == op_kind::floor;
        v1::GetUserRequest req;
        // "!" is outside the user id alphabet: rejected at validation.
        req.set_user_id(floor ? "!" + std::to_string(n)
                              : users.user_id(random_user()));
        unary<v1::UserView>(
          std::move(req), deadline,
          [&](auto* ctx, auto* rq, auto* rs, auto cb) {
            pool.query().async()->GetUser(ctx, rq, rs, std::move(cb));
          },
          [finish, floor](const grpc::Status& s, auto&, auto&) {
            bool ok = floor
                        ? s.error_code() == grpc::StatusCode::INVALID_ARGUMENT
                        : s.ok();
            finish(ok, s.error_code());
          });
        return;
      }
      default:
        std::abort(); // not a load operation: picker's closed set
    }
  }

  run_result run() {
    run_result out;
    auto cpu0 = cpu_seconds();
    run_state st{clock_type::now(), opt.mix};
    out.started_unix_ms = duration_cast<milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    st.open_loop = opt.rate > 0;
    st.window_begin
      = st.start + duration_cast<nanoseconds>(duration<double>(opt.warmup_s));
    st.window_end
      = st.window_begin
        + duration_cast<nanoseconds>(duration<double>(opt.duration_s));
    bool no_shouts = shouts.size() == 0;
    st.issue = [&](clock_type::time_point intended, bool chain) {
      auto op = st.picker.pick(thread_rng());
      // No shout known yet (no seeds): read a user instead, recorded as such.
      if (op == op_kind::get_shout && no_shouts && shouts.size() == 0)
        op = op_kind::get_user;
      auto n = st.sent++;
      st.flight.up();
      send(st, op, n,
           [&st, op, intended, chain](bool ok, grpc::StatusCode code) {
             auto done = clock_type::now();
             bool counted = st.open_loop ? st.in_window(intended)
                                         : st.in_window(done);
             st.rec.add(op, done - intended, ok, code, counted, done);
             if (chain && !st.stopping.load() && done < st.window_end)
               st.issue(clock_type::now(), true);
             st.flight.down();
           });
    };
    if (!st.open_loop) {
      for (int k = 0; k < opt.inflight; ++k)
        st.issue(clock_type::now(), true);
      std::this_thread::sleep_until(st.window_end);
    } else {
      auto interval = duration<double>(1.0 / opt.rate);
      for (uint64_t i = 0;; ++i) {
        auto intended = st.start + duration_cast<nanoseconds>(interval * i);
        if (intended >= st.window_end)
          break;
        if (intended > clock_type::now())
          std::this_thread::sleep_until(intended);
        while (!st.flight.wait_below(static_cast<uint64_t>(opt.max_outstanding),
                                     std::chrono::seconds(10))) {
        }
        st.issue(intended, false);
      }
    }
    st.stopping = true;
    drain(st.flight, "draining");
    out.elapsed_s = duration<double>(clock_type::now() - st.start).count();
    out.client_cpu_s = cpu_seconds() - cpu0;
    out.sent = st.sent;
    out.window = st.rec.window();
    out.series = st.rec.series();
    return out;
  }
};

load_runner::load_runner(const options& opt, target_pool& pool)
  : impl_(std::make_unique<impl>(opt, pool)) {
}

load_runner::~load_runner() = default;

prepare_result load_runner::prepare() {
  return impl_->prepare();
}

run_result load_runner::run() {
  return impl_->run();
}

} // namespace shoutflow::bench
