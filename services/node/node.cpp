#include "services/node/node.hpp"

#include <caf/all.hpp>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include <stdexcept>
#include <thread>

#include "actors/common/log.hpp"
#include "actors/common/password_hasher.hpp"
#include "actors/entity/fact_resolver.hpp"
#include "actors/entity/persistent_entity.hpp"
#include "actors/entity/router.hpp"
#include "actors/entity/shard_region.hpp"
#include "actors/journal/migrations.hpp"
#include "actors/journal/pg_journal.hpp"
#include "actors/journal/pg_store.hpp"
#include "actors/user/user_aggregate.hpp"
#include "actors/read_models/shouts_projection.hpp"
#include "actors/read_models/timelines_projection.hpp"
#include "actors/read_models/users_projection.hpp"
#include "services/admin/admin_service.hpp"
#include "services/command/command_service.hpp"
#include "services/query/query_service.hpp"

namespace shoutflow::node {

namespace {

constexpr const char* component = "node";

/// Builds and starts a gRPC server for one service; returns the bound port.
std::unique_ptr<grpc::Server> serve(grpc::Service* service,
                                    const std::string& bind, int port,
                                    int max_message_bytes, const char* name,
                                    int* bound) {
  grpc::ServerBuilder builder;
  auto address = bind + ":" + std::to_string(port);
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), bound);
  builder.SetMaxReceiveMessageSize(max_message_bytes);
  builder.RegisterService(service);
  auto server = builder.BuildAndStart();
  if (!server || *bound == 0)
    throw std::runtime_error("cannot listen on " + address + " for " + name
                             + " (port in use?)");
  server->GetHealthCheckService()->SetServingStatus(true);
  log_info(component, std::string{name} + " listening on " + bind + ":"
                        + std::to_string(*bound));
  return server;
}

std::string join(const std::vector<std::string>& xs) {
  std::string out;
  for (auto& x : xs)
    out += (out.empty() ? "" : ",") + x;
  return out;
}

} // namespace

node::node(node_config cfg, const clock* clk)
  : cfg_(std::move(cfg)), clock_(clk != nullptr ? clk : &system_clock_) {
}

node::~node() {
  shutdown(std::chrono::seconds(2));
}

