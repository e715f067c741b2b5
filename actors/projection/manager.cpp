#include "actors/projection/manager.hpp"

#include <caf/all.hpp>

#include <functional>
#include <memory>
#include <set>

#include "actors/common/log.hpp"
#include "actors/journal/journal_actors.hpp"
#include "actors/journal/pg_session.hpp"
#include "actors/projection/log_reader.hpp"
#include "actors/projection/log_tail.hpp"
#include "actors/projection/partition.hpp"
#include "actors/projection/read_side_codec.hpp"

namespace shoutflow::projection {

namespace {

constexpr const char* component = "projection";
/// Swap steps while a rebuild runs; restarts of fenced runners otherwise.
constexpr auto tick_building = std::chrono::milliseconds(100);
constexpr auto tick_idle = std::chrono::milliseconds(500);
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

/// A rebuild running here (manager.hpp).
struct build {
  enum class phase { building, holding, promoted };
  projection_ptr proj;
  int32_t generation = 0;
  bool point_in_time = false;
  phase ph = phase::building;
  cursor promoted_at;
  bool swapping = false;
  fetcher_actor fetcher;
  std::vector<partition_actor> partitions;
  reader_actor reader;
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
  std::map<std::string, build> builds;
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

// -- live partitions -------------------------------------------------------------

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
  pc.fence = {"live", cluster::partition_resource(k.first), epoch,
              st.cfg.incarnation};
  pc.metrics = st.cfg.metrics != nullptr ? st.cfg.metrics->of(proj->name())
                                         : nullptr;
  run.partition = spawn_partition(sys, std::move(pc));
  reader_config rc;
  rc.proj = proj;
  rc.generation = live->first;
  rc.role = "live";
  rc.partitions.resize(static_cast<std::size_t>(live->second));
  rc.partitions[static_cast<std::size_t>(k.second)] = run.partition;
  rc.fetcher = st.tail;
  rc.batch_size = st.cfg.batch_size;
  rc.poll = st.cfg.poll;
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

// -- rebuilds --------------------------------------------------------------------

void stop_build(pointer self, build& b) {
  std::vector<caf::actor> actors{caf::actor_cast<caf::actor>(b.reader),
                                 caf::actor_cast<caf::actor>(b.fetcher)};
  for (auto& p : b.partitions)
    actors.push_back(caf::actor_cast<caf::actor>(p));
  stop_actors(self, actors);
}

build start_build(pointer self, projection_ptr proj, int32_t generation,
                  int64_t until_position, int64_t until_ms) {
  auto& st = self->state;
  auto& sys = self->system();
  build b;
  b.proj = proj;
  b.generation = generation;
  b.point_in_time = until_position > 0 || until_ms > 0;
  b.fetcher = spawn_fetcher(sys, st.cfg.db_url);
  for (int32_t i = 0; i < st.cfg.partitions; ++i) {
    partition_config pc;
    pc.db_url = st.cfg.db_url;
    pc.proj = proj;
    pc.generation = generation;
    pc.index = i;
    pc.count = st.cfg.partitions;
    pc.fence = {"building", "", 0, ""};
    b.partitions.push_back(spawn_partition(sys, std::move(pc)));
  }
  reader_config rc;
  rc.proj = proj;
  rc.generation = generation;
  rc.role = b.point_in_time ? "point-in-time" : "building";
  rc.partitions = b.partitions;
  rc.fetcher = b.fetcher;
  rc.batch_size = st.cfg.rebuild_batch_size;
  rc.poll = st.cfg.poll;
  rc.until_position = until_position;
  rc.until_ms = until_ms;
  rc.on_done = caf::actor_cast<caf::actor>(self);
  rc.publish = false;
  b.reader = spawn_reader(sys, std::move(rc));
  return b;
}

/// The swap protocol's next step for a rebuild (manager.hpp).
void advance_build(pointer self, const std::string& name) {
  auto& st = self->state;
  auto it = st.builds.find(name);
  if (it == st.builds.end() || it->second.point_in_time || it->second.swapping)
    return;
  auto& b = it->second;
  auto reader = b.reader;
  auto generation = b.generation;
  auto still = [=](pointer self) -> build* {
    auto it = self->state.builds.find(name);
    return it == self->state.builds.end() || it->second.reader != reader
             ? nullptr
             : &it->second;
  };
  if (b.ph == build::phase::building) {
    // Caught up once the build's watermark reaches the lowest committed
    // offset of the live generation.
    cursor lowest;
    bool known = false;
    auto r = st.session->run([&](pqxx::connection& conn) {
      pqxx::read_transaction tx{conn};
      if (auto live = live_generation(tx, name)) {
        auto offsets = offsets_of(tx, name, live->first, live->second);
        if (!offsets.empty()) {
          lowest = *std::min_element(offsets.begin(), offsets.end());
          known = true;
        }
      }
    });
    if (!r || !known)
      return;
    b.swapping = true;
    self->request(reader, std::chrono::seconds(5), status_atom::value)
      .then(
        [=](reader_status& s) {
          auto* b = still(self);
          if (b == nullptr)
            return;
          if (s.watermark < lowest) {
            b->swapping = false;
            return;
          }
          b->ph = build::phase::holding;
          self->request(reader, std::chrono::seconds(30), hold_atom::value, true)
            .then(
              [=](cursor& at) {
                auto* b = still(self);
                if (b == nullptr)
                  return;
                // Publishes from `at` on: the hubs keep its changes aside
                // until the swap.
                b->promoted_at = at;
                b->ph = build::phase::promoted;
                b->swapping = false;
                self->send(reader, promote_atom::value, self->state.cfg.sink,
                           std::string{"building"});
                log_info(component, name + " g" + std::to_string(generation)
                                      + " caught up; promoted at position "
                                      + std::to_string(at.position));
              },
              [=](caf::error&) {
                if (auto* b = still(self)) {
                  b->ph = build::phase::building;
                  b->swapping = false;
                  caf::anon_send(reader, hold_atom::value, false);
                }
              });
        },
        [=](caf::error&) {
          if (auto* b = still(self))
            b->swapping = false;
        });
    return;
  }
  if (b.ph != build::phase::promoted)
    return;
  swap_outcome out;
  auto r = st.session->run([&](pqxx::connection& conn) {
    out = try_swap(conn, *b.proj, b.generation, b.promoted_at);
  });
  if (!r) {
    log_warn(component, "swap of " + name + " failed (" + r.detail
                          + "); will retry");
    return;
  }
  if (!out.swapped) {
    log_debug(component, "swap of " + name + " not yet: " + out.why);
    return;
  }
  log_info(component, name + ": generation " + std::to_string(b.generation)
                        + " is live (rebuilt from zero), generation "
                        + std::to_string(out.retired) + " retired");
  if (st.cfg.sink)
    caf::anon_send(st.cfg.sink, batch_atom::value,
               encode_swap(name, out.retired, b.generation,
                           out.retired_offsets));
  auto proj = b.proj;
  stop_build(self, b);
  st.builds.erase(it);
  // The retired generation's partitions are fenced (the swap waited for
  // the transactions in flight): nothing writes its tables any more.
  auto d = st.session->run([&](pqxx::connection& conn) {
    drop_generation(conn, *proj, out.retired);
  });
  if (!d)
    log_warn(component, "could not drop " + name + " g"
                          + std::to_string(out.retired) + ": " + d.detail);
  // This node's runners of the retired generation restart on the new one.
  for (auto& [k, run] : st.runners)
    if (k.first == name && run.generation == out.retired)
      self->send(run.reader, wake_atom::value);
}

// -- dead letters ------------------------------------------------------------------

using retry_done = std::function<void(caf::expected<retry_result>)>;

/// The partition of `key` in this generation, if it runs here.
partition_actor local_partition(pointer self, const std::string& name,
                                int32_t generation, int32_t count,
                                const std::string& key) {
  auto& st = self->state;
  auto p = partition_of(key, count);
  auto r = st.runners.find({name, p});
  if (r != st.runners.end() && r->second.generation == generation)
    return r->second.partition;
  auto b = st.builds.find(name);
  if (b != st.builds.end() && b->second.generation == generation
      && static_cast<std::size_t>(p) < b->second.partitions.size())
    return b->second.partitions[static_cast<std::size_t>(p)];
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
                         "partition " + std::to_string(p) + " of " + name
                           + " g" + std::to_string(generation)
                           + " is not running on a reachable node"));
    return;
  }
  self
    ->request(ep->second, retry_timeout, retry_atom::value, name, generation,
              key)
    .then([=](retry_result& r) { done(std::move(r)); },
          [=](caf::error& err) { done(std::move(err)); });
}

