#pragma once

// What a node reports through gRPC health checking (grpc.health.v1.Health,
// served on the command, query and admin ports), for load balancers and
// Kubernetes probes (docs/operations.md):
//
//   ""  and each service's full name ("shoutflow.v1.CommandService", ...):
//       readiness.  NOT_SERVING ──joined, holds its share──▶ SERVING
//                        ▲                                   │
//                        └─── no membership round reached ◀──┘
//                             the database within a lease TTL
//       and NOT_SERVING for good from drain() on (SIGTERM).
//   "liveness": SERVING while the node's actor system runs; NOT_SERVING
//       when its scheduler has not run the health actor's tick for the
//       liveness timeout (a wedged node, worth a restart), and from stop().
//
// Readiness follows the keeper's views (published after every successful
// membership round): ready while this node's row is `up` and the last
// view is younger than the lease TTL. A watchdog thread, not an actor,
// judges liveness: a stuck scheduler could not judge itself.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <grpcpp/server.h>

namespace shoutflow::node {

struct health_config {
  /// How often readiness and the liveness tick are checked.
  std::chrono::milliseconds interval{500};
  /// No successful membership round for this long: not ready.
  std::chrono::milliseconds stale_after{3000};
  /// No health tick for this long: not live.
  std::chrono::milliseconds liveness_timeout{10000};
};

constexpr const char* liveness_service = "liveness";

class node_health {
public:
  explicit node_health(health_config cfg);
  ~node_health();

  node_health(const node_health&) = delete;
  node_health& operator=(const node_health&) = delete;

  /// Reports through `server`'s health service, for "" and `service` (its
  /// full name). Everything starts NOT_SERVING but liveness. Call before
  /// start().
  void add_server(grpc::Server* server, const std::string& service);

  /// Starts judging: spawns the actor that receives the keeper's views
  /// (returned: add it to the keeper's subscribers) and the watchdog.
  /// `self_node` is this node's id in those views.
  caf::actor start(caf::actor_system& sys, int32_t self_node);

  /// Sets readiness at once (the join's answer), until the next view.
  void set_ready(bool ready);

  /// SIGTERM: NOT_SERVING for good (liveness stays).
  void drain();

  /// Stops the actor and the watchdog; after it, the servers may go.
  void stop();

  /// Readiness as reported now (for logs and tests).
  bool ready() const;

  struct shared_state;

private:
  health_config cfg_;
  std::shared_ptr<shared_state> state_;
  caf::actor actor_;
  std::thread watchdog_;
};

} // namespace shoutflow::node
