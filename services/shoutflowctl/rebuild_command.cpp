// `shoutflowctl rebuild NAME`: starts a rebuild of a projection
// (AdminService/RebuildProjection) and follows it through
// GetProjectionStatus until the new generation is live.
//
// How it ends. The node replays the log into generation G beside the live
// one and swaps G in once it has caught up (actors/projection/manager.hpp).
// GetProjectionStatus lists live and building generations only, so:
//   G listed as live                       -> done (exit 0)
//   G listed, building                     -> progress
//   G not listed, and G is not live        -> abandoned (exit 5): its
//     builder stopped and a node starting later retired it
// A status poll that fails is retried until --timeout has passed without a
// good one; then exit 3 (the rebuild may well go on without us).

#include <unistd.h>

#include <iostream>
#include <thread>

#include "services/shoutflowctl/client.hpp"
#include "services/shoutflowctl/commands.hpp"
#include "services/shoutflowctl/output.hpp"
#include "services/shoutflowctl/progress.hpp"
#include "services/shoutflowctl/projection_lookup.hpp"

namespace shoutflow::ctl {

namespace {

constexpr const char* name = "rebuild";
constexpr auto poll_every = std::chrono::milliseconds(250);

using steady = std::chrono::steady_clock;

double seconds_since(steady::time_point t) {
  return std::chrono::duration<double>(steady::now() - t).count();
}

exit_code follow(const global_options& g, admin_client& client,
                 const std::string& projection, int32_t generation,
                 int32_t previous, std::chrono::milliseconds interval) {
  bool json = g.output == output_format::json;
  bool terminal = !json && isatty(STDOUT_FILENO) == 1;
  progress_meter meter{std::cout, terminal, interval,
                       projection + " g" + std::to_string(generation)};
  auto started = steady::now();
  auto last_good = started;
  for (;;) {
    v1::ProjectionStatus status;
    auto s = client.call(&v1::AdminService::Stub::GetProjectionStatus,
                         v1::GetProjectionStatusRequest{}, &status);
    if (!s.ok()) {
      if (steady::now() - last_good < g.timeout
          && exit_code_of(s.error_code()) == exit_code::unreachable) {
        std::this_thread::sleep_for(poll_every);
        continue;
      }
      meter.finish("");
      std::cerr << "shoutflowctl: rebuild: lost track of " << projection
                << " generation " << generation
                << "; it may still be running (see 'shoutflowctl "
                   "projections "
                << projection << "')\n";
      return report(name, client.address(), s);
    }
    last_good = steady::now();
    auto* gen = find_generation(status, projection, generation);
    if (gen != nullptr && gen->state() == "live") {
      if (json) {
        print_json(std::cout, *gen);
      } else {
        meter.finish(projection + ": generation " + std::to_string(generation)
                     + " is live (replayed "
                     + std::to_string(gen->events_applied()) + " events in "
                     + format_seconds(seconds_since(started)) + "; generation "
                     + std::to_string(previous) + " retired)");
      }
      return exit_code::ok;
    }
    if (gen == nullptr) {
      auto live = live_generation(status, projection);
      meter.finish("");
      return fail(name, exit_code::failed,
                  projection + " generation " + std::to_string(generation)
                    + " was abandoned before it went live; the live "
                      "generation is "
                    + (live ? std::to_string(*live) : std::string{"none"})
                    + " (a builder that stopped is abandoned by the next "
                      "node start: run the rebuild again)");
    }
    if (!json)
      meter.update(gen->events_applied(),
                   gen->events_applied() + gen->lag_events(), gen->state());
    std::this_thread::sleep_for(poll_every);
  }
}

exit_code run(const global_options& g, const parsed_args& args) {
  auto& projection = args.positionals[0];
  auto interval = std::chrono::milliseconds(2000);
  if (auto text = args.value("--interval")) {
    auto d = parse_duration(*text);
    if (!d)
      return usage_error(name, "--interval: expected a positive duration "
                               "such as 2 or 500ms, got '"
                                 + *text + "'");
    interval = *d;
  }
  admin_client client{g};
  // Checked here, so an unknown name is a clear "not found" listing the
  // known ones rather than the node's generic refusal.
  v1::ProjectionStatus status;
  auto s = client.call(&v1::AdminService::Stub::GetProjectionStatus,
                       v1::GetProjectionStatusRequest{}, &status);
  if (!s.ok())
    return report(name, client.address(), s);
  if (auto r = check_projection(name, status, projection); r != exit_code::ok)
    return r;
  auto previous = live_generation(status, projection).value_or(0);

  v1::RebuildProjectionRequest req;
  req.set_projection(projection);
  v1::RebuildProjectionResponse resp;
  s = client.call(&v1::AdminService::Stub::RebuildProjection, req, &resp);
  if (!s.ok())
    return report(name, client.address(), s);
  if (args.has("--no-wait")) {
    if (g.output == output_format::json)
      print_json(std::cout, resp);
    else
      std::cout << projection << ": rebuilding into generation "
                << resp.generation() << " (follow with 'shoutflowctl "
                << "projections " << projection << "')\n";
    return exit_code::ok;
  }
  if (g.output == output_format::text)
    std::cout << projection << ": rebuilding into generation "
              << resp.generation() << " while generation " << previous
              << " serves" << std::endl;
  return follow(g, client, projection, resp.generation(), previous, interval);
}

} // namespace

command_spec rebuild_command() {
  command_spec c;
  c.name = name;
  c.synopsis = "rebuild NAME [--no-wait] [--interval DURATION] "
               "[--output text|json]";
  c.summary = "rebuild a projection from the log and follow it until it is "
              "live";
  c.details
    = "The node replays the whole log into a new generation while the live\n"
      "one keeps serving, then swaps it in. Progress goes to stdout: on a\n"
      "terminal a bar with rate and ETA, redrawn in place; otherwise one\n"
      "plain line every --interval. With --output json there is no progress,\n"
      "only the new live generation (a ProjectionGeneration) at the end.\n"
      "Exits 0 once the new generation is live, 4 for an unknown NAME, 5 if\n"
      "the rebuild was abandoned, 3 if the node stopped answering (the\n"
      "rebuild may still run). Interrupting shoutflowctl does not stop the\n"
      "rebuild. Point-in-time builds (until a position or a time) are for\n"
      "'shoutflowctl call RebuildProjection'.";
  c.flags = {{"--no-wait", "", "start the rebuild, print its generation, exit"},
             {"--interval", "DURATION",
              "time between plain progress lines (default 2s)"}};
  c.positionals = {"NAME"};
  c.run = run;
  return c;
}

} // namespace shoutflow::ctl