// -- status ----------------------------------------------------------------------

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
  st.session = std::make_unique<journal::pg_session>(cfg.db_url,
                                                     "projection-manager",
                                                     nullptr);
  st.cfg = std::move(cfg);
  st.tail = spawn_log_tail(self->system(),
                           {st.cfg.db_url,
                            static_cast<std::size_t>(4 * st.cfg.batch_size),
                            st.cfg.metrics, {}});
  self->attach_functor([tail = st.tail] {
    caf::anon_send_exit(tail, caf::exit_reason::user_shutdown);
  });
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& st = self->state;
    auto it = st.runner_of.find(dm.source);
    if (it == st.runner_of.end())
      return;
    auto k = it->second;
    // Fenced (its generation was swapped out, or the lease moved on) or
    // failed: the next tick starts it again while the lease is held.
    log_info(component, label(k) + " runner stopped: "
                          + self->system().render(dm.reason));
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
      stop_build(self, kv.second);
    self->quit(msg.reason);
  });
  self->delayed_send(self, tick_idle, tick_atom::value);
  return {
    [=](wake_atom) {
      for (auto& kv : self->state.runners)
        self->send(kv.second.reader, wake_atom::value);
      for (auto& kv : self->state.builds)
        self->send(kv.second.reader, wake_atom::value);
    },
    [=](status_atom) {
      auto& st = self->state;
      std::vector<reader_actor> readers;
      for (auto& kv : st.runners)
        readers.push_back(kv.second.reader);
      for (auto& kv : st.builds)
        readers.push_back(kv.second.reader);
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
      auto point_in_time = until_position > 0 || until_ms > 0;
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
      log_info(component, "rebuilding " + name + " into generation "
                            + std::to_string(g)
                            + (point_in_time ? " (point in time)" : ""));
      st.builds[name] = start_build(self, proj, g, until_position, until_ms);
      return g;
    },
    [=](built_atom, const std::string& name, int32_t g) {
      auto& st = self->state;
      auto it = st.builds.find(name);
      if (it == st.builds.end() || it->second.generation != g
          || !it->second.point_in_time)
        return;
      auto r = st.session->run(
        [&](pqxx::connection& conn) { mark_stopped(conn, name, g); });
      if (!r)
        log_warn(component, "could not record the end of " + name + " g"
                              + std::to_string(g) + ": " + r.detail);
      stop_build(self, it->second);
      st.builds.erase(it);
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
      retry_key(self, name, g, count, key, [=](caf::expected<retry_result> first) mutable {
        if (!first) {
          promise.deliver(first.error());
          return;
        }
        auto total = std::make_shared<uint64_t>(first->applied);
        auto left = std::make_shared<std::size_t>(first->handed_off.size());
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
      if (!st.leases.empty() && std::chrono::steady_clock::now() > st.next_prune) {
        st.next_prune = std::chrono::steady_clock::now() + prune_every;
        auto r = st.session->run([&](pqxx::connection& conn) {
          prune_change_log(conn, std::chrono::duration_cast<std::chrono::seconds>(
                                   change_log_retention));
        });
        if (!r)
          log_warn(component, "could not prune the change log: " + r.detail);
      }
      restart_runners(self);
      std::vector<std::string> names;
      for (auto& kv : self->state.builds)
        names.push_back(kv.first);
      for (auto& n : names)
        advance_build(self, n);
      self->delayed_send(self,
                         self->state.builds.empty() ? tick_idle : tick_building,
                         tick_atom::value);
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
