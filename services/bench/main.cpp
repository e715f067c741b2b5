// shoutflow-bench: load over gRPC against ShoutFlow, one JSON report.
// `shoutflow-bench --help` for the options; services/bench/report.hpp for the
// document; docs/benchmarks.md for how scripts/bench uses it.

#include <cstdio>
#include <fstream>
#include <string>

#include "services/bench/lib/machine.hpp"
#include "services/bench/load_runner.hpp"
#include "services/bench/options.hpp"
#include "services/bench/report.hpp"
#include "services/bench/target_pool.hpp"

using namespace shoutflow::bench;

namespace {

/// Writes the report where --json says; false when it cannot.
bool emit(const report& r) {
  auto json = to_json(r);
  if (!r.opt.quiet)
    std::fputs(to_summary(r).c_str(), stderr);
  if (r.opt.json_path.empty() || r.opt.json_path == "-") {
    std::fputs(json.c_str(), stdout);
    return std::fflush(stdout) == 0;
  }
  std::ofstream out{r.opt.json_path, std::ios::trunc};
  out << json;
  out.close();
  if (!out) {
    std::fprintf(stderr, "shoutflow-bench: cannot write %s\n",
                 r.opt.json_path.c_str());
    return false;
  }
  return true;
}

} // namespace

int main(int argc, char** argv) {
  report r;
  r.opt = parse_options(argc, argv);
  const auto& opt = r.opt;
  r.machine = read_machine();
  r.load_start = load_average();
  r.started_at = utc_timestamp();

  bool racing = opt.race > 0;
  bool writes = mix_writes(opt.mix) || opt.prepare || opt.ready_only || racing;
  bool reads = !racing
               && (mix_reads(opt.mix) || opt.probe_rate > 0 || opt.ready_only);
  target_pool pool{writes ? opt.command_targets : std::vector<std::string>{},
                   reads ? opt.query_targets : std::vector<std::string>{},
                   opt.channels};
  if (opt.wait_ready_s > 0) {
    std::string failed;
    if (!pool.wait_ready(std::chrono::milliseconds(
                           static_cast<int64_t>(opt.wait_ready_s * 1000)),
                         failed)) {
      std::fprintf(stderr,
                   "shoutflow-bench: %s is not serving after %.0f s (health "
                   "check)\n",
                   failed.c_str(), opt.wait_ready_s);
      return 1;
    }
  }
  if (opt.ready_only)
    return 0;
  if (opt.race > 0) {
    r.race = run_race(opt, pool);
    r.raced = true;
    r.load_end = load_average();
    r.finished_at = utc_timestamp();
    return emit(r) && r.race.ok > 0 ? 0 : 1;
  }

  load_runner runner{opt, pool};
  if (opt.prepare) {
    r.prepare = runner.prepare();
    if (!r.prepare.ok) {
      std::fprintf(stderr, "shoutflow-bench: prepare failed: %s\n",
                   r.prepare.error.c_str());
      r.load_end = load_average();
      r.finished_at = utc_timestamp();
      emit(r);
      return 1;
    }
  }
  if (!opt.prepare_only) {
    r.run = runner.run();
    r.ran = true;
  }
  r.load_end = load_average();
  r.finished_at = utc_timestamp();
  if (!emit(r))
    return 1;
  if (r.ran) {
    uint64_t ok = 0;
    for (auto& [op, s] : r.run.window)
      ok += s.ok;
    if (ok == 0) {
      std::fprintf(stderr, "shoutflow-bench: no request succeeded in the "
                           "measured window\n");
      return 1;
    }
  }
  return 0;
}
