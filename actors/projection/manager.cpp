#include "actors/projection/manager.hpp"

#include <caf/all.hpp>

#include <functional>
#include <memory>
#include <set>

#include "actors/common/log.hpp"
#include "actors/journal/journal_actors.hpp"
#include "actors/journal/pg_session.hpp"
#include "actors/projection/log_reader.hpp"
#include "actors/projection/partition.hpp"

namespace shoutflow::projection {

namespace {

// Same key as the migrations: one node at a time changes the schema.
constexpr int64_t schema_lock = 0x73686f7574666c6f;

constexpr auto swap_check = std::chrono::milliseconds(200);
constexpr auto retry_timeout = std::chrono::seconds(30);

void point_views(pqxx::transaction_base& tx, const read_model& p,
                 int32_t generation) {
  auto suffix = generation_suffix(generation);
  for (auto& base : p.tables()) {
    tx.exec("DROP VIEW IF EXISTS " + base);
    tx.exec("CREATE VIEW " + base + " AS SELECT * FROM " + base + suffix);
  }
}

void create_tables(pqxx::transaction_base& tx, const read_model& p,
                   int32_t generation) {
  tx.exec(expand_ddl(p.ddl(), generation_suffix(generation)));
}

void drop_tables(pqxx::transaction_base& tx, const read_model& p,
                 int32_t generation) {
  auto suffix = generation_suffix(generation);
  for (auto& base : p.tables())
    tx.exec("DROP TABLE IF EXISTS " + base + suffix);
  tx.exec_params("DELETE FROM projection_offsets"
                 " WHERE projection = $1 AND generation = $2",
                 p.name(), generation);
}

int32_t next_generation(pqxx::transaction_base& tx, const std::string& name) {
  return tx
           .exec_params1("SELECT coalesce(max(generation), 0) + 1"
                         "  FROM projection_generations WHERE projection = $1",
                         name)[0]
    .as<int32_t>();
}

/// One projection generation running on this node.
struct generation_run {
  projection_ptr proj;
  int32_t generation = 0;
  std::string role;
  bool point_in_time = false;
  /// Held and waiting for the live generation to catch up before a swap.
  bool swapping = false;
  fetcher_actor fetcher;
  std::vector<partition_actor> partitions;
  reader_actor reader;

