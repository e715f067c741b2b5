#include "actors/projection/manager.hpp"

#include <caf/all.hpp>

#include <functional>
#include <memory>

#include "actors/common/log.hpp"
#include "actors/journal/journal_actors.hpp"
#include "actors/journal/pg_session.hpp"
#include "actors/projection/log_reader.hpp"
#include "actors/projection/log_tail.hpp"
#include "actors/projection/partition.hpp"
#include "actors/projection/rebuild.hpp"

namespace shoutflow::projection {

namespace {

constexpr const char* component = "projection";
/// Restarts of runners that stopped (fenced by a lease change, failed);
/// a swap here restarts its runners at once (retire_atom).
constexpr auto tick_every = std::chrono::milliseconds(500);
/// How long logged change batches stay (watch_hub.hpp) and how often the
/// old ones go.
constexpr auto change_log_retention = std::chrono::minutes(10);
constexpr auto prune_every = std::chrono::minutes(1);
constexpr auto retry_timeout = std::chrono::seconds(30);

using key = std::pair<std::string, int32_t>;

std::string label(const key& k) {
  return k.first + "/" + std::to_string(k.second);
}

/// One partition of a live generation, run here under its lease.
struct runner {
  projection_ptr proj;
  int32_t index = 0;
  int64_t epoch = 0;
  int32_t generation = 0;
  partition_actor partition;
  reader_actor reader;
};

/// A rebuild running here: its actor and the generation it builds.
struct running_build {
  rebuild_actor actor;
  int32_t generation = 0;
};

struct manager_state {
  manager_config cfg;
  std::unique_ptr<journal::pg_session> session;
  /// The log tail every live runner here reads through (log_tail.hpp).
  fetcher_actor tail;
  /// Partition leases held here: (projection, index) -> epoch.
  std::map<key, int64_t> leases;
  std::map<key, runner> runners;
  std::map<caf::actor_addr, key> runner_of;
  /// Rebuilds running here, by projection (rebuild.hpp).
  std::map<std::string, running_build> builds;
  cluster::cluster_view view;
  std::map<int32_t, caf::actor> endpoints;
  std::chrono::steady_clock::time_point next_prune
    = std::chrono::steady_clock::now() + prune_every;
  static inline const char* name = "projection-manager";
};

using pointer = manager_actor::stateful_pointer<manager_state>;

projection_ptr find_projection(pointer self, const std::string& name) {
  for (auto& p : self->state.cfg.projections)
    if (p->name() == name)
      return p;
  return nullptr;
}

void stop_actors(pointer self, const std::vector<caf::actor>& actors) {
  for (auto& a : actors)
    if (a)
      self->send_exit(a, caf::exit_reason::user_shutdown);
}

// -- live partitions ----------------------------------------------------------

void stop_runner(pointer self, const key& k) {
  auto& st = self->state;
  auto it = st.runners.find(k);
  if (it == st.runners.end())
    return;
  auto& r = it->second;
  st.runner_of.erase(r.reader.address());
  self->demonitor(r.reader.address());
  stop_actors(self, {caf::actor_cast<caf::actor>(r.reader),
                     caf::actor_cast<caf::actor>(r.partition)});
  st.runners.erase(it);
}

/// Runs partition `k` of the live generation under lease `epoch`.
void start_runner(pointer self, const key& k, int64_t epoch) {
  auto& st = self->state;
  auto proj = find_projection(self, k.first);
  if (!proj)
    return;
  std::optional<std::pair<int32_t, int32_t>> live;
  auto r = st.session->run([&](pqxx::connection& conn) {
    pqxx::read_transaction tx{conn};
    live = live_generation(tx, k.first);
  });
  if (!r || !live || k.second >= live->second) {
    // Tried again on the next tick while the lease is held.
    if (!r)
      log_warn(component, "cannot start " + label(k) + ": " + r.detail);
    return;
  }
  auto& sys = self->system();
  runner run;
  run.proj = proj;
  run.index = k.second;
  run.epoch = epoch;
  run.generation = live->first;
  partition_config pc;
  pc.db_url = st.cfg.db_url;
  pc.proj = proj;
  pc.generation = live->first;
  pc.index = k.second;
  pc.count = live->second;
  pc.sink = st.cfg.sink;
  pc.fence = {generation_role::live, cluster::partition_resource(k.first),
              epoch, st.cfg.incarnation};
  pc.metrics = st.cfg.metrics != nullptr ? st.cfg.metrics->of(proj->name())
                                         : nullptr;
  run.partition = spawn_partition(sys, std::move(pc));
  reader_config rc;
  rc.proj = proj;
  rc.generation = live->first;
  rc.role = generation_role::live;
  rc.partitions.resize(static_cast<std::size_t>(live->second));
  rc.partitions[static_cast<std::size_t>(k.second)] = run.partition;
  rc.fetcher = st.tail;
  // The tail answers every request within its own fetch timeout.
  rc.fetch_timeout = caf::infinite;
  rc.replay = st.cfg.live;
  rc.sink = st.cfg.sink;
  rc.publish = true;
  run.reader = spawn_reader(sys, std::move(rc));
  self->monitor(run.reader);
  st.runner_of[run.reader.address()] = k;
  st.runners[k] = std::move(run);
}

/// Every lease held here has its runner (after a fence, a failed start).
void restart_runners(pointer self) {
  auto& st = self->state;
  for (auto& [k, epoch] : st.leases)
    if (st.runners.count(k) == 0)
      start_runner(self, k, epoch);
}

// -- dead letters -------------------------------------------------------------

using retry_done = std::function<void(caf::expected<retry_result>)>;

/// Whatever retries a key's dead letters: its partition, or a rebuild.
using key_retrier = caf::typed_actor<
  caf::replies_to<retry_atom, std::string>::with<retry_result>>;

/// What retries `key` of this generation here: the runner of its partition
/// or the rebuild of the generation; nothing if neither runs here.
key_retrier local_partition(pointer self, const std::string& name,
                            int32_t generation, int32_t count,
                            const std::string& key) {
  auto& st = self->state;
  auto r = st.runners.find({name, partition_of(key, count)});
  if (r != st.runners.end() && r->second.generation == generation)
    return caf::actor_cast<key_retrier>(r->second.partition);
  auto b = st.builds.find(name);
  if (b != st.builds.end() && b->second.generation == generation)
    return caf::actor_cast<key_retrier>(b->second.actor);
  return {};
}

void retry_key(pointer self, const std::string& name, int32_t generation,
               int32_t count, const std::string& key, retry_done done) {
  auto& st = self->state;
  if (auto part = local_partition(self, name, generation, count, key)) {
    self->request(part, retry_timeout, retry_atom::value, key)
      .then([=](retry_result& r) { done(std::move(r)); },
            [=](caf::error& err) { done(std::move(err)); });
    return;
  }
  auto p = partition_of(key, count);
  auto owner = st.view.owner_of(cluster::partition_resource(name), p);
  auto ep = st.endpoints.find(owner);
  if (owner < 0 || owner == st.cfg.node_id || ep == st.endpoints.end()) {
    done(caf::make_error(caf::sec::invalid_argument,
                         "partition " + std::to_string(p) + " of " + name + " g"
                           + std::to_string(generation)
                           + " is not running on a reachable node"));
    return;
  }
  self
    ->request(ep->second, retry_timeout, retry_atom::value, name, generation,
              key)
    .then([=](retry_result& r) { done(std::move(r)); },
          [=](caf::error& err) { done(std::move(err)); });
}

// -- status -------------------------------------------------------------------

/// Combines the statuses of one generation's partition readers.
void combine(std::vector<reader_status>& out, reader_status s) {
  for (auto& o : out)
    if (o.projection == s.projection && o.generation == s.generation
        && o.state == s.state) {
      if (s.watermark < o.watermark)
        o.watermark = s.watermark;
      o.events += s.events;
      o.dead_letters += s.dead_letters;
      o.last_event_ms = std::max(o.last_event_ms, s.last_event_ms);
      o.done = o.done && s.done;
      return;
    }
  out.push_back(std::move(s));
}

manager_actor::behavior_type manager(pointer self, manager_config cfg) {
  auto& st = self->state;
  st.session = std::make_unique<journal::pg_session>(
    cfg.db_url, "projection-manager", nullptr,
    journal::default_statement_timeout, journal::session_role::read_side);
  st.cfg = std::move(cfg);
  st.tail = spawn_log_tail(self->system(),
                           {st.cfg.db_url,
                            static_cast<std::size_t>(4 * st.cfg.live.batch_size),
                            st.cfg.metrics,
                            {}});
  self->attach_functor([tail = st.tail] {
    caf::anon_send_exit(tail, caf::exit_reason::user_shutdown);
  });
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& st = self->state;
    for (auto b = st.builds.begin(); b != st.builds.end(); ++b)
      if (b->second.actor.address() == dm.source) {
        // Swapped in (retire_atom came first), complete (point in time)
        // or failed.
        st.builds.erase(b);
        return;
      }
    auto it = st.runner_of.find(dm.source);
    if (it == st.runner_of.end())
      return;
    auto k = it->second;
    // Fenced (its generation was swapped out, or the lease moved on) or
    // failed: the next tick starts it again while the lease is held.
    log_info(component,
             label(k) + " runner stopped: " + self->system().render(dm.reason));
    st.runner_of.erase(it);
    auto r = st.runners.find(k);
    if (r != st.runners.end() && r->second.reader.address() == dm.source) {
      stop_actors(self, {caf::actor_cast<caf::actor>(r->second.partition)});
      st.runners.erase(r);
    }
  });
  self->set_exit_handler([=](caf::exit_msg& msg) {
    auto& st = self->state;
    std::vector<key> keys;
    for (auto& kv : st.runners)
      keys.push_back(kv.first);
    for (auto& k : keys)
      stop_runner(self, k);
    for (auto& kv : st.builds)
      self->send_exit(kv.second.actor, caf::exit_reason::user_shutdown);
    self->quit(msg.reason);
  });
  self->delayed_send(self, tick_every, tick_atom::value);
  return {
    [=](wake_atom) {
      for (auto& kv : self->state.runners)
        self->send(kv.second.reader, wake_atom::value);
      for (auto& kv : self->state.builds)
        self->send(kv.second.actor, wake_atom::value);
    },
    [=](status_atom) {
      auto& st = self->state;
      using status_source
        = caf::typed_actor<caf::replies_to<status_atom>::with<reader_status>>;
      std::vector<status_source> readers;
      for (auto& kv : st.runners)
        readers.push_back(caf::actor_cast<status_source>(kv.second.reader));
      for (auto& kv : st.builds)
        readers.push_back(caf::actor_cast<status_source>(kv.second.actor));
      auto promise = self->make_response_promise<std::vector<reader_status>>();
      auto out = std::make_shared<std::vector<reader_status>>();
      auto left = std::make_shared<std::size_t>(readers.size());
      if (readers.empty())
        promise.deliver(*out);
      for (auto& rd : readers)
        self->request(rd, std::chrono::seconds(5), status_atom::value)
          .then(
            [=](reader_status& s) mutable {
              combine(*out, std::move(s));
              if (--*left == 0)
                promise.deliver(*out);
            },
            [=](caf::error&) mutable {
              // A reader that stopped meanwhile (fenced by a swap, handed
              // off) has no status to give.
              if (--*left == 0)
                promise.deliver(*out);
            });
      return promise;
    },
    [=](rebuild_atom, const std::string& name, int64_t until_position,
        int64_t until_ms) -> caf::result<int32_t> {
      auto& st = self->state;
      auto proj = find_projection(self, name);
      if (!proj)
        return caf::make_error(caf::sec::invalid_argument,
                               "unknown projection " + name);
      if (st.builds.count(name) > 0)
        return caf::make_error(caf::sec::invalid_argument,
                               name + " is already being rebuilt");
      int32_t g = 0;
      std::string refused;
      replay_settings replay{st.cfg.rebuild_batch_size, st.cfg.live.poll,
                             until_position, until_ms};
      auto r = st.session->run([&](pqxx::connection& conn) {
        try {
          g = create_build(conn, *proj, st.cfg.partitions, st.cfg.node_id,
                           until_position > 0
                             ? std::optional<int64_t>{until_position}
                             : std::nullopt);
        } catch (const std::invalid_argument& e) {
          refused = e.what();
        }
      });
      if (!refused.empty())
        return caf::make_error(caf::sec::invalid_argument, refused);
      if (!r)
        return journal::make_error(journal::db_errc::unavailable, r.detail);
      log_info(component,
               "rebuilding " + name + " into generation " + std::to_string(g)
                 + (replay.point_in_time() ? " (point in time)" : ""));
      rebuild_config rc;
      rc.db_url = st.cfg.db_url;
      rc.proj = proj;
      rc.generation = g;
      rc.partitions = st.cfg.partitions;
      rc.replay = replay;
      rc.sink = st.cfg.sink;
      rc.owner = caf::actor_cast<caf::actor>(self);
      auto actor = spawn_rebuild(self->system(), std::move(rc));
      self->monitor(actor);
      st.builds[name] = {actor, g};
      return g;
    },
    [=](retry_atom, int64_t id) -> caf::result<uint64_t> {
      auto& st = self->state;
      std::string name, key;
      int32_t g = 0;
      int32_t count = 0;
      bool found = false;
      auto r = st.session->run([&](pqxx::connection& conn) {
        pqxx::read_transaction tx{conn};
        auto rows = tx.exec_params(
          "SELECT d.projection, d.generation, d.key, g.partitions"
          "  FROM projection_dead_letters d"
          "  JOIN projection_generations g"
          "    ON g.projection = d.projection AND g.generation = d.generation"
          " WHERE d.id = $1",
          id);
        if (rows.empty())
          return;
        found = true;
        name = rows[0][0].as<std::string>();
        g = rows[0][1].as<int32_t>();
        key = rows[0][2].as<std::string>();
        count = rows[0][3].as<int32_t>();
      });
      if (!r)
        return journal::make_error(journal::db_errc::unavailable, r.detail);
      if (!found)
        return caf::make_error(caf::sec::invalid_argument,
                               "no dead letter " + std::to_string(id));
      // The key's partition first; then the partitions a fixed unrouted
      // event was handed to (their dead letters are durable by then).
      auto promise = self->make_response_promise<uint64_t>();
      retry_key(self, name, g, count, key,
                [=](caf::expected<retry_result> first) mutable {
                  if (!first) {
                    promise.deliver(first.error());
                    return;
                  }
                  auto total = std::make_shared<uint64_t>(first->applied);
                  auto left
                    = std::make_shared<std::size_t>(first->handed_off.size());
                  if (*left == 0)
                    promise.deliver(*total);
                  for (auto& k : first->handed_off)
                    retry_key(self, name, g, count, k,
                              [=](caf::expected<retry_result> more) mutable {
                                if (!more) {
                                  if (promise.pending())
                                    promise.deliver(more.error());
                                  return;
                                }
                                *total += more->applied;
                                if (--*left == 0)
                                  promise.deliver(*total);
                              });
                });
      return promise;
    },
    [=](retry_atom, const std::string& name, int32_t generation,
        const std::string& key) -> caf::result<retry_result> {
      auto& st = self->state;
      int32_t count = st.cfg.partitions;
      for (auto& [k, run] : st.runners)
        if (k.first == name && run.generation == generation)
          count = static_cast<int32_t>(st.cfg.partitions);
      auto part = local_partition(self, name, generation, count, key);
      if (!part)
        return caf::make_error(caf::sec::invalid_argument,
                               "the partition of '" + key + "' of " + name
                                 + " does not run on this node");
      auto promise = self->make_response_promise<retry_result>();
      promise.delegate(part, retry_atom::value, key);
      return promise;
    },
    [=](tick_atom) {
      auto& st = self->state;
      if (!st.leases.empty()
          && std::chrono::steady_clock::now() > st.next_prune) {
        st.next_prune = std::chrono::steady_clock::now() + prune_every;
        auto r = st.session->run([&](pqxx::connection& conn) {
          prune_change_log(conn,
                           std::chrono::duration_cast<std::chrono::seconds>(
                             change_log_retention));
        });
        if (!r)
          log_warn(component, "could not prune the change log: " + r.detail);
      }
      restart_runners(self);
      self->delayed_send(self, tick_every, tick_atom::value);
    },
    [=](retire_atom, const std::string& name, int32_t retired) {
      // The swap fenced these runners' partitions; left alone, each would
      // find out only when its next batch fails (nothing comes while the
      // node is idle) and start again a tick later.
      auto& st = self->state;
      std::vector<std::pair<key, int64_t>> moved;
      for (auto& [k, run] : st.runners)
        if (k.first == name && run.generation == retired)
          moved.emplace_back(k, run.epoch);
      for (auto& [k, epoch] : moved) {
        stop_runner(self, k);
        start_runner(self, k, epoch);
      }
    },
    [=](grant_atom, const cluster::lease_grant& g) {
      auto& st = self->state;
      auto name = cluster::projection_of(g.resource);
      if (!find_projection(self, name))
        return;
      key k{name, g.part};
      st.leases[k] = g.epoch;
      stop_runner(self, k);
      start_runner(self, k, g.epoch);
    },
    [=](handoff_atom, const cluster::lease_grant& g) -> caf::result<bool> {
      auto& st = self->state;
      key k{cluster::projection_of(g.resource), g.part};
      auto l = st.leases.find(k);
      if (l == st.leases.end() || l->second != g.epoch)
        return true;
      st.leases.erase(l);
      auto r = st.runners.find(k);
      if (r == st.runners.end())
        return true;
      // Stop at a batch boundary: the next owner resumes from the offset
      // committed with it.
      auto reader = r->second.reader;
      auto promise = self->make_response_promise<bool>();
      self->request(reader, std::chrono::seconds(10), hold_atom::value, true)
        .then(
          [=](cursor&) mutable {
            auto r = self->state.runners.find(k);
            if (r != self->state.runners.end() && r->second.reader == reader)
              stop_runner(self, k);
            promise.deliver(true);
          },
          [=](caf::error&) mutable {
            auto r = self->state.runners.find(k);
            if (r != self->state.runners.end() && r->second.reader == reader)
              stop_runner(self, k);
            promise.deliver(true);
          });
      return promise;
    },
    [=](revoke_atom, const cluster::lease_grant& g) {
      auto& st = self->state;
      key k{cluster::projection_of(g.resource), g.part};
      auto l = st.leases.find(k);
      if (l == st.leases.end() || l->second != g.epoch)
        return;
      st.leases.erase(l);
      stop_runner(self, k);
    },
    [=](view_atom, const cluster::cluster_view& v) { self->state.view = v; },
    [=](peers_atom,
        const std::vector<std::pair<int32_t, caf::actor>>& endpoints) {
      auto& st = self->state;
      st.endpoints.clear();
      for (auto& [node, handle] : endpoints)
        st.endpoints[node] = handle;
    },
  };
}

} // namespace

manager_actor spawn_manager(caf::actor_system& sys, manager_config cfg) {
  return sys.spawn<caf::detached>(manager, std::move(cfg));
}

} // namespace shoutflow::projection
