#include "services/bench/report.hpp"

#include <cstdio>

#include "services/bench/lib/json_writer.hpp"

namespace shoutflow::bench {

namespace {

void write_list(json_writer& w, const std::string& key,
                const std::vector<std::string>& items) {
  w.key(key).begin_array();
  for (auto& i : items)
    w.value(i);
  w.end_array();
}

void write_load(json_writer& w, const std::string& key,
                const std::array<double, 3>& avg) {
  w.key(key).begin_array();
  for (double x : avg)
    w.value(x);
  w.end_array();
}

void write_latency(json_writer& w, const histogram& h) {
  auto p = percentiles_ms(h);
  w.key("latency_ms").begin_object();
  w.field("p50", p.p50).field("p90", p.p90).field("p99", p.p99);
  w.field("p999", p.p999).field("max", p.max).field("mean", p.mean);
  w.end_object();
}

void write_codes(json_writer& w, const std::map<std::string, uint64_t>& codes) {
  w.key("errors_by_code").begin_object();
  for (auto& [code, n] : codes)
    w.field(code, n);
  w.end_object();
}

} // namespace

std::string to_json(const report& r) {
  const auto& o = r.opt;
  json_writer w;
  w.begin_object();
  w.field("tool", "shoutflow-bench").field("version", 1);
  w.field("started_at", r.started_at).field("finished_at", r.finished_at);

  w.key("parameters").begin_object();
  write_list(w, "targets", o.command_targets);
  write_list(w, "query_targets", o.query_targets);
  w.field("mix", mix_name(o.mix));
  w.field("mode", o.rate > 0 ? "open" : "closed");
  w.field("rate", o.rate).field("inflight", o.inflight);
  w.field("duration_s", o.duration_s).field("warmup_s", o.warmup_s);
  w.field("users", o.users).field("follows", o.follows);
  w.field("seed_shouts", o.seed_shouts).field("page_size", o.page_size);
  w.field("probe_rate", o.probe_rate).field("prefix", o.prefix);
  w.field("run_id", o.run_id).field("label", o.label);
  w.field("channels", o.channels).field("deadline_ms", o.deadline_ms);
  w.field("prepare", o.prepare).field("prepare_only", o.prepare_only);
  w.field("prepare_inflight", o.prepare_inflight);
  w.field("max_outstanding", o.max_outstanding);
  w.end_object();

  w.key("machine").begin_object();
  w.field("nproc", r.machine.nproc).field("cpu_model", r.machine.cpu_model);
  w.field("kernel", r.machine.kernel).field("hostname", r.machine.hostname);
  w.field("memory_gib", r.machine.memory_gib);
  write_load(w, "load_avg_start", r.load_start);
  write_load(w, "load_avg_end", r.load_end);
  w.end_object();

  w.key("prepare").begin_object();
  w.key("phases").begin_array();
  for (auto& p : r.prepare.phases) {
    w.begin_object();
    w.field("name", p.name).field("requests", p.requests);
    w.field("duplicates", p.duplicates).field("failed", p.failed);
    w.field("seconds", p.seconds);
    w.end_object();
  }
  w.end_array();
  w.field("read_wait_s", r.prepare.read_wait_s).field("ok", r.prepare.ok);
  if (!r.prepare.error.empty())
    w.field("error", r.prepare.error);
  w.end_object();

  if (r.raced) {
    const auto& x = r.race;
    w.key("race").begin_object();
    w.field("calls", x.calls).field("one_handle", x.one_handle);
    w.field("ok", x.ok).field("already_exists", x.already_exists);
    w.key("errors_by_code").begin_object();
    for (auto& [code, n] : x.errors_by_code)
      w.field(code, n);
    w.end_object();
    w.field("p50_ms", x.p50_ms).field("max_ms", x.max_ms);
    w.field("seconds", x.seconds);
    w.end_object();
  }

  if (r.ran) {
    const auto& run = r.run;
    w.key("run").begin_object();
    w.field("mode", o.rate > 0 ? "open" : "closed");
    w.field("warmup_s", o.warmup_s).field("duration_s", o.duration_s);
    w.field("elapsed_s", run.elapsed_s).field("sent", run.sent);
    w.field("started_unix_ms", run.started_unix_ms);
    w.field("client_cpu_s", run.client_cpu_s);
    w.field("client_cpu_us_per_request",
            run.sent == 0
              ? 0.0
              : 1e6 * run.client_cpu_s / static_cast<double>(run.sent));
    w.end_object();

    uint64_t ok = 0, errors = 0;
    std::map<std::string, uint64_t> codes;
    for (auto& [op, s] : run.window) {
      if (op == op_kind::visible)
        continue; // probes ride on the load; not part of its throughput
      ok += s.ok;
      errors += s.errors;
      for (auto& [code, n] : s.errors_by_code)
        codes[code] += n;
    }
    w.key("totals").begin_object();
    w.field("ok", ok).field("errors", errors);
    w.field("throughput", static_cast<double>(ok) / o.duration_s);
    write_codes(w, codes);
    w.end_object();

    w.key("operations").begin_object();
    for (auto& [op, s] : run.window) {
      w.key(op_name(op)).begin_object();
      w.field("ok", s.ok).field("errors", s.errors);
      w.field("throughput", static_cast<double>(s.ok) / o.duration_s);
      write_codes(w, s.errors_by_code);
      write_latency(w, s.latency_ns);
      w.end_object();
    }
    w.end_object();

    w.key("series").begin_array();
    for (std::size_t t = 0; t < run.series.size(); ++t) {
      const auto& sec = run.series[t];
      uint64_t sok = 0, serr = 0;
      for (auto& [op, p] : sec.ops)
        if (op != op_kind::visible) {
          sok += p.ok;
          serr += p.errors;
        }
      w.begin_object();
      w.field("t", static_cast<uint64_t>(t)).field("ok", sok);
      w.field("errors", serr);
      w.key("ops").begin_object();
      for (auto& [op, p] : sec.ops) {
        w.key(op_name(op)).begin_object();
        w.field("ok", p.ok).field("errors", p.errors);
        w.field("p50_ms",
                static_cast<double>(p.latency_ns.percentile(0.5)) / 1e6);
        w.field("p99_ms",
                static_cast<double>(p.latency_ns.percentile(0.99)) / 1e6);
        w.field("max_ms", static_cast<double>(p.latency_ns.max()) / 1e6);
        w.end_object();
      }
      w.end_object();
      w.end_object();
    }
    w.end_array();
  }
  w.end_object();
  return w.str() + "\n";
}

std::string to_summary(const report& r) {
  std::string out;
  char buf[512];
  for (auto& p : r.prepare.phases)
    if (p.requests > 0) {
      std::snprintf(buf, sizeof buf,
                    "prepare %-13s %8llu in %6.1f s (%llu already applied, "
                    "%llu failed)\n",
                    p.name.c_str(), static_cast<unsigned long long>(p.requests),
                    p.seconds, static_cast<unsigned long long>(p.duplicates),
                    static_cast<unsigned long long>(p.failed));
      out += buf;
    }
  if (r.raced) {
    int errors = 0;
    for (auto& [code, n] : r.race.errors_by_code)
      errors += n;
    std::snprintf(buf, sizeof buf,
                  "race: %d RegisterUser at once, %s: %d ok, %d "
                  "ALREADY_EXISTS, %d other errors; p50 %.0f ms, slowest "
                  "%.0f ms\n",
                  r.race.calls,
                  r.race.one_handle ? "one handle" : "distinct handles",
                  r.race.ok, r.race.already_exists, errors, r.race.p50_ms,
                  r.race.max_ms);
    out += buf;
  }
  if (!r.ran)
    return out;
  const auto& o = r.opt;
  if (o.rate > 0)
    std::snprintf(buf, sizeof buf,
                  "%s mix, open loop at %.1f/s, %.1f s after %.1f s warm-up:\n",
                  mix_name(o.mix), o.rate, o.duration_s, o.warmup_s);
  else
    std::snprintf(buf, sizeof buf,
                  "%s mix, closed loop with %d in flight, %.1f s after %.1f s "
                  "warm-up:\n",
                  mix_name(o.mix), o.inflight, o.duration_s, o.warmup_s);
  out += buf;
  for (auto& [op, s] : r.run.window) {
    auto p = percentiles_ms(s.latency_ns);
    std::snprintf(buf, sizeof buf,
                  "  %-13s %9.1f/s ok %llu errors %llu  ms: p50 %.3f p90 %.3f "
                  "p99 %.3f p99.9 %.3f max %.3f\n",
                  op_name(op), static_cast<double>(s.ok) / o.duration_s,
                  static_cast<unsigned long long>(s.ok),
                  static_cast<unsigned long long>(s.errors), p.p50, p.p90,
                  p.p99, p.p999, p.max);
    out += buf;
    for (auto& [code, n] : s.errors_by_code) {
      std::snprintf(buf, sizeof buf, "    %s: %llu\n", code.c_str(),
                    static_cast<unsigned long long>(n));
      out += buf;
    }
  }
  return out;
}

} // namespace shoutflow::bench
