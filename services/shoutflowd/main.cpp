// shoutflowd: one ShoutFlow node. With no arguments: every role, against the
// local development database (see --help for every setting).
//
// SIGTERM/SIGINT: hand everything off and stop within --shutdown-grace.
//
// Exit codes: 0 after a clean SIGTERM/SIGINT shutdown, 1 when start-up
// fails, 2 for invalid configuration.

#include <absl/synchronization/mutex.h>
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <iostream>

#include "actors/common/log.hpp"
#include "actors/journal/migrations.hpp"
#include "services/node/node.hpp"

int main(int argc, char** argv) {
  using namespace shoutflow;
  // Block the shutdown signals before any thread starts, so every thread
  // inherits the mask and only sigwait below sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  // Debian builds Abseil without NDEBUG, so every absl::Mutex lock (gRPC
  // takes many per call) went through the deadlock detector: its graph
  // bookkeeping under one process-wide lock was 3.4 % of the node's samples
  // serving GetTimeline (issue 14 profile). The tests keep the detector.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  std::vector<std::string> args(argv + 1, argv + argc);
  auto parsed = node::parse_config(args, node::process_env);
  if (parsed.help) {
    std::cout << parsed.message;
    return 0;
  }
  if (!parsed.config) {
    std::cerr << "shoutflowd: " << parsed.message << "\n";
    return 2;
  }
  auto& cfg = *parsed.config;
  set_log_level(cfg.log_level);
  set_log_format(cfg.log_format);
  set_log_node("node-" + std::to_string(cfg.node_id));

  if (cfg.migrate_only) {
    try {
      auto report = journal::migrate(cfg.db_url);
      log_info("shoutflowd",
               "migrations applied: " + std::to_string(report.applied)
                 + ", schema version "
                 + std::to_string(report.current_version));
      return 0;
    } catch (const std::exception& e) {
      log_error("shoutflowd", e.what());
      return 1;
    }
  }

  node::node n{cfg};
  try {
    n.start();
  } catch (const std::exception& e) {
    log_error("shoutflowd", std::string{"start-up failed: "} + e.what());
    return 1;
  }
  int sig = 0;
  sigwait(&signals, &sig);
  log_info("shoutflowd", std::string{"received "}
                           + (sig == SIGTERM ? "SIGTERM" : "SIGINT")
                           + ": shutting down");
  n.shutdown(cfg.shutdown_grace);
  return 0;
}
