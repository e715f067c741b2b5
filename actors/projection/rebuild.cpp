#include "actors/projection/rebuild.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <functional>
#include <memory>
#include <vector>

#include "actors/common/log.hpp"
#include "actors/journal/journal_actors.hpp"
#include "actors/journal/pg_session.hpp"
#include "actors/projection/generations.hpp"
#include "actors/projection/log_reader.hpp"
#include "actors/projection/partition.hpp"
#include "actors/projection/read_side_codec.hpp"

namespace shoutflow::projection {

namespace {

constexpr const char* component = "projection";
/// How often the next step of the protocol is tried when no batch comes.
constexpr auto tick_every = std::chrono::milliseconds(100);
/// Statement timeout while the query indexes are built: one index over a
/// large generation takes minutes, the bookkeeping's statements seconds.
constexpr auto finish_timeout = std::chrono::minutes(30);

struct rebuild_state {
  rebuild_config cfg;
  std::unique_ptr<journal::pg_session> session;
  fetcher_actor fetcher;
  std::vector<partition_actor> partitions;
  reader_actor reader;
  /// Everything up to here is applied (the reader's last word).
  cursor watermark;
  /// Where the reader was held and promoted (publishing from there on).
  cursor promoted_at;
  /// The query indexes are built and the tables analyzed (finish_build).
  bool finished = false;
  static inline const char* name = "projection-rebuild";
};

using pointer = rebuild_actor::stateful_pointer<rebuild_state>;

std::string label(pointer self) {
  return self->state.cfg.proj->name() + " g"
         + std::to_string(self->state.cfg.generation);
}

/// What `finish` does next: with whether the tables are complete.
using finished_fn = std::function<void(bool)>;

void finish(pointer self, finished_fn next);

/// The handlers every phase shares, with the phase's step on a tick.
template <class Step>
rebuild_actor::behavior_type phase(pointer self, Step step) {
  return {
    [=](wake_atom) { self->send(self->state.reader, wake_atom::value); },
    [=](status_atom) {
      auto promise = self->make_response_promise<reader_status>();
      promise.delegate(self->state.reader, status_atom::value);
      return promise;
    },
    [=](retry_atom, const std::string& key) {
      auto& st = self->state;
      auto p = partition_of(key, st.cfg.partitions);
      auto promise = self->make_response_promise<retry_result>();
      promise.delegate(st.partitions[static_cast<std::size_t>(p)],
                       retry_atom::value, key);
      return promise;
    },
    [=](tick_atom) {
      self->delayed_send(self, tick_every, tick_atom::value);
      step();
    },
    [=](applied_atom, const cursor& watermark) {
      self->state.watermark = watermark;
      step();
    },
    [=](built_atom, const std::string&, int32_t generation) {
      auto& st = self->state;
      if (generation != st.cfg.generation || !st.cfg.replay.point_in_time())
        return;
      // Left in place for inspection: complete, indexes included. A build
      // that could not get them is still complete in its rows.
      finish(self, [=](bool) {
        auto& st = self->state;
        auto r = st.session->run([&](pqxx::connection& conn) {
          mark_stopped(conn, st.cfg.proj->name(), st.cfg.generation);
        });
        if (!r)
          log_warn(component, "could not record the end of " + label(self)
                                + ": " + r.detail);
        self->quit();
      });
    },
  };
}

rebuild_actor::behavior_type building(pointer self);

/// Builds a generation's query indexes and statistics (finish_build) on a
/// session of its own with a long statement timeout, answers, and quits:
/// the index step takes seconds to minutes, and the rebuild actor keeps
/// answering status requests meanwhile (a manager waits 5 s for them).
using finisher_actor
  = caf::typed_actor<caf::replies_to<index_atom>::with<bool>>;

finisher_actor::behavior_type finisher(finisher_actor::pointer self,
                                       std::string db_url, projection_ptr proj,
                                       int32_t generation) {
  return {
    [=](index_atom) -> caf::result<bool> {
      journal::pg_session session{db_url, "projection-rebuild", nullptr,
                                  finish_timeout,
                                  journal::session_role::read_side};
      auto r = session.run(
        [&](pqxx::connection& conn) { finish_build(conn, *proj, generation); });
      self->quit();
      if (!r)
        return journal::make_error(journal::db_errc::unavailable, r.detail);
      return true;
    },
  };
}

/// Completes the tables for queries (generations.hpp, finish_build), once:
/// a build is promoted only with them. Calls `next` with whether they are
/// complete; the actor goes on serving in the meantime.
void finish(pointer self, finished_fn next) {
  auto& st = self->state;
  if (st.finished) {
    next(true);
    return;
  }
  auto started = std::chrono::steady_clock::now();
  auto helper = self->system().spawn<caf::detached>(
    finisher, st.cfg.db_url, st.cfg.proj, st.cfg.generation);
  // Stops with the rebuild (after its statement).
  self->link_to(helper);
  self
    ->request(helper, finish_timeout + std::chrono::minutes(1),
              index_atom::value)
    .then(
      [=](bool) {
        self->state.finished = true;
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::steady_clock::now() - started)
                    .count();
        log_info(component, label(self)
                              + ": query indexes built, tables analyzed in "
                              + std::to_string(ms) + " ms");
        next(true);
      },
      [=](caf::error& err) {
        log_warn(component, "could not build the query indexes of "
                              + label(self) + " (" + self->system().render(err)
                              + "); will retry");
        next(false);
      });
}

/// Swaps in the build once the live generation allows it. Returns whether
/// it did (and the actor quits).
bool try_swap_in(pointer self) {
  auto& st = self->state;
  swap_outcome out;
  auto r = st.session->run([&](pqxx::connection& conn) {
    out = try_swap(conn, *st.cfg.proj, st.cfg.generation, st.promoted_at);
  });
  if (!r) {
    log_warn(component, "swap of " + label(self) + " failed (" + r.detail
                          + "); will retry");
    return false;
  }
  if (!out.swapped) {
    log_debug(component, "swap of " + label(self) + " not yet: " + out.why);
    return false;
  }
  auto name = st.cfg.proj->name();
  log_info(component, name + ": generation " + std::to_string(st.cfg.generation)
                        + " is live (rebuilt from zero), generation "
                        + std::to_string(out.retired) + " retired");
  if (st.cfg.sink)
    caf::anon_send(st.cfg.sink, batch_atom::value,
                   encode_swap(name, out.retired, st.cfg.generation,
                               out.retired_offsets));
  if (st.cfg.owner)
    caf::anon_send(st.cfg.owner, retire_atom::value, name, out.retired);
  // The retired generation's partitions are fenced (the swap waited for
  // the transactions in flight): nothing writes its tables any more.
  auto d = st.session->run([&](pqxx::connection& conn) {
    drop_generation(conn, *st.cfg.proj, out.retired);
  });
  if (!d)
    log_warn(component, "could not drop " + name + " g"
                          + std::to_string(out.retired) + ": " + d.detail);
  self->quit();
  return true;
}

rebuild_actor::behavior_type promoted(pointer self) {
  return phase(self, [=] { try_swap_in(self); });
}

/// Waits for the reader to stop at a batch boundary, then promotes it.
rebuild_actor::behavior_type holding(pointer self) {
  auto reader = self->state.reader;
  self->request(reader, std::chrono::seconds(30), hold_atom::value, true)
    .then(
      [=](cursor& at) {
        // Held, so no batch is in flight: the indexes are built from what
        // is applied up to `at`, and the reader goes on after them.
        finish(self, [=](bool complete) {
          auto& st = self->state;
          if (!complete) {
            caf::anon_send(reader, hold_atom::value, false);
            self->become(building(self));
            return;
          }
          // Publishes from `at` on: the hubs keep its changes aside until
          // the swap.
          st.promoted_at = at;
          self->send(reader, promote_atom::value, st.cfg.sink);
          log_info(component, label(self) + " caught up; promoted at position "
                                + std::to_string(at.position));
          // At once: with the live generation idle the swap holds now.
          if (!try_swap_in(self))
            self->become(promoted(self));
        });
      },
      [=](caf::error&) {
        caf::anon_send(reader, hold_atom::value, false);
        self->become(building(self));
      });
  return phase(self, [] {});
}

/// Replays the log until the watermark reaches the live generation's lowest
/// committed offset.
rebuild_actor::behavior_type building(pointer self) {
  return phase(self, [=] {
    auto& st = self->state;
    if (st.cfg.replay.point_in_time())
      return;
    auto name = st.cfg.proj->name();
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
    if (r && known && !(st.watermark < lowest))
      self->become(holding(self));
  });
}

rebuild_actor::behavior_type rebuild(pointer self, rebuild_config cfg) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.session = std::make_unique<journal::pg_session>(
    st.cfg.db_url, "projection-rebuild", nullptr,
    journal::default_statement_timeout, journal::session_role::read_side);
  auto& sys = self->system();
  st.fetcher = spawn_fetcher(sys, st.cfg.db_url);
  for (int32_t i = 0; i < st.cfg.partitions; ++i) {
    partition_config pc;
    pc.db_url = st.cfg.db_url;
    pc.proj = st.cfg.proj;
    pc.generation = st.cfg.generation;
    pc.index = i;
    pc.count = st.cfg.partitions;
    pc.fence.role = generation_role::building;
    st.partitions.push_back(spawn_partition(sys, std::move(pc)));
  }
  reader_config rc;
  rc.proj = st.cfg.proj;
  rc.generation = st.cfg.generation;
  rc.role = st.cfg.replay.point_in_time() ? generation_role::point_in_time
                                          : generation_role::building;
  rc.partitions = st.partitions;
  rc.fetcher = st.fetcher;
  rc.replay = st.cfg.replay;
  rc.owner = caf::actor_cast<caf::actor>(self);
  rc.publish = false;
  st.reader = spawn_reader(sys, std::move(rc));
  std::vector<caf::actor> children{caf::actor_cast<caf::actor>(st.reader),
                                   caf::actor_cast<caf::actor>(st.fetcher)};
  for (auto& p : st.partitions)
    children.push_back(caf::actor_cast<caf::actor>(p));
  self->attach_functor([children] {
    for (auto& a : children)
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  });
  self->delayed_send(self, tick_every, tick_atom::value);
  return building(self);
}

} // namespace

rebuild_actor spawn_rebuild(caf::actor_system& sys, rebuild_config cfg) {
  return sys.spawn<caf::detached>(rebuild, std::move(cfg));
}

} // namespace shoutflow::projection
