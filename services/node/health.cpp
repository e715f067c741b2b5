#include "services/node/health.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <grpcpp/health_check_service_interface.h>

#include "actors/cluster/cluster_types.hpp"
#include "actors/common/atoms.hpp"
#include "actors/common/log.hpp"

namespace shoutflow::node {

namespace {

constexpr const char* component = "health";

using steady = std::chrono::steady_clock;

} // namespace

/// Shared by the node, its health actor and the watchdog thread.
struct node_health::shared_state {
  struct target {
    grpc::HealthCheckServiceInterface* health;
    std::string service;
  };

  mutable std::mutex mtx;
  std::vector<target> targets; // cleared by stop(): the servers may go
  bool ready = false;
  bool live = true;
  bool draining = false;
  bool stopping = false;
  std::condition_variable stopped;
  std::atomic<steady::rep> last_tick{steady::now().time_since_epoch().count()};

  // Callers hold mtx.
  void publish_ready() {
    bool serving = ready && !draining;
    for (auto& t : targets) {
      t.health->SetServingStatus("", serving);
      t.health->SetServingStatus(t.service, serving);
    }
  }
  void publish_live() {
    for (auto& t : targets)
      t.health->SetServingStatus(liveness_service, live);
  }

  void set_ready(bool value, const char* why) {
    std::lock_guard<std::mutex> guard{mtx};
    if (ready == value)
      return;
    ready = value;
    if (!draining)
      log_info(component,
               std::string{value ? "SERVING" : "NOT_SERVING"} + ": " + why);
    publish_ready();
  }
};

namespace {

struct monitor_state {
  std::shared_ptr<node_health::shared_state> shared;
  int32_t self_node = 0;
  bool member_up = false;
  steady::time_point last_view{};
  bool seen_view = false;
};

caf::behavior monitor(caf::stateful_actor<monitor_state>* self,
                      std::shared_ptr<node_health::shared_state> shared,
                      int32_t self_node, health_config cfg) {
  self->state.shared = std::move(shared);
  self->state.self_node = self_node;
  self->send(self, tick_atom::value);
  return {
    [=](view_atom, const cluster::cluster_view& view) {
      auto& st = self->state;
      st.last_view = steady::now();
      st.seen_view = true;
      auto* me = view.find(st.self_node);
      st.member_up = me != nullptr && me->state == cluster::member_state::up;
      st.shared->set_ready(st.member_up,
                           st.member_up ? "this node is up and holds its share"
                                        : "this node is not up in the cluster");
    },
    [=](tick_atom) {
      auto& st = self->state;
      auto now = steady::now();
      st.shared->last_tick = now.time_since_epoch().count();
      if (st.seen_view && st.member_up && now - st.last_view > cfg.stale_after)
        st.shared->set_ready(false, "no membership round reached the "
                                    "database within the lease TTL");
      self->delayed_send(self, cfg.interval, tick_atom::value);
    },
  };
}

} // namespace

node_health::node_health(health_config cfg)
  : cfg_(cfg), state_(std::make_shared<shared_state>()) {
}

node_health::~node_health() {
  stop();
}

void node_health::add_server(grpc::Server* server, const std::string& service) {
  auto* health = server->GetHealthCheckService();
  if (health == nullptr)
    return;
  std::lock_guard<std::mutex> guard{state_->mtx};
  state_->targets.push_back({health, service});
  health->SetServingStatus("", false);
  health->SetServingStatus(service, false);
  health->SetServingStatus(liveness_service, state_->live);
}

caf::actor node_health::start(caf::actor_system& sys, int32_t self_node) {
  actor_ = sys.spawn(monitor, state_, self_node, cfg_);
  watchdog_ = std::thread([state = state_, cfg = cfg_] {
    std::unique_lock<std::mutex> lock{state->mtx};
    while (!state->stopping) {
      auto last = steady::time_point{steady::duration{state->last_tick.load()}};
      bool live = steady::now() - last <= cfg.liveness_timeout;
      if (live != state->live) {
        state->live = live;
        log(live ? log_level::info : log_level::error, component,
            live ? "liveness SERVING again: the scheduler runs"
                 : "liveness NOT_SERVING: the actor scheduler has not run "
                   "the health check for "
                     + std::to_string(cfg.liveness_timeout.count()) + " ms");
        state->publish_live();
      }
      state->stopped.wait_for(lock, cfg.interval); // stop() wakes it early
    }
  });
  return actor_;
}

void node_health::set_ready(bool ready) {
  state_->set_ready(ready, ready ? "joined the cluster and holds its share"
                                 : "not yet holding its share");
}

void node_health::drain() {
  std::lock_guard<std::mutex> guard{state_->mtx};
  if (state_->draining)
    return;
  state_->draining = true;
  log_info(component, "NOT_SERVING: draining");
  state_->publish_ready();
}

void node_health::stop() {
  {
    std::lock_guard<std::mutex> guard{state_->mtx};
    for (auto& t : state_->targets)
      t.health->SetServingStatus(liveness_service, false);
    state_->targets.clear();
    state_->stopping = true;
  }
  state_->stopped.notify_all();
  if (watchdog_.joinable())
    watchdog_.join();
  if (actor_) {
    caf::anon_send_exit(actor_, caf::exit_reason::user_shutdown);
    actor_ = nullptr;
  }
}

bool node_health::ready() const {
  std::lock_guard<std::mutex> guard{state_->mtx};
  return state_->ready && !state_->draining;
}

} // namespace shoutflow::node
