#include "actors/journal/journal_coordinator.hpp"

#include <caf/all.hpp>

#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace shoutflow::journal {

namespace {

using writer_actor = caf::typed_actor<caf::replies_to<
  batch_atom, std::vector<journal_write>>::with<std::vector<write_outcome>>>;

struct writer_state {
  std::unique_ptr<batch_writer> writer;
  static inline const char* name = "journal-writer";
};

writer_actor::behavior_type
writer(writer_actor::stateful_pointer<writer_state> self, journal_config cfg,
       std::size_t index, journal_metrics* metrics) {
  self->state.writer = std::make_unique<batch_writer>(
    cfg.db_url, cfg.node_id, "journal-writer-" + std::to_string(index),
    metrics, cfg.incarnation);
  return {
    [=](batch_atom, const std::vector<journal_write>& batch) {
      return self->state.writer->write(batch);
    },
  };
}

struct pending_write {
  journal_write write;
  caf::typed_response_promise<write_outcome> promise;
};

struct coordinator_state {
  journal_config cfg;
  journal_metrics* metrics = nullptr;
  std::vector<writer_actor> idle;
  std::size_t busy = 0;
  std::deque<pending_write> queue;
  bool flush_armed = false;
  journal_stats stats;
  std::vector<caf::typed_response_promise<bool>> drain_waiters;
  /// Writes queued or in flight per persistence id, and who waits for none.
  std::unordered_map<std::string, std::size_t> open;
  std::unordered_map<std::string,
                     std::vector<caf::typed_response_promise<bool>>>
    fences;
  static inline const char* name = "journal";
};

using coordinator_pointer
  = journal_actor::stateful_pointer<coordinator_state>;

void check_drained(coordinator_pointer self) {
  auto& st = self->state;
  if (st.queue.empty() && st.busy == 0) {
    for (auto& w : st.drain_waiters)
      w.deliver(true);
    st.drain_waiters.clear();
  }
}

/// One write of `pid` is answered: release fences once none is left.
void close_write(coordinator_pointer self, const std::string& pid) {
  auto& st = self->state;
  auto it = st.open.find(pid);
  if (it == st.open.end() || --it->second > 0)
    return;
  st.open.erase(it);
  auto waiting = st.fences.find(pid);
  if (waiting == st.fences.end())
    return;
  for (auto& p : waiting->second)
    p.deliver(true);
  st.fences.erase(waiting);
}

void dispatch(coordinator_pointer self) {
  auto& st = self->state;
  while (!st.idle.empty() && !st.queue.empty()) {
    auto n = std::min(st.queue.size(), st.cfg.max_batch);
    std::vector<journal_write> writes;
    std::vector<caf::typed_response_promise<write_outcome>> promises;
    std::vector<std::string> pids;
    writes.reserve(n);
    promises.reserve(n);
    pids.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      pids.push_back(st.queue.front().write.persistence_id);
      writes.push_back(std::move(st.queue.front().write));
      promises.push_back(std::move(st.queue.front().promise));
      st.queue.pop_front();
    }
    auto worker = st.idle.back();
    st.idle.pop_back();
    ++st.busy;
    auto events = std::size_t{0};
    for (auto& w : writes)
      events += w.events.size();
    // No timeout: a worker bounds its own statements (statement_timeout,
    // TCP keepalives); entities time out their own requests.
    self->request(worker, caf::infinite, batch_atom::value, std::move(writes))
      .then(
        [=](std::vector<write_outcome>& outcomes) mutable {
          auto& st = self->state;
          st.idle.push_back(worker);
          --st.busy;
          st.stats.batches += 1;
          st.stats.writes += n;
          st.stats.events += events;
          st.stats.largest_batch = std::max<uint64_t>(st.stats.largest_batch,
                                                      n);
          bool appended = false;
          for (std::size_t i = 0; i < promises.size(); ++i) {
            if (st.metrics != nullptr)
              switch (outcomes[i].status) {
                case write_status::ok:
                  break;
                case write_status::duplicate:
                  st.metrics->duplicates.Increment();
                  break;
                case write_status::precondition_failed:
                  st.metrics->precondition_failures.Increment();
                  break;
                case write_status::conflict:
                  st.metrics->conflicts.Increment();
                  break;
                case write_status::unavailable:
                  st.metrics->unavailable.Increment();
                  break;
                case write_status::fenced:
                  st.metrics->fenced.Increment();
                  break;
              }
            appended = appended
                       || (outcomes[i].status == write_status::ok
                           && !outcomes[i].positions.empty());
            promises[i].deliver(std::move(outcomes[i]));
            close_write(self, pids[i]);
          }
          if (appended && st.cfg.on_commit)
            caf::anon_send(st.cfg.on_commit, wake_atom::value);
          dispatch(self);
          check_drained(self);
        },
        [=](caf::error& err) mutable {
          auto& st = self->state;
          st.idle.push_back(worker);
          --st.busy;
          for (std::size_t i = 0; i < promises.size(); ++i) {
            write_outcome out;
            out.status = write_status::unavailable;
            out.detail = "journal worker failed: "
                         + self->system().render(err);
            promises[i].deliver(std::move(out));
            close_write(self, pids[i]);
          }
          dispatch(self);
          check_drained(self);
        });
  }
}

journal_actor::behavior_type coordinator(coordinator_pointer self,
                                         journal_config cfg,
                                         journal_metrics* metrics) {
  auto& st = self->state;
  st.metrics = metrics;
  for (std::size_t i = 0; i < cfg.writers; ++i)
    st.idle.push_back(self->spawn<caf::detached + caf::linked>(
      writer, cfg, i, metrics));
  st.cfg = std::move(cfg);
  return {
    [=](write_atom, journal_write& w) {
      auto& st = self->state;
      auto promise = self->make_response_promise<write_outcome>();
      ++st.open[w.persistence_id];
      st.queue.push_back({std::move(w), promise});
      if (st.queue.size() >= st.cfg.max_batch
          || st.cfg.batch_window.count() == 0) {
        dispatch(self);
      } else if (!st.flush_armed) {
        st.flush_armed = true;
        self->delayed_send(self, st.cfg.batch_window, flush_atom::value);
      }
      return promise;
    },
    [=](flush_atom) {
      self->state.flush_armed = false;
      dispatch(self);
    },
    [=](drain_atom) {
      auto promise = self->make_response_promise<bool>();
      self->state.drain_waiters.push_back(promise);
      check_drained(self);
      return promise;
    },
    [=](fence_atom, const std::string& pid) {
      auto promise = self->make_response_promise<bool>();
      if (self->state.open.count(pid) == 0)
        promise.deliver(true);
      else
        self->state.fences[pid].push_back(promise);
      return promise;
    },
    [=](stats_atom) { return self->state.stats; },
  };
}

} // namespace

journal_actor spawn_pg_journal(caf::actor_system& sys, journal_config cfg,
                               journal_metrics* metrics) {
  if (cfg.writers == 0)
    cfg.writers = 1;
  if (cfg.max_batch == 0)
    cfg.max_batch = 1;
  return sys.spawn(coordinator, std::move(cfg), metrics);
}

} // namespace shoutflow::journal
