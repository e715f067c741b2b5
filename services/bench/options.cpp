#include "services/bench/options.hpp"

#include <algorithm>

#include "services/bench/lib/flags.hpp"

namespace shoutflow::bench {

namespace {

constexpr program cli{"shoutflow-bench",
                      R"(usage: shoutflow-bench [options]

Load over gRPC against one ShoutFlow node or a cluster, with a prepare
phase, a warm-up and a measured window; one JSON report (docs/benchmarks.md).

targets
  --targets HOST:PORT,...        CommandService addresses, used round robin
                                 (default 127.0.0.1:50051)
  --query-targets HOST:PORT,...  QueryService addresses (default 127.0.0.1:50052)
  --channels C                   HTTP/2 connections per target (default 2)
  --wait-ready S                 wait up to S s for every target's health to
                                 say SERVING (default 30; 0: do not check)
load
  --mix NAME        write, timeline, post, get-user, get-timeline, get-shout,
                    floor (default write; see services/bench/workload.hpp)
  --inflight K      closed loop: K requests always in flight (default 64)
  --rate R          open loop instead: R requests/s scheduled at fixed
                    intervals whatever the server does; latency is measured
                    from the scheduled time (no coordinated omission)
  --duration S      measured seconds (default 20)
  --warmup S        seconds before the measured window (default 3)
  --deadline-ms MS  per-request deadline (default 10000)
  --probe-rate R    R acknowledged PostShouts per second are followed by a
                    GetShout with min_position: op "visible", ack -> visible
  --page-size N     GetTimeline page size (default 20)
  --max-outstanding N  open loop: requests in flight at most (default 20000)
prepare (idempotent: command ids derive from user ids)
  --users N         users <prefix>0..N-1 registered (default 10000)
  --follows F       follows per user (default 0; the timeline mix: 10)
  --seed-shouts S   shouts per user (default 0; the timeline mix: 1)
  --prefix STR      user id prefix (default bench-user-)
  --prepare-inflight K  requests in flight while preparing (default 64)
  --no-prepare      skip it (the users exist already)
  --prepare-only    prepare, report, and stop
  --ready-only      wait until every target is ready (--wait-ready), exit 0
                    when it is, 1 when not; no load, no report
race (instead of prepare and load; services/bench/race.hpp)
  --race N          N RegisterUser calls at once for ONE new handle, distinct
                    user ids; reports how many won, were ALREADY_EXISTS or
                    failed otherwise, and the slowest answer
  --race-distinct   the baseline: the same N calls with N distinct handles
output
  --run-id STR      part of the load's command ids (default: random)
  --label STR       free text recorded in the report
  --json PATH       the report (default: stdout); a summary goes to stderr
  --quiet           no summary on stderr
  --help            this text

exit status: 0 done, 1 runtime failure (cannot connect, prepare failed,
nothing succeeded), 2 usage error
)"};

} // namespace

options parse_options(int argc, char** argv) {
  options o;
  bool follows_set = false, seeds_set = false;
  flags flag{cli, argc, argv};
  while (flag.next()) {
    const auto& name = flag.name();
    if (name == "targets" || name == "command-targets")
      o.command_targets = flag.list();
    else if (name == "query-targets")
      o.query_targets = flag.list();
    else if (name == "channels")
      o.channels = flag.integer<int>(1, 64);
    else if (name == "wait-ready")
      o.wait_ready_s = flag.number(0, 3600);
    else if (name == "mix") {
      auto m = parse_mix(flag.text());
      if (!m)
        flag.invalid(std::string{"unknown mix (one of "} + mix_names() + ")");
      o.mix = *m;
    } else if (name == "inflight")
      o.inflight = flag.integer<int>(1, 100000);
    else if (name == "rate")
      o.rate = flag.number(0.1, 1e7);
    else if (name == "duration")
      o.duration_s = flag.number(0.1, 86400);
    else if (name == "warmup")
      o.warmup_s = flag.number(0, 3600);
    else if (name == "deadline-ms")
      o.deadline_ms = flag.integer<int>(1, 600000);
    else if (name == "probe-rate")
      o.probe_rate = flag.number(0, 1e6);
    else if (name == "page-size")
      o.page_size = flag.integer<int>(1, 1000);
    else if (name == "max-outstanding")
      o.max_outstanding = flag.integer<int>(1, 10000000);
    else if (name == "users")
      o.users = flag.integer<int>(1, 1e9);
    else if (name == "follows") {
      o.follows = flag.integer<int>(0, 100000);
      follows_set = true;
    } else if (name == "seed-shouts") {
      o.seed_shouts = flag.integer<int>(0, 100000);
      seeds_set = true;
    } else if (name == "prefix") {
      o.prefix = flag.text();
      if (o.prefix.empty() || o.prefix.size() > 48)
        flag.invalid("must have 1 to 48 characters");
    } else if (name == "prepare-inflight")
      o.prepare_inflight = flag.integer<int>(1, 10000);
    else if (name == "no-prepare")
      o.prepare = false;
    else if (name == "prepare-only")
      o.prepare_only = true;
    else if (name == "ready-only")
      o.ready_only = true;
    else if (name == "run-id")
      o.run_id = flag.text();
    else if (name == "label")
      o.label = flag.text();
    else if (name == "json")
      o.json_path = flag.text();
    else if (name == "quiet")
      o.quiet = true;
    else if (name == "race")
      o.race = flag.integer<int>(1, 100000);
    else if (name == "race-distinct")
      o.race_distinct = true;
    else
      flag.unknown();
  }
  if (o.mix == mix_kind::timeline) {
    if (!follows_set)
      o.follows = std::min(10, o.users - 1);
    if (!seeds_set)
      o.seed_shouts = 1;
  }
  if (o.follows >= o.users)
    cli.usage_error("--follows must be below --users (nobody follows "
                    "themselves)");
  if (!o.prepare && o.prepare_only)
    cli.usage_error("--no-prepare and --prepare-only contradict each other");
  if (o.race_distinct && o.race == 0)
    cli.usage_error("--race-distinct needs --race N");
  if (o.probe_rate > 0 && !mix_writes(o.mix))
    cli.usage_error("--probe-rate needs a mix that posts shouts");
  return o;
}

} // namespace shoutflow::bench
