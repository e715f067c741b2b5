#pragma once

// One ShoutFlow node: the actor system, the journal and store, the entity
// runtime (resolver, shard region, router), the gRPC servers and the
// metrics endpoint, assembled from a node_config. shoutflowd is main() around
// this class; integration tests run it in-process.
//
// Start-up:  migrate → read-model generations → actors → CAF endpoint
//            published → join the cluster (membership row, joining) → the
//            keeper's rounds until this node holds its share (up) → health
//            SERVING (services/node/health.hpp; the gRPC servers listen
//            from before the join, NOT_SERVING).
// Shutdown:  health NOT_SERVING → the drain delay (everything still
//            served) → leave: hand every shard and partition off
//            (commands meanwhile go to their new owners) → stop accepting
//            and drain in-flight RPCs → drain the journal (every accepted
//            write committed) → delete the member row → stop actors.

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <grpcpp/server.h>
#include <prometheus/exposer.h>
#include <prometheus/registry.h>

#include "actors/cluster/cluster_actors.hpp"
#include "actors/cluster/membership.hpp"
#include "actors/cluster/peers.hpp"
#include "actors/common/clock.hpp"
#include "actors/common/id_generator.hpp"
#include "actors/entity/entity_actors.hpp"
#include "actors/journal/journal_actors.hpp"
#include "actors/projection/manager.hpp"
#include "actors/projection/watch_hub.hpp"
#include "services/node/health.hpp"
#include "services/node/node_config.hpp"
#include "services/node/node_metrics.hpp"
#include "services/query/query_workers.hpp"

namespace shoutflow::services {
class admin_service;
class command_service;
class query_service;
} // namespace shoutflow::services

namespace shoutflow::node {

class node {
public:
  /// `clk` (for tests) must outlive the node; null: the system clock.
  explicit node(node_config cfg, const clock* clk = nullptr);
  ~node();

  node(const node&) = delete;
  node& operator=(const node&) = delete;

  /// Throws std::runtime_error with a message naming what failed.
  void start();

  /// Graceful stop; idempotent. In-flight RPCs get up to `grace`.
  void shutdown(std::chrono::milliseconds grace = std::chrono::seconds(10));

  /// Bound ports (after start; 0 when the server is not running).
  int command_port() const {
    return command_port_;
  }
  int query_port() const {
    return query_port_;
  }
  int admin_port() const {
    return admin_port_;
  }
  int metrics_port() const {
    return metrics_port_;
  }
  int caf_port() const {
    return caf_port_;
  }
  /// Readiness as gRPC health checking reports it ("" service).
  bool ready() const {
    return health_ && health_->ready();
  }
  /// This process's token in the membership table.
  const std::string& incarnation() const {
    return incarnation_;
  }

  const node_config& config() const {
    return cfg_;
  }
  caf::actor_system& system() {
    return *system_;
  }
  prometheus::Registry& registry() {
    return *metrics_->registry;
  }
  entity::router_actor router() const {
    return router_;
  }
  entity::region_actor region() const {
    return region_;
  }
  journal::journal_actor journal() const {
    return journal_;
  }
  journal::store_actor store() const {
    return store_;
  }
  /// Invalid without the projections role.
  projection::manager_actor projections() const {
    return manager_;
  }
  cluster::keeper_actor keeper() const {
    return keeper_;
  }
  /// Invalid without the query role.
  projection::hub_actor hub() const {
    return hub_;
  }

private:
  /// Publishes the CAF endpoint, registers in the membership table and
  /// waits (bounded) until this node holds its share. Throws.
  void join_cluster();

  node_config cfg_;
  system_clock system_clock_;
  const clock* clock_;
  std::unique_ptr<snowflake_generator> ids_;
  std::unique_ptr<node_metrics> metrics_;
  std::unique_ptr<caf::actor_system_config> actor_cfg_;
  std::unique_ptr<caf::actor_system> system_;
  journal::journal_actor journal_;
  journal::store_actor store_;
  entity::resolver_actor resolver_;
  entity::region_actor region_;
  entity::router_actor router_;
  std::string incarnation_;
  std::unique_ptr<cluster::membership_table> membership_;
  cluster::peers_actor peers_;
  caf::actor endpoint_;
  cluster::keeper_actor keeper_;
  std::unique_ptr<services::command_service> command_service_;
  std::unique_ptr<grpc::Server> command_server_;
  projection::hub_actor hub_;
  /// First timeline pages kept in memory (null: none, or no query role).
  std::shared_ptr<projection::page_cache> pages_;
  projection::manager_actor manager_;
  /// Samples projection lag for the metrics (projections role).
  caf::actor lag_probe_;
  std::vector<projection::projection_ptr> projections_;
  std::shared_ptr<services::query_pool> query_pool_;
  services::query_actor query_workers_;
  std::unique_ptr<services::query_service> query_service_;
  std::unique_ptr<grpc::Server> query_server_;
  std::unique_ptr<services::admin_service> admin_service_;
  std::unique_ptr<grpc::Server> admin_server_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::unique_ptr<node_health> health_;
  prometheus::Counter* continuity_violations_ = nullptr;
  int command_port_ = 0;
  int query_port_ = 0;
  int admin_port_ = 0;
  int metrics_port_ = 0;
  int caf_port_ = 0;
  bool started_ = false;
  bool stopped_ = false;
};

} // namespace shoutflow::node