void node::start() {
  if (started_)
    return;
  started_ = true;
  log_info(component, "starting node " + std::to_string(cfg_.node_id)
                        + " with roles " + join(cfg_.roles));

  auto report = journal::migrate(cfg_.db_url);
  log_info(component, "database schema at version "
                        + std::to_string(report.current_version) + " ("
                        + std::to_string(report.applied) + " applied now)");

  registry_ = std::make_shared<prometheus::Registry>();
  journal_metrics_ = std::make_unique<journal::journal_metrics>(*registry_);
  entity_metrics_ = std::make_unique<entity::entity_metrics>(*registry_);
  command_metrics_ = std::make_unique<services::command_metrics>(*registry_);

  actor_cfg_ = std::make_unique<caf::actor_system_config>();
  // CAF's own default is larger than the core count; "0" means one per
  // core, as documented.
  auto threads = cfg_.scheduler_threads > 0
                   ? cfg_.scheduler_threads
                   : std::max<std::size_t>(std::thread::hardware_concurrency(),
                                           1);
  actor_cfg_->set("scheduler.max-threads", threads);
  // An idle CAF worker spins briefly (the aggressive phase), then by
  // default polls its queue with 50 us sleeps for 500 more attempts before
  // it blocks on its condition variable. On a node that shares its cores
  // with gRPC, query and database threads, those wake-ups cost more than
  // they save: skipping the moderate phase gave 25-40 % more GetUser and
  // ~10 % more GetTimeline per second with the same write peak
  // (docs/benchmarks.md, "CAF workers' idle polling").
  actor_cfg_->set("work-stealing.moderate-poll-attempts", size_t{0});
  journal::add_message_types(*actor_cfg_);
  projection::add_message_types(*actor_cfg_);
  entity::add_message_types(*actor_cfg_);
  system_ = std::make_unique<caf::actor_system>(*actor_cfg_);
  auto& sys = *system_;

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  if (cfg_.has_role("projections")) {
    continuity_violations_ = &prometheus::BuildCounter()
                                .Name("shoutflow_projection_continuity_"
                                      "violations_total")
                                .Help("Events whose seq_nr did not follow "
                                      "the last one applied for their stream")
                                .Register(*registry_)
                                .Add({});
    projection::manager_config mcfg;
    mcfg.db_url = cfg_.db_url;
    mcfg.projections = {
      std::make_shared<read_models::users_projection>(continuity_violations_),
      std::make_shared<read_models::shouts_projection>(),
      std::make_shared<read_models::timelines_projection>(
        read_models::timeline_config{cfg_.celebrity_threshold,
                                     cfg_.timeline_cap})};
    mcfg.partitions = cfg_.projection_partitions;
    mcfg.batch_size = cfg_.projection_batch;
    mcfg.poll = cfg_.projection_poll;
    projection::prepare_generations(mcfg);
    hub_ = projection::spawn_watch_hub(sys);
    mcfg.hub = hub_;
    manager_ = projection::spawn_manager(sys, std::move(mcfg));
    log_info(component, "projections up: users, shouts, timelines, "
                          + std::to_string(cfg_.projection_partitions)
                          + " partitions each");
  }

  journal::journal_config jcfg;
  jcfg.db_url = cfg_.db_url;
  jcfg.node_id = "node-" + std::to_string(cfg_.node_id);
  jcfg.batch_window = cfg_.journal_batch_window;
  jcfg.max_batch = cfg_.journal_max_batch;
  jcfg.writers = cfg_.journal_writers;
  jcfg.on_commit = caf::actor_cast<caf::actor>(manager_);
  journal_ = journal::spawn_pg_journal(sys, jcfg, journal_metrics_.get());
  store_ = journal::spawn_pg_store(sys, {cfg_.db_url, cfg_.store_readers});
  log_info(component, "journal up: " + std::to_string(jcfg.writers)
                        + " writers, batch window "
                        + std::to_string(jcfg.batch_window.count())
                        + "us, max batch " + std::to_string(jcfg.max_batch));

  auto hasher = std::make_shared<const password_hasher>(cfg_.pwhash);
  resolver_ = entity::spawn_fact_resolver(
    sys, store_, hasher, {cfg_.hashers, cfg_.request_timeout * 2});

  ids_ = std::make_unique<snowflake_generator>(*clock_, cfg_.node_id);
  auto env = std::make_shared<user::user_environment>();
  env->clk = clock_;
  env->ids = ids_.get();
  env->policy.max_failed_logins = cfg_.login_max_failures;
  env->policy.failure_window_ms = cfg_.login_failure_window.count();
  env->policy.lock_ms = cfg_.login_lock.count();

  entity::entity_deps<user::user_aggregate> deps;
  deps.journal = journal_;
  deps.store = store_;
  deps.resolver = resolver_;
  deps.env = env;
  deps.cfg.snapshot_every = cfg_.snapshot_every;
  deps.cfg.io_timeout = cfg_.request_timeout * 2;
  deps.metrics = entity_metrics_.get();
  auto factory = [deps](caf::actor_system& sys, const std::string& id) {
    return sys.spawn(entity::persistent_entity<user::user_aggregate>::make, id,
                     deps);
  };
  region_ = entity::spawn_shard_region(
    sys, factory, {cfg_.passivate_after, cfg_.max_active_entities},
    entity_metrics_.get());
  router_ = entity::spawn_router(sys, {cfg_.shards, cfg_.request_timeout},
                                 region_, store_);
  log_info(component, "entities up: " + std::to_string(cfg_.shards)
                        + " shards, snapshot every "
                        + std::to_string(cfg_.snapshot_every)
                        + " events, passivate after "
                        + std::to_string(cfg_.passivate_after.count()) + "ms");

  if (cfg_.has_role("command")) {
    command_service_ = std::make_unique<services::command_service>(
      sys, router_, services::command_service_config{cfg_.request_timeout},
      command_metrics_.get());
    command_server_ = serve(command_service_.get(), cfg_.bind,
                            cfg_.command_port, cfg_.max_message_bytes,
                            "CommandService", &command_port_);
  }
  if (cfg_.has_role("query")) {
    query_pool_ = std::make_shared<services::query_pool>(
      cfg_.db_url, cfg_.query_workers,
      services::query_limits{20, 100, cfg_.timeline_cap});
    query_workers_ = services::spawn_query_front(sys, query_pool_);
    query_service_ = std::make_unique<services::query_service>(
      sys, query_pool_, query_workers_, manager_, hub_,
      services::query_service_config{cfg_.query_max_wait, cfg_.watch_buffer});
    query_server_ = serve(query_service_.get(), cfg_.bind, cfg_.query_port,
                          cfg_.max_message_bytes, "QueryService",
                          &query_port_);
  }
  admin_service_ = std::make_unique<services::admin_service>(
    sys, cfg_.db_url,
    services::admin_node_info{"node-" + std::to_string(cfg_.node_id),
                              cfg_.bind, cfg_.roles, cfg_.shards},
    manager_);
  admin_server_ = serve(admin_service_.get(), cfg_.bind, cfg_.admin_port,
                        cfg_.max_message_bytes, "AdminService", &admin_port_);

  if (cfg_.metrics_port >= 0) {
    auto address = cfg_.bind + ":" + std::to_string(cfg_.metrics_port);
    try {
      exposer_ = std::make_unique<prometheus::Exposer>(address);
    } catch (const std::exception& e) {
      throw std::runtime_error("cannot listen on " + address
                               + " for metrics: " + e.what());
    }
    exposer_->RegisterCollectable(registry_);
    auto ports = exposer_->GetListeningPorts();
    metrics_port_ = ports.empty() ? cfg_.metrics_port : ports.front();
    log_info(component, "metrics on http://" + cfg_.bind + ":"
                          + std::to_string(metrics_port_) + "/metrics");
  }
  log_info(component, "ready");
}

