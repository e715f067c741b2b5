#include "actors/projection/log_reader.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <tuple>

#include "actors/common/log.hpp"
#include "actors/journal/journal_actors.hpp"
#include "actors/journal/pg_session.hpp"
#include "actors/projection/partition.hpp"
#include "actors/projection/read_side_codec.hpp"

namespace shoutflow::projection {

// The cast's output column is named `tx`, not `tx_id`: PostgreSQL resolves a
// bare ORDER BY name to an output column first, and ordering by the xid's
// text puts 10000 before 9999 — events out of order, skipped and applied
// twice whenever the xid counter gains a digit.
//
// One statement, run in autocommit (no BEGIN, SET TRANSACTION, ROLLBACK):
// the events up to the horizon, then one row with a NULL tx that says
// whether committed events wait behind the horizon (rows at or past it: the
// cursor is always below it, as the horizon only moves up). That last test
// is an index range scan from the horizon, not EXISTS: once the statement is
// prepared, PostgreSQL's generic plan for EXISTS expects an early hit and
// scans the whole table — every idle poll read the log (113 ms at 300,000
// events). Five round trips per poll became one (docs/benchmarks.md, the
// issue 14 profile).

// The horizon: the oldest transaction still running at the statement's
// snapshot, leaving out the read side's own (sessions that never write
// events, known by their application_name: journal::session_role), or the
// snapshot's xmax when none is left. Every event below it is either visible
// to the snapshot or rolled back: its transaction was not running at the
// snapshot (or it would be the horizon or above it), or ran in a read-side
// session, which writes no events. A read-side transaction seen running by
// the snapshot and over by the time pg_stat_activity is read still counts:
// the horizon only errs low. backend_xid is a 32-bit xid; the running
// transactions lie within 2^31 of each other, so the low 32 bits of an
// xid8 name one. Without it a partition's open transaction (its fan-out,
// tens of milliseconds) held back every reader of the node, its own
// prefetch included (docs/benchmarks.md).
std::string gap_safe_horizon_sql() {
  return std::string{R"sql(coalesce(
  (SELECT min(x) FROM pg_snapshot_xip(pg_current_snapshot()) AS x
    WHERE x::text::bigint % 4294967296 NOT IN (
            SELECT backend_xid::text::bigint FROM pg_stat_activity
             WHERE application_name = ')sql"}
         + journal::read_side_application + R"sql('
               AND backend_xid IS NOT NULL)),
  pg_snapshot_xmax(pg_current_snapshot())))sql";
}

std::string log_fetch_sql() {
  return R"sql(
WITH h AS MATERIALIZED (SELECT )sql"
         + gap_safe_horizon_sql() + R"sql( AS xmin)
SELECT * FROM (
  SELECT tx_id::text AS tx, global_position, persistence_id, seq_nr,
         event_type, event_version, payload,
         (extract(epoch FROM recorded_at) * 1000)::bigint, NULL::boolean
    FROM events
   WHERE (tx_id, global_position) > ($1::text::xid8, $2::bigint)
     AND tx_id < (SELECT xmin FROM h)
     AND ($4::bigint = 0 OR global_position <= $4)
     AND ($5::bigint = 0
          OR recorded_at <= 'epoch'::timestamptz + $5 * interval '1 millisecond')
   ORDER BY tx_id, global_position
   LIMIT $3) AS visible
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       (SELECT 1 FROM events
         WHERE tx_id >= (SELECT xmin FROM h)
           AND ($4::bigint = 0 OR global_position <= $4)
           AND ($5::bigint = 0
                OR recorded_at <= 'epoch'::timestamptz
                                  + $5 * interval '1 millisecond')
         ORDER BY tx_id, global_position
         LIMIT 1) IS NOT NULL
)sql";
}

