#include "actors/journal/journal_coordinator.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <chrono>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
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
    cfg.db_url, cfg.node_id, "journal-writer-" + std::to_string(index), metrics,
    cfg.incarnation);
  return {
    [=](batch_atom, const std::vector<journal_write>& batch) {
      return self->state.writer->write(batch);
    },
  };
}

using clock_type = std::chrono::steady_clock;

/// An entity waiting for the outcome of its write. Answered at most once:
/// with the outcome, or — once `deadline` is near — as in doubt.
struct answer {
  caf::typed_response_promise<write_outcome> promise;
  clock_type::time_point deadline;
  bool answered = false;

  /// An outcome, or an error (deliver_in_doubt); only the first counts.
  template <class T>
  void deliver(T&& x) {
    if (!answered)
      promise.deliver(std::forward<T>(x));
    answered = true;
  }

  /// The entity treats an error as "outcome unknown" and stops (its next
  /// incarnation recovers behind the fence, so a late commit is read).
  void deliver_in_doubt() {
    deliver(caf::make_error(caf::sec::request_timeout));
  }
};

struct pending_write {
  journal_write write;
  answer reply;
};

/// A batch a worker is writing: its entities' answers, by write.
struct flight {
  std::vector<answer> answers;
  std::vector<std::string> pids;
};

struct coordinator_state {
  journal_config cfg;
  journal_metrics* metrics = nullptr;
  std::vector<writer_actor> idle;
  std::deque<pending_write> queue;
  /// The batches the workers are writing (one per busy worker).
  std::vector<std::shared_ptr<flight>> flying;
  bool flush_armed = false;
  bool expiry_armed = false;
  journal_stats stats;
  std::vector<caf::typed_response_promise<bool>> drain_waiters;
  /// Writes queued or in flight per persistence id, and who waits for none.
  std::unordered_map<std::string, std::size_t> open;
  std::unordered_map<std::string,
                     std::vector<caf::typed_response_promise<bool>>>
    fences;
  static inline const char* name = "journal";
};

using coordinator_pointer = journal_actor::stateful_pointer<coordinator_state>;

/// How often waiting writes are checked against their deadline: a write is
/// answered in doubt at most this much before its write_timeout, never
/// after it.
clock_type::duration expiry_period(const journal_config& cfg) {
  return std::max<clock_type::duration>(cfg.write_timeout / 20,
                                        std::chrono::milliseconds(5));
}

void arm_expiry(coordinator_pointer self) {
  auto& st = self->state;
  if (st.expiry_armed || (st.queue.empty() && st.flying.empty()))
    return;
  st.expiry_armed = true;
  self->delayed_send(self, expiry_period(st.cfg), expire_atom::value);
}

/// Answers in doubt every write whose deadline falls before the next check.
void expire(coordinator_pointer self) {
  auto& st = self->state;
  st.expiry_armed = false;
  auto horizon = clock_type::now() + expiry_period(st.cfg);
  auto check = [&](answer& a) {
    if (!a.answered && a.deadline <= horizon) {
      // Counted before the answer: whoever gets it sees the count include it.
      if (st.metrics != nullptr)
        st.metrics->in_doubt.Increment();
      a.deliver_in_doubt();
    }
  };
  for (auto& w : st.queue)
    check(w.reply);
  for (auto& f : st.flying)
    for (auto& a : f->answers)
      check(a);
  arm_expiry(self);
}

void check_drained(coordinator_pointer self) {
  auto& st = self->state;
  if (st.queue.empty() && st.flying.empty()) {
    for (auto& w : st.drain_waiters)
      w.deliver(true);
    st.drain_waiters.clear();
  }
}

/// One write of `pid` is finished: release fences once none is left. A
/// write answered in doubt stays open until its worker is done with it.
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

void count(journal_metrics* metrics, write_status status) {
  if (metrics == nullptr)
    return;
  switch (status) {
    case write_status::ok:
      break;
    case write_status::duplicate:
      metrics->duplicates.Increment();
      break;
    case write_status::precondition_failed:
      metrics->precondition_failures.Increment();
      break;
    case write_status::conflict:
      metrics->conflicts.Increment();
      break;
    case write_status::unavailable:
      metrics->unavailable.Increment();
      break;
    case write_status::fenced:
      metrics->fenced.Increment();
      break;
  }
}

void dispatch(coordinator_pointer self);

/// A worker is done with `f`: answer its writes (those not answered in
/// doubt already) and hand the worker the next batch.
void land(coordinator_pointer self, const std::shared_ptr<flight>& f,
          const writer_actor& worker, std::vector<write_outcome>* outcomes,
          const std::string& failure) {
  auto& st = self->state;
  st.idle.push_back(worker);
  st.flying.erase(std::find(st.flying.begin(), st.flying.end(), f));
  bool appended = false;
  for (std::size_t i = 0; i < f->answers.size(); ++i) {
    write_outcome out;
    if (outcomes != nullptr) {
      out = std::move((*outcomes)[i]);
    } else {
      out.status = write_status::unavailable;
      out.detail = failure;
    }
    count(st.metrics, out.status);
    appended = appended
               || (out.status == write_status::ok && !out.positions.empty());
    f->answers[i].deliver(std::move(out));
    close_write(self, f->pids[i]);
  }
  if (appended && st.cfg.on_commit)
    caf::anon_send(st.cfg.on_commit, wake_atom::value);
  dispatch(self);
  check_drained(self);
}

void dispatch(coordinator_pointer self) {
  auto& st = self->state;
  while (!st.idle.empty() && !st.queue.empty()) {
    auto n = std::min(st.queue.size(), st.cfg.max_batch);
    std::vector<journal_write> writes;
    auto f = std::make_shared<flight>();
    writes.reserve(n);
    f->answers.reserve(n);
    f->pids.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      f->pids.push_back(st.queue.front().write.persistence_id);
      writes.push_back(std::move(st.queue.front().write));
      f->answers.push_back(std::move(st.queue.front().reply));
      st.queue.pop_front();
    }
    st.flying.push_back(f);
    auto worker = st.idle.back();
    st.idle.pop_back();
    auto events = std::size_t{0};
    for (auto& w : writes)
      events += w.events.size();
    // No timeout: a worker bounds its own statements (statement_timeout,
    // TCP keepalives); the entities' deadlines are kept by expire().
    self->request(worker, caf::infinite, batch_atom::value, std::move(writes))
      .then(
        [=](std::vector<write_outcome>& outcomes) {
          auto& st = self->state;
          st.stats.batches += 1;
          st.stats.writes += n;
          st.stats.events += events;
          st.stats.largest_batch = std::max<uint64_t>(st.stats.largest_batch,
                                                      n);
          land(self, f, worker, &outcomes, {});
        },
        [=](caf::error& err) {
          land(self, f, worker, nullptr,
               "journal worker failed: " + self->system().render(err));
        });
  }
}

journal_actor::behavior_type coordinator(coordinator_pointer self,
                                         journal_config cfg,
                                         journal_metrics* metrics) {
  auto& st = self->state;
  st.metrics = metrics;
  for (std::size_t i = 0; i < cfg.writers; ++i)
    st.idle.push_back(
      self->spawn<caf::detached + caf::linked>(writer, cfg, i, metrics));
  st.cfg = std::move(cfg);
  return {
    [=](write_atom, journal_write& w) {
      auto& st = self->state;
      auto promise = self->make_response_promise<write_outcome>();
      ++st.open[w.persistence_id];
      st.queue.push_back(
        {std::move(w), {promise, clock_type::now() + st.cfg.write_timeout}});
      arm_expiry(self);
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
    [=](expire_atom) { expire(self); },
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