void node::shutdown(std::chrono::milliseconds grace) {
  if (!started_ || stopped_)
    return;
  stopped_ = true;
  for (auto* server : {&command_server_, &query_server_, &admin_server_}) {
    if (!*server)
      continue;
    (*server)->GetHealthCheckService()->SetServingStatus(false);
  }
  log_info(component, "stopped accepting; draining in-flight requests");
  for (auto* server : {&command_server_, &query_server_, &admin_server_}) {
    if (!*server)
      continue;
    (*server)->Shutdown(std::chrono::system_clock::now() + grace);
    (*server)->Wait();
    server->reset();
  }
  if (system_) {
    caf::scoped_actor self{*system_};
    bool drained = false;
    self->request(journal_, grace, drain_atom::value)
      .receive([&](bool) { drained = true; },
               [&](caf::error& err) {
                 log_warn(component, "journal drain: " + system_->render(err));
               });
    if (drained)
      log_info(component, "journal drained: every accepted write committed");
    for (auto h : {caf::actor_cast<caf::actor>(router_),
                   caf::actor_cast<caf::actor>(manager_),
                   caf::actor_cast<caf::actor>(hub_),
                   caf::actor_cast<caf::actor>(query_workers_),
                   caf::actor_cast<caf::actor>(region_),
                   caf::actor_cast<caf::actor>(resolver_),
                   caf::actor_cast<caf::actor>(store_),
                   caf::actor_cast<caf::actor>(journal_)})
      self->send_exit(h, caf::exit_reason::user_shutdown);
  }
  // A detached actor's thread ends only once its last handle is gone, and
  // the actor system waits for those threads: drop ours (and the services',
  // which hold some) first.
  command_service_.reset();
  query_service_.reset();
  admin_service_.reset();
  router_ = nullptr;
  manager_ = nullptr;
  hub_ = nullptr;
  query_workers_ = nullptr;
  // Queued reads are answered (the front's callbacks message an actor, so
  // before the actor system goes); the front may still hold the pool.
  query_pool_.reset();
  region_ = nullptr;
  resolver_ = nullptr;
  store_ = nullptr;
  journal_ = nullptr;
  exposer_.reset();
  system_.reset();
  log_info(component, "stopped");
}

} // namespace shoutflow::node
