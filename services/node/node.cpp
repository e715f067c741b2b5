#include "services/node/node.hpp"

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include <iomanip>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "actors/common/log.hpp"
#include "actors/common/password_hasher.hpp"
#include "actors/entity/fact_resolver.hpp"
#include "actors/entity/persistent_entity.hpp"
#include "actors/entity/router.hpp"
#include "actors/entity/shard_region.hpp"
#include "actors/journal/journal_coordinator.hpp"
#include "actors/journal/migrations.hpp"
#include "actors/journal/pg_store.hpp"
#include "actors/projection/lag_probe.hpp"
#include "actors/read_models/shouts_projection.hpp"
#include "actors/read_models/timelines_projection.hpp"
#include "actors/read_models/users_projection.hpp"
#include "actors/user/user_aggregate.hpp"
#include "services/admin/admin_service.hpp"
#include "services/command/command_service.hpp"
#include "services/query/query_service.hpp"

namespace shoutflow::node {

namespace {

constexpr const char* component = "node";

/// Builds and starts a gRPC server for one service; returns the bound port.
std::unique_ptr<grpc::Server>
serve(grpc::Service* service, const std::string& bind, int port,
      int max_message_bytes, const char* name, int* bound,
      services::in_flight_metrics& in_flight, prometheus::Gauge& counted_in) {
  grpc::ServerBuilder builder;
  builder.experimental().SetInterceptorCreators(
    in_flight.interceptors(counted_in, in_flight.watch));
  auto address = bind + ":" + std::to_string(port);
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), bound);
  builder.SetMaxReceiveMessageSize(max_message_bytes);
  builder.RegisterService(service);
  auto server = builder.BuildAndStart();
  if (!server || *bound == 0)
    throw std::runtime_error("cannot listen on " + address + " for " + name
                             + " (port in use?)");
  // NOT_SERVING until the node has joined (node_health).
  server->GetHealthCheckService()->SetServingStatus(false);
  log_info(component, std::string{name} + " listening on " + bind + ":"
                        + std::to_string(*bound));
  return server;
}