  std::vector<caf::actor> actors() const {
    std::vector<caf::actor> out{caf::actor_cast<caf::actor>(reader),
                                caf::actor_cast<caf::actor>(fetcher)};
    for (auto& p : partitions)
      out.push_back(caf::actor_cast<caf::actor>(p));
    return out;
  }
};

/// Tables to drop once the actors that write them are gone.
struct pending_drop {
  projection_ptr proj;
  int32_t generation;
  std::set<caf::actor_addr> waiting;
};

struct manager_state {
  manager_config cfg;
  std::unique_ptr<journal::pg_session> session;
  std::map<std::string, generation_run> live;
  std::map<std::string, generation_run> building;
  std::vector<pending_drop> drops;
  bool ticking = false;
  static inline const char* name = "projection-manager";
};

using pointer = manager_actor::stateful_pointer<manager_state>;

projection_ptr find_projection(pointer self, const std::string& name) {
  for (auto& p : self->state.cfg.projections)
    if (p->name() == name)
      return p;
  return nullptr;
}

generation_run start_generation(pointer self, projection_ptr proj,
                                int32_t generation, std::string role,
                                int64_t until_position, int64_t until_ms) {
  auto& cfg = self->state.cfg;
  auto& sys = self->system();
  generation_run run;
  run.proj = proj;
  run.generation = generation;
  run.role = role;
  run.point_in_time = until_position > 0 || until_ms > 0;
  run.fetcher = spawn_fetcher(sys, cfg.db_url);
  for (int32_t i = 0; i < cfg.partitions; ++i) {
    partition_config pc;
    pc.db_url = cfg.db_url;
    pc.proj = proj;
    pc.generation = generation;
    pc.index = i;
    pc.count = cfg.partitions;
    if (role == "live")
      pc.hub = cfg.hub;
    run.partitions.push_back(spawn_partition(sys, std::move(pc)));
  }
  reader_config rc;
  rc.proj = proj;
  rc.generation = generation;
  rc.role = std::move(role);
  rc.partitions = run.partitions;
  rc.fetcher = run.fetcher;
  rc.batch_size = cfg.batch_size;
  rc.poll = cfg.poll;
  rc.until_position = until_position;
  rc.until_ms = until_ms;
  rc.on_done = caf::actor_cast<caf::actor>(self);
  if (run.role == "live")
    rc.hub = cfg.hub;
  run.reader = spawn_reader(sys, std::move(rc));
  return run;
}

/// Stops a generation's actors; with `drop`, its tables go once they are
/// all down.
void stop_generation(pointer self, const generation_run& run, bool drop) {
  pending_drop pd{run.proj, run.generation, {}};
  for (auto& a : run.actors()) {
    if (drop) {
      self->monitor(a);
      pd.waiting.insert(a.address());
    }
    self->send_exit(a, caf::exit_reason::user_shutdown);
  }
  if (drop)
    self->state.drops.push_back(std::move(pd));
}

void swap_in(pointer self, const std::string& name) {
  auto& st = self->state;
  auto built = st.building.find(name);
  auto old = st.live.find(name);
  if (built == st.building.end() || old == st.live.end())
    return;
  auto& proj = *built->second.proj;
  auto g = built->second.generation;
  auto r = st.session->run([&](pqxx::connection& conn) {
    pqxx::work tx{conn};
    point_views(tx, proj, g);
    tx.exec_params("UPDATE projection_generations SET state = 'retired'"
                   " WHERE projection = $1 AND state = 'live'",
                   name);
    tx.exec_params("UPDATE projection_generations"
                   "   SET state = 'live', swapped_at = now()"
                   " WHERE projection = $1 AND generation = $2",
                   name, g);
    tx.commit();
  });
  if (!r) {
    log_warn("projection", "swap of " + name + " g" + std::to_string(g)
                             + " failed (" + r.detail + "); will retry");
    built->second.swapping = false;
    caf::anon_send(built->second.reader, hold_atom::value, false);
    return;
  }
  log_info("projection", name + ": generation " + std::to_string(g)
                           + " is live (rebuilt from zero), generation "
                           + std::to_string(old->second.generation)
                           + " retired");
  stop_generation(self, old->second, true);
  // The new generation keeps running; from now on it serves and notifies.
  if (st.cfg.hub)
    for (auto& p : built->second.partitions)
      self->send(p, subscribe_atom::value,
                 caf::actor_cast<caf::actor>(st.cfg.hub));
  built->second.role = "live";
  self->send(built->second.reader, promote_atom::value,
             caf::actor_cast<caf::actor>(st.cfg.hub), std::string{"live"});
  st.live[name] = built->second;
  st.building.erase(built);
}

/// Calls `done` once the live generation of `name` has applied everything
/// up to `c`; asks the new live generation if a swap retires the one asked.
void await_live(pointer self, const std::string& name, const cursor& c,
                std::function<void(const caf::error&)> done) {
  auto it = self->state.live.find(name);
  if (it == self->state.live.end()) {
    done(caf::make_error(caf::sec::invalid_argument,
                         "unknown projection " + name));
    return;
  }
  auto asked = it->second.reader;
  self->request(asked, caf::infinite, await_atom::value, c)
    .then([=](cursor&) { done({}); },
          [=](caf::error& err) {
            auto now = self->state.live.find(name);
            if (now != self->state.live.end() && now->second.reader != asked)
              await_live(self, name, c, done);
            else
              done(err);
          });
}

void check_swaps(pointer self) {
  auto& st = self->state;
  for (auto& [name, run] : st.building) {
    if (run.point_in_time || run.swapping)
      continue;
    auto live = st.live.find(name);
    if (live == st.live.end())
      continue;
    auto build_reader = run.reader;
    auto live_reader = live->second.reader;
    auto project = name;
    auto release = [=] {
      auto it = self->state.building.find(project);
      if (it != self->state.building.end() && it->second.reader == build_reader)
        it->second.swapping = false;
      caf::anon_send(build_reader, hold_atom::value, false);
      caf::anon_send(live_reader, retire_atom::value, no_retirement);
    };
    // Once the rebuild has caught up with the live generation: hold it at
    // a batch boundary W; retire the live generation at W (it publishes
    // changes and answers waits up to W only) and learn its watermark L;
    // let the new generation go on, publishing from W; swap once it has
    // reached L (every wait the old one answered). Watchers see every
    // change once, in order; read-your-writes holds across the swap.
    self->request(build_reader, std::chrono::seconds(5), status_atom::value)
      .then([=](reader_status& b) {
        self->request(live_reader, std::chrono::seconds(5), status_atom::value)
          .then([=](reader_status& l) {
            auto it = self->state.building.find(project);
            if (!(l.watermark <= b.watermark) || it == self->state.building.end()
                || it->second.swapping)
              return;
            it->second.swapping = true;
            self->request(build_reader, std::chrono::seconds(30),
                          hold_atom::value, true)
              .then(
                [=](cursor& at) {
                  self->request(live_reader, std::chrono::seconds(30),
                                retire_atom::value, at)
                    .then(
                      [=](cursor& old_watermark) {
                        self->send(build_reader, promote_atom::value,
                                   caf::actor_cast<caf::actor>(
                                     self->state.cfg.hub),
                                   std::string{"building"});
                        self->request(build_reader, std::chrono::seconds(30),
                                      await_atom::value, old_watermark)
                          .then([=](cursor&) { swap_in(self, project); },
                                [=](caf::error&) { release(); });
                      },
                      [=](caf::error&) { release(); });
                },
                [=](caf::error&) { release(); });
          });
      });
  }
  if (!st.building.empty())
    self->delayed_send(self, swap_check, tick_atom::value);
  else
    st.ticking = false;
}

void drop_when_down(pointer self, const caf::actor_addr& who) {
  auto& st = self->state;
  for (auto it = st.drops.begin(); it != st.drops.end();) {
    it->waiting.erase(who);
    if (!it->waiting.empty()) {
      ++it;
      continue;
    }
    auto proj = it->proj;
    auto g = it->generation;
    auto r = st.session->run([&](pqxx::connection& conn) {
      pqxx::work tx{conn};
      drop_tables(tx, *proj, g);
      tx.commit();
    });
    if (!r)
      log_warn("projection", "could not drop " + proj->name() + " g"
                               + std::to_string(g) + ": " + r.detail);
    it = st.drops.erase(it);
  }
}

manager_actor::behavior_type manager(pointer self, manager_config cfg) {
  auto& st = self->state;
  st.session = std::make_unique<journal::pg_session>(cfg.db_url,
                                                     "projection-manager",
                                                     nullptr);
  st.cfg = std::move(cfg);
  // Start the live generation of every projection.
  auto r = st.session->run([&](pqxx::connection& conn) {
    pqxx::read_transaction tx{conn};
    for (auto& p : st.cfg.projections) {
      auto rows = tx.exec_params("SELECT generation FROM projection_generations"
                                 " WHERE projection = $1 AND state = 'live'",
                                 p->name());
      if (rows.empty())
        throw std::runtime_error("no live generation of " + p->name());
      auto g = rows[0][0].as<int32_t>();
      st.live[p->name()] = start_generation(self, p, g, "live", 0, 0);
    }
  });
  if (!r)
    log_error("projection", "cannot start projections: " + r.detail);
  self->set_down_handler(
    [=](caf::down_msg& dm) { drop_when_down(self, dm.source); });
  self->set_exit_handler([=](caf::exit_msg& msg) {
    auto& st = self->state;
    for (auto* runs : {&st.live, &st.building})
      for (auto& kv : *runs)
        for (auto& a : kv.second.actors())
          self->send_exit(a, msg.reason);
    self->quit(msg.reason);
  });
  return {
    [=](wake_atom) {
      for (auto& kv : self->state.live)
        self->send(kv.second.reader, wake_atom::value);
      for (auto& kv : self->state.building)
        self->send(kv.second.reader, wake_atom::value);
    },
    [=](await_atom, const std::vector<std::string>& names,
        const cursor& c) -> caf::result<bool> {
      auto& st = self->state;
      std::vector<reader_actor> readers;
      for (auto& n : names) {
        auto it = st.live.find(n);
        if (it == st.live.end())
          return caf::make_error(caf::sec::invalid_argument,
                                 "unknown projection " + n);
        readers.push_back(it->second.reader);
      }
      auto promise = self->make_response_promise<bool>();
      auto left = std::make_shared<std::size_t>(readers.size());
      if (readers.empty())
        promise.deliver(true);
      for (auto& n : names)
        await_live(self, n, c, [=](const caf::error& err) mutable {
          if (err) {
            if (promise.pending())
              promise.deliver(err);
          } else if (--*left == 0) {
            promise.deliver(true);
          }
        });
      return promise;
    },
    [=](status_atom) {
      auto& st = self->state;
      std::vector<reader_actor> readers;
      for (auto* runs : {&st.live, &st.building})
        for (auto& kv : *runs)
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
              out->push_back(std::move(s));
              if (--*left == 0)
                promise.deliver(*out);
            },
            [=](caf::error& err) mutable {
              if (promise.pending())
                promise.deliver(std::move(err));
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
      if (st.building.count(name) > 0)
        return caf::make_error(caf::sec::invalid_argument,
                               name + " is already being rebuilt");
      int32_t g = 0;
      auto point_in_time = until_position > 0 || until_ms > 0;
      auto r = st.session->run([&](pqxx::connection& conn) {
        pqxx::work tx{conn};
        tx.exec("SELECT pg_advisory_xact_lock(" + std::to_string(schema_lock)
                + ")");
        g = next_generation(tx, name);
        create_tables(tx, *proj, g);
        tx.exec_params("INSERT INTO projection_generations (projection,"
                       " generation, state, partitions, until_position)"
                       " VALUES ($1, $2, 'building', $3, $4)",
                       name, g, st.cfg.partitions,
                       until_position > 0
                         ? std::optional<int64_t>{until_position}
                         : std::nullopt);
        tx.commit();
      });
      if (!r)
        return journal::make_error(journal::db_errc::unavailable, r.detail);
      log_info("projection", "rebuilding " + name + " into generation "
                               + std::to_string(g)
                               + (point_in_time ? " (point in time)" : ""));
      st.building[name] = start_generation(
        self, proj, g, point_in_time ? "point-in-time" : "building",
        until_position, until_ms);
      if (!st.ticking) {
        st.ticking = true;
        self->delayed_send(self, swap_check, tick_atom::value);
      }
      return g;
    },
    [=](built_atom, const std::string& name, int32_t g) {
      auto& st = self->state;
      auto it = st.building.find(name);
      if (it == st.building.end() || it->second.generation != g
          || !it->second.point_in_time)
        return;
      auto r = st.session->run([&](pqxx::connection& conn) {
        pqxx::work tx{conn};
        tx.exec_params("UPDATE projection_generations SET state = 'stopped'"
                       " WHERE projection = $1 AND generation = $2",
                       name, g);
        tx.commit();
      });
      if (!r)
        log_warn("projection", "could not record the end of " + name + " g"
                                 + std::to_string(g) + ": " + r.detail);
      stop_generation(self, it->second, false);
      st.building.erase(it);
    },
    [=](retry_atom, int64_t id) -> caf::result<uint64_t> {
      auto& st = self->state;
      std::string name, key;
      int32_t g = 0;
      bool found = false;
      auto r = st.session->run([&](pqxx::connection& conn) {
        pqxx::read_transaction tx{conn};
        auto rows = tx.exec_params("SELECT projection, generation, key"
                                   "  FROM projection_dead_letters"
                                   " WHERE id = $1",
                                   id);
        if (rows.empty())
          return;
        found = true;
        name = rows[0][0].as<std::string>();
        g = rows[0][1].as<int32_t>();
        key = rows[0][2].as<std::string>();
      });
      if (!r)
        return journal::make_error(journal::db_errc::unavailable, r.detail);
      if (!found)
        return caf::make_error(caf::sec::invalid_argument,
                               "no dead letter " + std::to_string(id));
      for (auto* runs : {&st.live, &st.building}) {
        auto it = runs->find(name);
        if (it == runs->end() || it->second.generation != g)
          continue;
        auto parts = it->second.partitions;
        auto owner = [parts](const std::string& k) {
          return parts[static_cast<std::size_t>(
            partition_of(k, static_cast<int32_t>(parts.size())))];
        };
        // The key's partition first; then the partitions a fixed unrouted
        // event was handed to (their dead letters are durable by then).
        auto promise = self->make_response_promise<uint64_t>();
        self->request(owner(key), retry_timeout, retry_atom::value, key)
          .then(
            [=](retry_result& first) mutable {
              auto total = std::make_shared<uint64_t>(first.applied);
              auto left
                = std::make_shared<std::size_t>(first.handed_off.size());
              if (*left == 0)
                promise.deliver(*total);
              for (auto& k : first.handed_off)
                self->request(owner(k), retry_timeout, retry_atom::value, k)
                  .then(
                    [=](retry_result& more) mutable {
                      *total += more.applied;
                      if (--*left == 0)
                        promise.deliver(*total);
                    },
                    [=](caf::error& err) mutable {
                      if (promise.pending())
                        promise.deliver(std::move(err));
                    });
            },
            [=](caf::error& err) mutable { promise.deliver(std::move(err)); });
        return promise;
      }
      return caf::make_error(caf::sec::invalid_argument,
                             "generation " + std::to_string(g) + " of " + name
                               + " is not running");
    },
    [=](tick_atom) { check_swaps(self); },
  };
}

} // namespace

void prepare_generations(const manager_config& cfg) {
  try {
    pqxx::connection conn{cfg.db_url};
    pqxx::work tx{conn};
    tx.exec("SELECT pg_advisory_xact_lock(" + std::to_string(schema_lock)
            + ")");
    for (auto& p : cfg.projections) {
      auto name = p->name();
      // A rebuild interrupted by a crash starts over when asked again.
      for (const auto& row :
           tx.exec_params("SELECT generation FROM projection_generations"
                          " WHERE projection = $1 AND state = 'building'",
                          name)) {
        auto g = row[0].as<int32_t>();
        drop_tables(tx, *p, g);
        tx.exec_params("UPDATE projection_generations SET state = 'retired'"
                       " WHERE projection = $1 AND generation = $2",
                       name, g);
        log_warn("projection", "dropped the interrupted rebuild " + name
                                 + " g" + std::to_string(g));
      }
      auto live = tx.exec_params("SELECT generation, partitions"
                                 "  FROM projection_generations"
                                 " WHERE projection = $1 AND state = 'live'",
                                 name);
      if (!live.empty()) {
        if (live[0][1].as<int32_t>() != cfg.partitions)
          throw std::runtime_error(
            "projection " + name + " generation "
            + live[0][0].as<std::string>() + " was built with "
            + live[0][1].as<std::string>() + " partitions, the node is "
            + "configured with " + std::to_string(cfg.partitions)
            + ": rebuild it, or keep the partition count");
        continue;
      }
      auto g = next_generation(tx, name);
      create_tables(tx, *p, g);
      point_views(tx, *p, g);
      tx.exec_params("INSERT INTO projection_generations"
                     " (projection, generation, state, partitions)"
                     " VALUES ($1, $2, 'live', $3)",
                     name, g, cfg.partitions);
      log_info("projection", "created " + name + " generation "
                               + std::to_string(g));
    }
    tx.commit();
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string{"cannot prepare read models: "}
                             + e.what());
  }
}

manager_actor spawn_manager(caf::actor_system& sys, manager_config cfg) {
  return sys.spawn<caf::detached>(manager, std::move(cfg));
}

} // namespace shoutflow::projection
