#include "services/node/node.hpp"

#include <caf/all.hpp>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include <stdexcept>

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
#include "services/command/command_service.hpp"

namespace shoutflow::node {

namespace {

constexpr const char* component = "node";

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
  if (cfg_.scheduler_threads > 0)
    actor_cfg_->set("scheduler.max-threads", cfg_.scheduler_threads);
  journal::add_message_types(*actor_cfg_);
  entity::add_message_types(*actor_cfg_);
  system_ = std::make_unique<caf::actor_system>(*actor_cfg_);
  auto& sys = *system_;

  journal::journal_config jcfg;
  jcfg.db_url = cfg_.db_url;
  jcfg.node_id = "node-" + std::to_string(cfg_.node_id);
  jcfg.batch_window = cfg_.journal_batch_window;
  jcfg.max_batch = cfg_.journal_max_batch;
  jcfg.writers = cfg_.journal_writers;
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
    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
    command_service_ = std::make_unique<services::command_service>(
      sys, router_, services::command_service_config{cfg_.request_timeout},
      command_metrics_.get());
    grpc::ServerBuilder builder;
    auto address = cfg_.bind + ":" + std::to_string(cfg_.command_port);
    builder.AddListeningPort(address, grpc::InsecureServerCredentials(),
                             &command_port_);
    builder.SetMaxReceiveMessageSize(cfg_.max_message_bytes);
    builder.RegisterService(command_service_.get());
    command_server_ = builder.BuildAndStart();
    if (!command_server_ || command_port_ == 0)
      throw std::runtime_error("cannot listen on " + address
                               + " for CommandService (port in use?)");
    command_server_->GetHealthCheckService()->SetServingStatus(true);
    log_info(component, "CommandService listening on " + cfg_.bind + ":"
                          + std::to_string(command_port_));
  }
  for (auto role : {"query", "projections"})
    if (cfg_.has_role(role))
      log_info(component, std::string{"role '"} + role
                            + "' has nothing to run in this version");

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
  if (command_server_) {
    command_server_->GetHealthCheckService()->SetServingStatus(false);
    log_info(component, "stopped accepting; draining in-flight requests");
    command_server_->Shutdown(std::chrono::system_clock::now() + grace);
    command_server_->Wait();
    command_server_.reset();
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
                   caf::actor_cast<caf::actor>(region_),
                   caf::actor_cast<caf::actor>(resolver_),
                   caf::actor_cast<caf::actor>(store_),
                   caf::actor_cast<caf::actor>(journal_)})
      self->send_exit(h, caf::exit_reason::user_shutdown);
  }
  exposer_.reset();
  system_.reset();
  log_info(component, "stopped");
}

} // namespace shoutflow::node