/// A random token naming this process in the membership table.
std::string new_incarnation() {
  std::random_device rd;
  std::ostringstream out;
  out << std::hex << std::setfill('0') << std::setw(8) << rd() << std::setw(8)
      << rd();
  return out.str();
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

  metrics_ = std::make_unique<node_metrics>();

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
  // Nodes talk over CAF's middleman (docs/cluster.md); a node that loses a
  // peer's TCP connection learns it from the remote actor's down message.
  actor_cfg_->load<caf::io::middleman>();
  journal::add_message_types(*actor_cfg_);
  projection::add_message_types(*actor_cfg_);
  entity::add_message_types(*actor_cfg_);
  cluster::add_message_types(*actor_cfg_);
  system_ = std::make_unique<caf::actor_system>(*actor_cfg_);
  auto& sys = *system_;

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  incarnation_ = new_incarnation();
  // The watch hub of a query node follows every partition's progress
  // wherever it runs (watch_hub.hpp); the peers actor connects this node to
  // the others and fans the read side's messages and wake-ups out.
  if (cfg_.has_role("query")) {
    if (cfg_.timeline_pages > 0)
      pages_ = std::make_shared<projection::page_cache>(cfg_.timeline_pages);
    hub_ = projection::spawn_watch_hub(
      sys, {cfg_.db_url,
            std::clamp(cfg_.projection_poll, std::chrono::milliseconds(20),
                       std::chrono::milliseconds(1000)),
            std::max(std::chrono::milliseconds(1000), cfg_.lease_ttl / 2),
            pages_});
  }
  cluster::peers_config pcfg;
  pcfg.self = cfg_.node_id;
  pcfg.local_hub = caf::actor_cast<caf::actor>(hub_);
  peers_ = cluster::spawn_peers(sys, pcfg);

  if (cfg_.has_role("projections")) {
    continuity_violations_ = &prometheus::BuildCounter()
                                .Name("shoutflow_projection_continuity_"
                                      "violations_total")
                                .Help("Events whose seq_nr did not follow "
                                      "the last one applied for their stream")
                                .Register(*metrics_->registry)
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
    mcfg.live.batch_size = cfg_.projection_batch;
    mcfg.rebuild_batch_size = cfg_.projection_rebuild_batch;
    mcfg.live.poll = cfg_.projection_poll;
    mcfg.live.linger = cfg_.projection_linger;
    mcfg.sink = caf::actor_cast<caf::actor>(peers_);
    mcfg.node_id = cfg_.node_id;
    mcfg.incarnation = incarnation_;
    mcfg.metrics = &metrics_->projections;
    projections_ = mcfg.projections;
    projection::prepare_generations({cfg_.db_url, mcfg.projections,
                                     cfg_.projection_partitions, cfg_.node_id});
    manager_ = projection::spawn_manager(sys, std::move(mcfg));
    caf::anon_send(peers_, subscribe_atom::value,
                   caf::actor_cast<caf::actor>(manager_), true);
    lag_probe_ = projection::spawn_lag_probe(
      sys, {cfg_.db_url, cfg_.node_id, incarnation_}, &metrics_->projections);
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
  jcfg.write_timeout = cfg_.request_timeout * 2;
  // A commit wakes the readers here and on every other projections node.
  jcfg.on_commit = caf::actor_cast<caf::actor>(peers_);
  jcfg.incarnation = incarnation_;
  journal_ = journal::spawn_pg_journal(sys, jcfg, &metrics_->journal);
  store_ = journal::spawn_pg_store(sys, {cfg_.db_url, cfg_.store_readers});
  log_info(component, "journal up: " + std::to_string(jcfg.writers)
                        + " writers, batch window "
                        + std::to_string(jcfg.batch_window.count())
                        + "us, max batch " + std::to_string(jcfg.max_batch));

  auto hasher = std::make_shared<const password_hasher>(cfg_.pwhash);
  resolver_ = entity::spawn_fact_resolver(
    sys, store_, hasher,
    {cfg_.hashers, cfg_.request_timeout * 2, &metrics_->entity});

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
  deps.metrics = &metrics_->entity;
  auto factory = [deps](caf::actor_system& sys, const std::string& id,
                        int32_t shard, int64_t epoch) mutable {
    auto d = deps;
    d.shard = shard;
    d.lease_epoch = epoch;
    return sys.spawn(entity::persistent_entity<user::user_aggregate>::make, id,
                     std::move(d));
  };
  if (cfg_.has_role("entities")) {
    region_ = entity::spawn_shard_region(sys, factory,
                                         {cfg_.shards, cfg_.passivate_after,
                                          cfg_.max_active_entities},
                                         &metrics_->entity);
    log_info(component, "entities up: " + std::to_string(cfg_.shards)
                          + " shards in the cluster, snapshot every "
                          + std::to_string(cfg_.snapshot_every)
                          + " events, passivate after "
                          + std::to_string(cfg_.passivate_after.count())
                          + "ms");
  }
  entity::router_config rcfg;
  rcfg.shards = cfg_.shards;
  rcfg.self = cfg_.node_id;
  rcfg.lookup_timeout = cfg_.request_timeout;
  rcfg.route_timeout = cfg_.request_timeout;
  rcfg.hop_timeout = cfg_.request_timeout * 2 + std::chrono::milliseconds(500);
  router_ = entity::spawn_router(sys, rcfg, region_, store_);
  caf::anon_send(peers_, subscribe_atom::value,
                 caf::actor_cast<caf::actor>(router_), false);

  if (cfg_.has_role("command")) {
    command_service_ = std::make_unique<services::command_service>(
      sys, router_, services::command_service_config{cfg_.request_timeout},
      &metrics_->command);
    command_server_ = serve(command_service_.get(), cfg_.bind,
                            cfg_.command_port, cfg_.max_message_bytes,
                            "CommandService", &command_port_,
                            metrics_->in_flight, metrics_->in_flight.command);
  }
  if (cfg_.has_role("query")) {
    query_pool_ = std::make_shared<services::query_pool>(
      cfg_.db_url, cfg_.query_workers,
      services::query_limits{20, 100, cfg_.timeline_cap});
    query_workers_ = services::spawn_query_front(sys, query_pool_);
    query_service_ = std::make_unique<services::query_service>(
      sys, query_pool_, query_workers_, hub_,
      services::query_service_config{cfg_.query_max_wait, cfg_.watch_buffer,
                                     &metrics_->query, pages_});
    query_server_ = serve(query_service_.get(), cfg_.bind, cfg_.query_port,
                          cfg_.max_message_bytes, "QueryService", &query_port_,
                          metrics_->in_flight, metrics_->in_flight.query);
  }
  admin_service_ = std::make_unique<services::admin_service>(
    sys, cfg_.db_url,
    services::admin_node_info{"node-" + std::to_string(cfg_.node_id), cfg_.bind,
                              cfg_.roles, cfg_.shards},
    manager_);
  admin_server_ = serve(admin_service_.get(), cfg_.bind, cfg_.admin_port,
                        cfg_.max_message_bytes, "AdminService", &admin_port_,
                        metrics_->in_flight, metrics_->in_flight.admin);

  if (cfg_.metrics_port >= 0) {
    auto address = cfg_.bind + ":" + std::to_string(cfg_.metrics_port);
    try {
      exposer_ = std::make_unique<prometheus::Exposer>(address);
    } catch (const std::exception& e) {
      throw std::runtime_error("cannot listen on " + address
                               + " for metrics: " + e.what());
    }
    exposer_->RegisterCollectable(metrics_->registry);
    auto ports = exposer_->GetListeningPorts();
    metrics_port_ = ports.empty() ? cfg_.metrics_port : ports.front();
    log_info(component, "metrics on http://" + cfg_.bind + ":"
                          + std::to_string(metrics_port_) + "/metrics");
  }
  health_config hc;
  hc.interval = cfg_.heartbeat_interval;
  hc.stale_after = cfg_.lease_ttl;
  hc.liveness_timeout = std::max<std::chrono::milliseconds>(
    std::chrono::seconds(10), cfg_.lease_ttl * 3);
  health_ = std::make_unique<node_health>(hc);
  for (auto [server, service] :
       {std::pair{command_server_.get(), "shoutflow.v1.CommandService"},
        std::pair{query_server_.get(), "shoutflow.v1.QueryService"},
        std::pair{admin_server_.get(), "shoutflow.v1.AdminService"}})
    if (server != nullptr)
      health_->add_server(server, service);
  join_cluster();
  log_info(component, "ready");
}

void node::join_cluster() {
  auto& sys = *system_;
  auto host = cfg_.advertise_host.empty() ? cfg_.bind : cfg_.advertise_host;
  // The endpoint first: a joined node is reachable at once.
  endpoint_
    = cluster::spawn_endpoint(sys, {region_, caf::actor_cast<caf::actor>(hub_),
                                    caf::actor_cast<caf::actor>(manager_)});
  auto published = sys.middleman().publish(
    endpoint_, static_cast<uint16_t>(cfg_.caf_port), cfg_.bind.c_str(), true);
  if (!published)
    throw std::runtime_error(
      "cannot listen on " + cfg_.bind + ":" + std::to_string(cfg_.caf_port)
      + " for CAF (port in use?): " + sys.render(published.error()));
  caf_port_ = *published;
  log_info(component, "CAF endpoint on " + cfg_.bind + ":"
                        + std::to_string(caf_port_) + ", reachable as " + host);

  cluster::membership_config mc;
  mc.db_url = cfg_.db_url;
  mc.self.node_id = cfg_.node_id;
  mc.self.incarnation = incarnation_;
  mc.self.host = host;
  mc.self.caf_port = caf_port_;
  mc.self.command_port = command_port_;
  mc.self.query_port = query_port_;
  mc.self.admin_port = admin_port_;
  mc.self.metrics_port = metrics_port_;
  mc.self.roles = cfg_.roles;
  mc.shards = cfg_.shards;
  mc.lease_ttl = cfg_.lease_ttl;
  cluster::keeper_config kc;
  if (cfg_.has_role("entities")) {
    mc.resources.push_back(
      {cluster::shard_resource, static_cast<int32_t>(cfg_.shards), "entities"});
    kc.holders[cluster::shard_resource]
      = caf::actor_cast<cluster::lease_holder_actor>(region_);
  }
  if (manager_) {
    for (auto& p : projections_) {
      auto resource = cluster::partition_resource(p->name());
      mc.resources.push_back(
        {resource, cfg_.projection_partitions, "projections"});
      kc.holders[resource]
        = caf::actor_cast<cluster::lease_holder_actor>(manager_);
    }
  }
  membership_ = std::make_unique<cluster::membership_table>(mc);
  membership_->join(cfg_.lease_ttl * 3);
  kc.membership = mc;
  kc.interval = cfg_.heartbeat_interval;
  kc.safety_margin = std::min(cfg_.heartbeat_interval, cfg_.lease_ttl / 6);
  kc.handoff_timeout = cfg_.request_timeout * 2;
  kc.subscribers = {caf::actor_cast<caf::actor>(router_),
                    caf::actor_cast<caf::actor>(peers_),
                    health_->start(sys, cfg_.node_id)};
  kc.nudge = caf::actor_cast<caf::actor>(peers_);
  kc.metrics = &metrics_->cluster;
  if (manager_)
    kc.subscribers.push_back(caf::actor_cast<caf::actor>(manager_));
  keeper_ = cluster::spawn_keeper(sys, kc);
  caf::anon_send(endpoint_, subscribe_atom::value,
                 caf::actor_cast<caf::actor>(keeper_));
  // Serve once this node holds its share; a node whose share is still
  // held by others (they hand it off first) starts anyway after a while:
  // the router sends commands where the shards are.
  caf::scoped_actor self{sys};
  bool up = false;
  self
    ->request(keeper_, cfg_.lease_ttl * 4, join_atom::value,
              caf::timespan{cfg_.lease_ttl * 3})
    .receive([&](bool ok) { up = ok; }, [&](caf::error&) {});
  log_info(component, up ? "joined the cluster: this node holds its share"
                         : "joined the cluster; its share is still moving");
  // Not ready until it holds its share: the next views tell when.
  if (up)
    health_->set_ready(true);
}

void node::shutdown(std::chrono::milliseconds grace) {
  if (!started_ || stopped_)
    return;
  stopped_ = true;
  auto deadline = std::chrono::steady_clock::now() + grace;
  auto left = [deadline] {
    return std::max(std::chrono::milliseconds(1),
                    std::chrono::duration_cast<std::chrono::milliseconds>(
                      deadline - std::chrono::steady_clock::now()));
  };
  if (health_)
    health_->drain();
  if (cfg_.drain_delay.count() > 0) {
    // Load balancers and Kubernetes endpoints notice NOT_SERVING late:
    // keep serving everything meanwhile, so no request meets a closed port.
    log_info(component, "draining: NOT_SERVING for "
                          + std::to_string(cfg_.drain_delay.count())
                          + " ms before the hand-off");
    std::this_thread::sleep_for(std::min(cfg_.drain_delay, left()));
  }
  // Watch streams never end on their own: end them now (UNAVAILABLE,
  // resubscribe elsewhere) so they do not hold the server's drain.
  if (hub_)
    caf::anon_send(hub_, lost_atom::value,
                   std::string{"this node is shutting down; resubscribe"});
  if (system_ && keeper_) {
    // Hand off first, while the gRPC servers still take requests: the
    // router sends them to the new owners.
    log_info(component, "leaving the cluster: handing shards and "
                        "partitions off");
    caf::scoped_actor self{*system_};
    bool left_cleanly = false;
    self->request(keeper_, left() * 3 / 4, leave_atom::value)
      .receive([&](bool) { left_cleanly = true; },
               [&](caf::error& err) {
                 log_warn(component, "hand-off incomplete within the grace "
                                     "period: "
                                       + system_->render(err));
               });
    if (left_cleanly)
      log_info(component, "everything handed off");
  }
  if (health_)
    health_->stop(); // before the servers go: it holds their health services
  log_info(component, "stopped accepting; draining in-flight requests");
  for (auto* server : {&command_server_, &query_server_, &admin_server_}) {
    if (!*server)
      continue;
    (*server)->Shutdown(std::chrono::system_clock::now() + left());
    (*server)->Wait();
    server->reset();
  }
  if (system_) {
    caf::scoped_actor self{*system_};
    bool drained = false;
    self->request(journal_, left(), drain_atom::value)
      .receive([&](bool) { drained = true; },
               [&](caf::error& err) {
                 log_warn(component, "journal drain: " + system_->render(err));
               });
    if (drained)
      log_info(component, "journal drained: every accepted write committed");
    if (keeper_)
      self->send_exit(keeper_, caf::exit_reason::user_shutdown);
    if (membership_) {
      if (auto r = membership_->leave(); !r)
        log_warn(component, "could not leave the membership table (" + r.detail
                              + "); the others will declare this node down");
    }
    for (auto h : {caf::actor_cast<caf::actor>(router_),
                   caf::actor_cast<caf::actor>(peers_), endpoint_,
                   caf::actor_cast<caf::actor>(manager_), lag_probe_,
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
  keeper_ = nullptr;
  peers_ = nullptr;
  endpoint_ = nullptr;
  manager_ = nullptr;
  lag_probe_ = nullptr;
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