namespace {

// -- fetcher ------------------------------------------------------------------

void prepare_fetcher(pqxx::connection& c) {
  c.prepare("fetch", log_fetch_sql());
  c.prepare("head", "SELECT coalesce(max(global_position), 0) FROM events");
}

struct fetcher_state {
  std::unique_ptr<journal::pg_session> session;
  static inline const char* name = "log-fetcher";
};

fetcher_actor::behavior_type
fetcher(fetcher_actor::stateful_pointer<fetcher_state> self,
        std::string db_url) {
  self->state.session = std::make_unique<journal::pg_session>(
    db_url, "log-fetcher", prepare_fetcher);
  return {
    [=](fetch_atom, const cursor& after, int64_t limit, int64_t until_pos,
        int64_t until_ms) -> caf::result<fetch_result> {
      fetch_result out;
      auto r = self->state.session->run([&](pqxx::connection& conn) {
        out.events.clear();
        pqxx::nontransaction tx{conn};
        auto tx_text = std::to_string(after.tx);
        auto rows = tx.exec_prepared("fetch", tx_text, after.position, limit,
                                     until_pos, until_ms);
        out.events.reserve(rows.size());
        for (const auto& row : rows) {
          if (row[0].is_null()) {
            out.behind_horizon = row[8].as<bool>();
            continue;
          }
          journal::row_reader c{row};
          out.events.push_back(read_raw_event(c));
        }
      });
      if (!r)
        return journal::make_error(journal::db_errc::unavailable, r.detail);
      return out;
    },
    [=](head_atom) -> caf::result<int64_t> {
      int64_t head = 0;
      auto r = self->state.session->run([&](pqxx::connection& conn) {
        pqxx::nontransaction tx{conn};
        head = tx.exec_prepared1("head")[0].as<int64_t>();
      });
      if (!r)
        return journal::make_error(journal::db_errc::unavailable, r.detail);
      return head;
    },
  };
}

// -- reader -------------------------------------------------------------------

// Committed events wait behind an older open transaction: look again after
// 2 ms, doubling up to 16 ms while they still wait. The journal's commits
// wake the reader at once; the retry covers transactions that do not (a
// projection's, a lease renewal's). At 2 ms flat, caught-up readers polled
// 100+ times a second each under write load (the issue 14 profile).
constexpr auto horizon_retry = std::chrono::milliseconds(2);
constexpr auto horizon_retry_max = std::chrono::milliseconds(16);
constexpr auto failure_retry = std::chrono::milliseconds(200);
constexpr auto progress_every = std::chrono::seconds(5);

/// A routed batch: one share per partition run by this reader (the others'
/// slots stay empty and unsent).
struct routed_batch {
  std::vector<partition_batch> shares;
  cursor end;
  std::size_t events = 0;
  int64_t last_event_ms = 0;
};

struct reader_state {
  reader_config cfg;
  /// Indexes of the partitions this reader runs.
  std::vector<int32_t> owned;
  cursor read_cursor;
  cursor watermark;
  bool started = false;
  bool fetching = false;
  bool applying = false;
  bool idle = false;
  bool done = false;
  uint64_t tick = 0;
  /// The linger: no fetch before this; one is wanted when it has passed.
  std::chrono::steady_clock::time_point next_fetch;
  bool lingering = false;
  /// The next idle poll's delay: doubles while nothing comes, up to ten
  /// polls, back to one on a wake or an event. Wake-ups (this node's
  /// journal, other nodes' through the peers) make polling a fallback.
  std::chrono::milliseconds idle_poll{0};
  /// The next retry while events wait behind the horizon (doubling).
  std::chrono::milliseconds horizon_wait = horizon_retry;
  uint64_t next_batch = 0;
  std::unique_ptr<routed_batch> prefetched;
  std::size_t pending_acks = 0;
  cursor applying_end;
  std::size_t applying_events = 0;
  int64_t applying_last_ms = 0;
  int64_t events = 0;
  int64_t dead_letters = 0;
  int64_t last_event_ms = 0;
  std::multimap<cursor, caf::typed_response_promise<cursor>> awaiting;
  std::chrono::steady_clock::time_point last_progress;
  /// The share each partition applies, until it acknowledges (send_share).
  std::vector<caf::message> sent;
  /// The applying batch's changes, gathered from the partitions' acks.
  std::vector<change> changes;
  /// A partition could not say what part of the batch changed.
  bool changes_lost = false;
  /// Held before a swap: no new batch starts.
  bool held = false;
  std::vector<caf::typed_response_promise<cursor>> hold_waiters;
  static inline const char* name = "log-reader";
};

using pointer = reader_actor::stateful_pointer<reader_state>;

void fetch(pointer self);

std::string label(pointer self) {
  auto& c = self->state.cfg;
  auto out = c.proj->name() + " g" + std::to_string(c.generation);
  if (self->state.owned.size() == 1 && c.partitions.size() > 1)
    out += "/" + std::to_string(self->state.owned.front());
  return out;
}

void schedule_poll(pointer self, std::chrono::milliseconds after) {
  auto& st = self->state;
  st.idle = true;
  self->delayed_send(self, after, tick_atom::value, ++st.tick);
}

void release_awaiting(pointer self) {
  auto& st = self->state;
  while (!st.awaiting.empty() && st.awaiting.begin()->first <= st.watermark) {
    st.awaiting.begin()->second.deliver(st.watermark);
    st.awaiting.erase(st.awaiting.begin());
  }
}

std::unique_ptr<routed_batch> route(pointer self,
                                    std::vector<raw_event>& events) {
  auto& st = self->state;
  auto n = static_cast<int32_t>(st.cfg.partitions.size());
  auto batch = std::make_unique<routed_batch>();
  batch->shares.resize(static_cast<std::size_t>(n));
  auto id = ++st.next_batch;
  batch->end = events.back().at;
  batch->events = events.size();
  batch->last_event_ms = events.back().recorded_at_ms;
  for (auto& s : batch->shares) {
    s.id = id;
    s.end = batch->end;
  }
  // An event has one or two keys. It is moved into the last share that
  // takes it and copied only into the others: a rebuild routes 50,000
  // events a batch, nearly all to one share each.
  std::vector<std::pair<int32_t, std::string>> targets;
  std::vector<std::pair<int32_t, uint32_t>> placed; // share, index in it
  for (auto& e : events) {
    std::vector<std::string> keys;
    bool unrouted = false;
    try {
      keys = st.cfg.proj->keys(e);
    } catch (const std::exception&) {
      // Undecodable: park it under its stream's owner as poison, blocking
      // that key until it is fixed and retried.
      keys = {stream_owner(e.persistence_id)};
      unrouted = true;
    }
    std::sort(keys.begin(), keys.end());
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    targets.clear();
    placed.clear();
    for (auto& key : keys) {
      auto p = partition_of(key, n);
      if (!st.cfg.partitions[static_cast<std::size_t>(p)])
        continue; // another reader's partition
      targets.emplace_back(p, std::move(key));
      if (std::none_of(placed.begin(), placed.end(),
                       [p](const auto& x) { return x.first == p; }))
        placed.emplace_back(p, 0);
    }
    for (std::size_t i = 0; i < placed.size(); ++i) {
      auto& share = batch->shares[static_cast<std::size_t>(placed[i].first)];
      placed[i].second = static_cast<uint32_t>(share.events.size());
      if (i + 1 == placed.size())
        share.events.push_back(std::move(e));
      else
        share.events.push_back(e);
    }
    for (auto& [p, key] : targets) {
      auto it = std::find_if(placed.begin(), placed.end(),
                             [p = p](const auto& x) { return x.first == p; });
      batch->shares[static_cast<std::size_t>(p)].keyed.push_back(
        {it->second, std::move(key), unrouted});
    }
  }
  return batch;
}

void send_share(pointer self, std::size_t p);

void start_batch(pointer self, std::unique_ptr<routed_batch> batch) {
  auto& st = self->state;
  st.applying = true;
  st.applying_end = batch->end;
  st.applying_events = batch->events;
  st.applying_last_ms = batch->last_event_ms;
  st.pending_acks = st.owned.size();
  for (auto p : st.owned) {
    auto i = static_cast<std::size_t>(p);
    // Decided when the batch starts: a rebuild is promoted between batches.
    batch->shares[i].changes_wanted = st.cfg.publish;
    st.sent[i] = caf::make_message(apply_atom::value,
                                   std::move(batch->shares[i]));
    send_share(self, i);
  }
}

/// Starts the prefetched batch (if any) and fetches on, unless held.
void go_on(pointer self) {
  auto& st = self->state;
  if (st.held)
    return;
  if (st.prefetched && !st.applying)
    start_batch(self, std::move(st.prefetched));
  fetch(self);
}

/// What the batch committed, to every watch hub (through the sink).
void publish(pointer self) {
  auto& st = self->state;
  if (st.cfg.publish && st.cfg.sink) {
    // Partitions commit concurrently; subscribers see log order.
    std::stable_sort(st.changes.begin(), st.changes.end(),
                     [](const change& a, const change& b) {
                       return std::tie(a.tx, a.position)
                              < std::tie(b.tx, b.position);
                     });
    caf::anon_send(st.cfg.sink, batch_atom::value,
                   encode_batch(st.cfg.proj->name(), st.cfg.generation,
                                static_cast<int32_t>(st.cfg.partitions.size()),
                                st.owned, st.watermark, st.applying_end,
                                st.changes, st.changes_lost));
  }
  st.changes.clear();
  st.changes_lost = false;
}

void on_share_done(pointer self) {
  auto& st = self->state;
  if (--st.pending_acks > 0)
    return;
  st.applying = false;
  publish(self);
  st.watermark = st.applying_end;
  st.events += static_cast<int64_t>(st.applying_events);
  st.last_event_ms = st.applying_last_ms;
  release_awaiting(self);
  if (st.cfg.owner)
    caf::anon_send(st.cfg.owner, applied_atom::value, st.watermark);
  auto now = std::chrono::steady_clock::now();
  if (st.cfg.role != generation_role::live
      && now - st.last_progress > progress_every) {
    st.last_progress = now;
    log_info("projection", label(self) + " " + to_string(st.cfg.role) + ": "
                             + std::to_string(st.events)
                             + " events applied, at position "
                             + std::to_string(st.watermark.position));
  }
  if (st.held) {
    for (auto& w : st.hold_waiters)
      w.deliver(st.watermark);
    st.hold_waiters.clear();
    return;
  }
  go_on(self);
}

bool is_fenced(const caf::error& err) {
  return err.category() == caf::atom("db")
         && err.code() == static_cast<uint8_t>(journal::db_errc::fenced);
}

/// Sends partition `p` its share, kept in `st.sent[p]` until the partition
/// acknowledges it. No timeout: partitions bound their own database calls. A
/// failed share is sent again after a pause (nothing else is in flight to
/// that partition meanwhile, so order holds; partitions skip what they
/// applied). The message is built once and shared by the resends: a share
/// of a rebuild's batch holds tens of thousands of events, and it used to be
/// copied into the request and again into the failure handler (with the
/// routing's copies, a sixth of a shouts rebuild's node CPU;
/// docs/benchmarks.md, issue 14).
void send_share(pointer self, std::size_t p) {
  // The untyped handle lets the prepared message go out as it is; the typed
  // interface still checks what it carries.
  static_assert(caf::response_type_unbox<
                  caf::signatures_of_t<partition_actor>,
                  caf::detail::type_list<apply_atom, partition_batch>>::valid,
                "a partition applies (apply_atom, partition_batch)");
  auto& st = self->state;
  self
    ->request(caf::actor_cast<caf::actor>(st.cfg.partitions[p]), caf::infinite,
              st.sent[p])
    .then(
      [=](partition_ack& ack) {
        auto& st = self->state;
        st.sent[p] = caf::message{};
        st.dead_letters += static_cast<int64_t>(ack.dead_lettered);
        st.changes_lost = st.changes_lost || ack.changes_unknown;
        for (auto& c : ack.changes) {
          c.partition = static_cast<int32_t>(p);
          st.changes.push_back(std::move(c));
        }
        on_share_done(self);
      },
      [=](caf::error& err) {
        if (is_fenced(err)) {
          log_info("projection", label(self) + ": stopping, partition "
                                   + std::to_string(p) + " is fenced ("
                                   + self->system().render(err) + ")");
          self->quit(err);
          return;
        }
        log_warn("projection",
                 label(self) + ": partition " + std::to_string(p)
                   + " failed, will resend: " + self->system().render(err));
        self->delayed_send(self, failure_retry, retry_atom::value,
                           static_cast<uint64_t>(p));
      });
}

void fetch(pointer self) {
  auto& st = self->state;
  if (!st.started || st.fetching || st.prefetched || st.done || st.held
      || st.owned.empty())
    return;
  if (st.cfg.replay.linger.count() > 0) {
    auto now = std::chrono::steady_clock::now();
    if (now < st.next_fetch) {
      if (!st.lingering) {
        st.lingering = true;
        self->delayed_send(self, st.next_fetch - now, fetch_atom::value);
      }
      return;
    }
    st.next_fetch = now + st.cfg.replay.linger;
  }
  st.fetching = true;
  st.idle = false;
  auto& c = st.cfg;
  self
    ->request(c.fetcher, c.fetch_timeout, fetch_atom::value, st.read_cursor,
              c.replay.batch_size, c.replay.until_position, c.replay.until_ms)
    .then(
      [=](fetch_result& res) {
        auto& st = self->state;
        st.fetching = false;
        if (res.events.empty()) {
          if (st.cfg.replay.point_in_time() && !res.behind_horizon
              && !st.applying) {
            st.done = true;
            log_info("projection", label(self)
                                     + ": point-in-time build "
                                       "complete at position "
                                     + std::to_string(st.watermark.position));
            if (st.cfg.owner)
              caf::anon_send(st.cfg.owner, built_atom::value,
                             st.cfg.proj->name(), st.cfg.generation);
            return;
          }
          if (res.behind_horizon) {
            schedule_poll(self, st.horizon_wait);
            st.horizon_wait = std::min(st.horizon_wait * 2, horizon_retry_max);
            return;
          }
          auto poll = st.cfg.replay.poll;
          st.idle_poll = std::min(std::max(st.idle_poll * 2, poll), poll * 10);
          schedule_poll(self, st.idle_poll);
          return;
        }
        st.idle_poll = std::chrono::milliseconds(0);
        st.horizon_wait = horizon_retry;
        st.read_cursor = res.events.back().at;
        auto batch = route(self, res.events);
        if (st.applying || st.held) {
          st.prefetched = std::move(batch);
          return;
        }
        start_batch(self, std::move(batch));
        fetch(self); // prefetch the next batch while this one applies
      },
      [=](caf::error& err) {
        self->state.fetching = false;
        log_warn("projection",
                 label(self) + ": fetch failed: " + self->system().render(err));
        schedule_poll(self, failure_retry);
      });
}

/// Quits, telling whoever awaits a watermark (CAF 0.17 drops an unanswered
/// promise silently).
void stop(pointer self, caf::error reason) {
  for (auto& kv : self->state.awaiting)
    kv.second.deliver(caf::make_error(caf::sec::request_receiver_down));
  self->state.awaiting.clear();
  self->quit(std::move(reason));
}

/// Starts from the lowest offset of its partitions (retrying while the
/// database is unreachable).
void start(pointer self) {
  auto& st = self->state;
  auto n = st.owned.size();
  auto offsets = std::make_shared<std::vector<cursor>>();
  auto failed = std::make_shared<bool>(false);
  for (auto p : st.owned)
    self
      ->request(st.cfg.partitions[static_cast<std::size_t>(p)],
                std::chrono::seconds(30), offset_atom::value)
      .then(
        [=](cursor& c) {
          offsets->push_back(c);
          if (offsets->size() < n || *failed)
            return;
          auto& st = self->state;
          st.watermark = *std::min_element(offsets->begin(), offsets->end());
          st.read_cursor = st.watermark;
          st.started = true;
          st.last_progress = std::chrono::steady_clock::now();
          log_info("projection", label(self) + " " + to_string(st.cfg.role)
                                   + " starts after position "
                                   + std::to_string(st.watermark.position));
          release_awaiting(self);
          fetch(self);
        },
        [=](caf::error& err) {
          if (*failed)
            return;
          *failed = true;
          log_warn("projection", label(self) + ": cannot read offsets ("
                                   + self->system().render(err)
                                   + "); retrying");
          self->delayed_send(self, failure_retry, tick_atom::value,
                             uint64_t{0});
        });
}

reader_actor::behavior_type reader(pointer self, reader_config cfg) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  for (std::size_t p = 0; p < st.cfg.partitions.size(); ++p)
    if (st.cfg.partitions[p])
      st.owned.push_back(static_cast<int32_t>(p));
  st.sent.resize(st.cfg.partitions.size());
  start(self);
  if (!st.cfg.fetch_timeout.valid()) { // caf::infinite
    self->monitor(st.cfg.fetcher);
    self->set_down_handler([=](caf::down_msg& msg) {
      if (msg.source != self->state.cfg.fetcher.address())
        return;
      log_warn("projection", label(self) + ": its log fetcher stopped ("
                               + self->system().render(msg.reason) + ")");
      stop(self, msg.reason);
    });
  }
  self->set_exit_handler(
    [=](caf::exit_msg& msg) { stop(self, std::move(msg.reason)); });
  return {
    [=](wake_atom) {
      auto& st = self->state;
      st.idle_poll = std::chrono::milliseconds(0);
      st.horizon_wait = horizon_retry;
      if (st.idle)
        fetch(self);
    },
    [=](tick_atom, uint64_t n) {
      auto& st = self->state;
      if (!st.started) {
        if (n == 0)
          start(self);
        return;
      }
      if (n == st.tick && st.idle)
        fetch(self);
    },
    [=](fetch_atom) {
      self->state.lingering = false;
      fetch(self);
    },
    [=](retry_atom, uint64_t p) { send_share(self, p); },
    [=](await_atom, const cursor& c) {
      auto& st = self->state;
      auto promise = self->make_response_promise<cursor>();
      if (st.started && c <= st.watermark)
        promise.deliver(st.watermark);
      else
        st.awaiting.emplace(c, promise);
      return promise;
    },
    [=](hold_atom, bool on) -> caf::result<cursor> {
      auto& st = self->state;
      st.held = on;
      if (!on) {
        go_on(self);
        return st.watermark;
      }
      if (!st.applying)
        return st.watermark;
      auto promise = self->make_response_promise<cursor>();
      st.hold_waiters.push_back(promise);
      return promise;
    },
    [=](promote_atom, const caf::actor& sink) {
      auto& st = self->state;
      st.cfg.sink = sink;
      st.cfg.publish = true;
      st.held = false;
      go_on(self);
    },
    [=](status_atom) {
      auto& st = self->state;
      reader_status s;
      s.projection = st.cfg.proj->name();
      s.generation = st.cfg.generation;
      s.state = to_string(st.cfg.role);
      s.watermark = st.watermark;
      s.events = st.events;
      s.dead_letters = st.dead_letters;
      s.last_event_ms = st.last_event_ms;
      s.done = st.done;
      return s;
    },
  };
}

} // namespace

fetcher_actor spawn_fetcher(caf::actor_system& sys, const std::string& db_url) {
  return sys.spawn<caf::detached>(fetcher, db_url);
}

reader_actor spawn_reader(caf::actor_system& sys, reader_config cfg) {
  return sys.spawn(reader, std::move(cfg));
}

} // namespace shoutflow::projection
