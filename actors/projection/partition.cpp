#include "actors/projection/partition.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <set>
#include <unordered_map>

#include "actors/common/log.hpp"
#include "actors/entity/sharding.hpp"
#include "actors/journal/journal_actors.hpp"
#include "actors/journal/pg_session.hpp"
#include "actors/projection/read_side_codec.hpp"

namespace shoutflow::projection {

namespace {

constexpr const char* load_offset_sql
  = "SELECT tx_id::text, position FROM projection_offsets"
    " WHERE projection = $1 AND generation = $2 AND partition = $3";

constexpr const char* save_offset_sql
  = "INSERT INTO projection_offsets AS o (projection, generation, partition,"
    "                                     tx_id, position, events)"
    " VALUES ($1, $2, $3, $4::text::xid8, $5, $6)"
    " ON CONFLICT (projection, generation, partition) DO UPDATE"
    "   SET tx_id = excluded.tx_id, position = excluded.position,"
    "       events = o.events + excluded.events, updated_at = now()";

constexpr const char* blocked_sql
  = "SELECT DISTINCT key FROM projection_dead_letters"
    " WHERE projection = $1 AND generation = $2 AND partition = $3";

constexpr const char* dead_letter_sql
  = "INSERT INTO projection_dead_letters (projection, generation, partition,"
    "  key, tx_id, global_position, persistence_id, seq_nr, event_type, error,"
    "  unrouted)"
    " VALUES ($1, $2, $3, $4, $5::text::xid8, $6, $7, $8, $9, $10, $11)";

constexpr const char* key_dead_letters_sql
  = "SELECT d.id, d.tx_id::text, e.global_position, e.persistence_id,"
    "       e.seq_nr, e.event_type, e.event_version, e.payload,"
    "       (extract(epoch FROM e.recorded_at) * 1000)::bigint, d.unrouted"
    "  FROM projection_dead_letters d"
    "  JOIN events e ON e.global_position = d.global_position"
    " WHERE d.projection = $1 AND d.generation = $2 AND d.key = $3"
    " ORDER BY d.tx_id, d.global_position";

constexpr const char* forget_dead_letter_sql
  = "DELETE FROM projection_dead_letters WHERE id = $1";

constexpr const char* record_error_sql
  = "UPDATE projection_dead_letters SET error = $2 WHERE id = $1";

// The fence (partition.hpp): both rows locked until COMMIT, so neither a
// swap nor a new owner of the lease gets past a batch in flight.
constexpr const char* fence_sql
  = "WITH g AS (SELECT 1 FROM projection_generations"
    "            WHERE projection = $1 AND generation = $2 AND state = $3"
    "              FOR KEY SHARE),"
    "     l AS (SELECT 1 FROM leases"
    "            WHERE resource = $4 AND part = $5 AND epoch = $6"
    "              AND owner_incarnation = $7"
    "              AND expires_at > clock_timestamp()"
    "              FOR KEY SHARE)"
    " SELECT (SELECT count(*) FROM g), (SELECT count(*) FROM l)";

// The outbox (migration 0008): what a live partition's batch changed, in
// its transaction, for hubs that miss the broadcast. Written with the
// offset, in one statement: one round trip less for every live batch that
// changed something ($7 tx and $8 position before the batch, $9 the batch).
const std::string save_offset_and_log_sql
  = "WITH o AS (" + std::string{save_offset_sql}
    + ") INSERT INTO projection_change_log (projection, generation,"
      "   partition, after_tx, after_position, to_tx, to_position, batch)"
      " VALUES ($1, $2, $3, $7::text::xid8, $8, $4::text::xid8, $5, $9)"
      " ON CONFLICT DO NOTHING";

/// Thrown inside a transaction whose fence failed: nothing is written.
struct fenced_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct partition_state {
  partition_config cfg;
  std::string suffix;
  std::unique_ptr<journal::pg_session> session;
  bool loaded = false;
  cursor offset;
  std::set<std::string> blocked;
  /// Set once a fence failed: every later call fails the same way.
  std::string fenced;
  /// A call failed: its COMMIT may have happened, and whatever of the
  /// next batch is skipped as applied had changes nobody reported.
  bool in_doubt = false;
  /// Its changes are published: a live generation, or a build since its
  /// promotion. Until then a build's `apply` gets no changes to fill and
  /// may leave tables to read_model::completion_sql; so do its retries.
  bool publishing = true;
  static inline const char* name = "projection-partition";
};

using pointer = partition_actor::stateful_pointer<partition_state>;

/// Throws fenced_error unless this partition may still write (see above).
void check_fence(pointer self, pqxx::transaction_base& tx) {
  auto& c = self->state.cfg;
  auto& f = c.fence;
  if (!f.role)
    return;
  auto row = exec_prepared_sql(tx, fence_sql, c.proj->name(), c.generation,
                               generation_state(*f.role), f.lease_resource,
                               c.index, f.lease_epoch, f.incarnation)
               .at(0);
  if (row[0].as<int64_t>() == 0)
    throw fenced_error(c.proj->name() + " generation "
                       + std::to_string(c.generation) + " is no longer "
                       + generation_state(*f.role));
  if (!f.lease_resource.empty() && row[1].as<int64_t>() == 0)
    throw fenced_error(
      "lease " + f.lease_resource + "#" + std::to_string(c.index) + " at epoch "
      + std::to_string(f.lease_epoch) + " is no longer this node's");
}

/// Runs `fn` on the session; a failed fence becomes `fenced` (and stays).
journal::db_result
run_fenced(pointer self, const std::function<void(pqxx::connection&)>& fn) {
  auto& st = self->state;
  if (!st.fenced.empty())
    return {journal::db_failure::error, st.fenced};
  std::string fenced;
  auto r = st.session->run([&](pqxx::connection& conn) {
    try {
      fn(conn);
    } catch (const fenced_error& e) {
      fenced = e.what();
    }
  });
  if (!fenced.empty()) {
    st.fenced = fenced;
    log_warn("projection", st.cfg.proj->name() + "/"
                             + std::to_string(st.cfg.index)
                             + " fenced: " + fenced);
  }
  return r;
}

/// Sets `sub`'s savepoint now. libpqxx 6 sends a subtransaction's
/// SAVEPOINT lazily, with its first exec(); exec_prepared() and
/// exec_params() skip that step. Every read-model statement is prepared,
/// so an event that failed in SQL failed the whole transaction, and the
/// subtransaction's rollback had no savepoint to return to: the next
/// statement got 25P02 and the batch was retried forever instead of
/// dead-lettered. The empty statement sets it (a round trip more, on the
/// poison path only).
void set_savepoint(pqxx::subtransaction& sub) {
  sub.exec0("");
}

caf::error fenced_error_of(pointer self) {
  return journal::make_error(journal::db_errc::fenced, self->state.fenced);
}

/// Database and connection problems are retried by the caller; anything
/// else a projection throws marks a poison event.
bool is_infrastructure(const std::exception& e) {
  if (dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr
      || dynamic_cast<const pqxx::in_doubt_error*>(&e) != nullptr)
    return true;
  if (auto* sql = dynamic_cast<const pqxx::sql_error*>(&e))
    return journal::is_transient_sqlstate(sql->sqlstate());
  return false;
}

void ensure_loaded(pointer self, pqxx::connection& conn) {
  auto& st = self->state;
  if (st.loaded)
    return;
  pqxx::read_transaction tx{conn};
  auto& c = st.cfg;
  auto rows = exec_prepared_sql(tx, load_offset_sql, c.proj->name(),
                                c.generation, c.index);
  st.offset = rows.empty() ? cursor{}
                           : cursor{std::stoull(rows[0][0].as<std::string>()),
                                    rows[0][1].as<int64_t>()};
  st.blocked.clear();
  for (const auto& row : exec_prepared_sql(tx, blocked_sql, c.proj->name(),
                                           c.generation, c.index))
    st.blocked.insert(row[0].as<std::string>());
  st.loaded = true;
}

/// Writes the offset and, for a live partition whose batch changed
/// something, the batch's changes into the outbox (tagged with this
/// partition, as the reader publishes them).
void save_offset(pointer self, pqxx::transaction_base& tx, const cursor& end,
                 uint64_t events, std::vector<change>& changes) {
  auto& st = self->state;
  auto& c = st.cfg;
  for (auto& ch : changes)
    ch.partition = c.index;
  auto end_tx = std::to_string(end.tx);
  auto count = static_cast<int64_t>(events);
  if (changes.empty() || c.fence.role != generation_role::live) {
    exec_prepared_sql(tx, save_offset_sql, c.proj->name(), c.generation,
                      c.index, end_tx, end.position, count);
    return;
  }
  auto batch = encode_batch(c.proj->name(), c.generation, c.count, {c.index},
                            st.offset, end, changes);
  exec_prepared_sql(tx, save_offset_and_log_sql, c.proj->name(), c.generation,
                    c.index, end_tx, end.position, count,
                    std::to_string(st.offset.tx), st.offset.position,
                    pqxx::binarystring{batch});
}

/// Records `e` as a dead letter of `key` in partition `index` (this one
/// unless a fixed unrouted event is handed to another).
void dead_letter(pointer self, pqxx::transaction_base& tx, const raw_event& e,
                 const std::string& key, const std::string& error,
                 bool unrouted, int32_t index) {
  auto& c = self->state.cfg;
  tx.exec_params(dead_letter_sql, c.proj->name(), c.generation, index, key,
                 std::to_string(e.at.tx), e.at.position, e.persistence_id,
                 e.seq_nr, e.type, error, unrouted);
}

void dead_letter(pointer self, pqxx::transaction_base& tx, const raw_event& e,
                 const keyed_ref& k, const std::string& error) {
  dead_letter(self, tx, e, k.key, error, k.unrouted, self->state.cfg.index);
}

/// Why the projection cannot name an unrouted event's keys.
std::string routing_error(pointer self, const raw_event& e) {
  try {
    self->state.cfg.proj->keys(e);
  } catch (const std::exception& err) {
    return err.what();
  }
  return "its keys were unknown when it was read";
}

/// Counts a committed batch. The visibility delay of an event runs from
/// its recorded_at — the journal transaction's start by the database clock,
/// carried in every row at no extra cost — to now by this node's clock: it
/// exceeds the true commit-to-visible time by that transaction's BEGIN to
/// COMMIT (shoutflow_journal_commit_seconds) and is off by the clock skew
/// between this node and the database (NTP keeps it to milliseconds). The
/// exact commit time would need track_commit_timestamp, a server restart.
void record_commit(const projection_metrics::per_projection* m,
                   const partition_batch& batch, const cursor& before,
                   const partition_ack& ack) {
  if (m == nullptr)
    return;
  m->applied->Increment(static_cast<double>(ack.applied));
  if (ack.dead_lettered > 0)
    m->dead_letters->Increment(static_cast<double>(ack.dead_lettered));
  if (ack.applied == 0)
    return;
  auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count();
  for (auto& e : batch.events)
    if (before < e.at && e.recorded_at_ms > 0)
      m->visibility_delay->Observe(
        static_cast<double>(std::max<int64_t>(now_ms - e.recorded_at_ms, 0))
        / 1000.0);
}

caf::result<partition_ack> apply_batch(pointer self,
                                       const partition_batch& batch) {
  auto& st = self->state;
  partition_ack ack;
  ack.id = batch.id;
  std::vector<change> changes;
  cursor before;
  st.publishing = st.publishing || batch.changes_wanted;
  auto r = run_fenced(self, [&](pqxx::connection& conn) {
    ensure_loaded(self, conn);
    before = st.offset;
    ack.applied = 0;
    ack.dead_lettered = 0;
    ack.changes_unknown = false;
    changes.clear();
    if (batch.end <= st.offset) {
      ack.changes_unknown = st.in_doubt;
      return; // redelivered: applied before
    }
    std::vector<keyed_event> live;
    std::vector<const keyed_ref*> parked;
    // Poison known up front (an unrouted event) takes the slow path.
    bool poisoned = false;
    for (auto& k : batch.keyed) {
      auto& e = batch.events[k.index];
      if (e.at <= st.offset) {
        ack.changes_unknown = st.in_doubt;
        continue;
      }
      if (st.blocked.count(k.key) > 0)
        parked.push_back(&k);
      else
        live.push_back({&e, k.key});
      poisoned = poisoned || (k.unrouted && st.blocked.count(k.key) == 0);
    }
    // Fast path: the whole batch in one transaction.
    if (!poisoned) {
      pqxx::work tx{conn};
      check_fence(self, tx);
      try {
        st.cfg.proj->apply(tx, st.suffix, live,
                           st.publishing ? &changes : nullptr);
        for (auto* k : parked)
          dead_letter(self, tx, batch.events[k->index], *k, "");
        save_offset(self, tx, batch.end, live.size(), changes);
        tx.commit();
        ack.applied = live.size();
        ack.dead_lettered = parked.size();
      } catch (const std::exception& e) {
        if (is_infrastructure(e))
          throw;
        poisoned = true;
        changes.clear();
        log_warn("projection", st.cfg.proj->name() + "/"
                                 + std::to_string(st.cfg.index)
                                 + ": batch refused (" + e.what()
                                 + "); isolating the poison event");
      }
    }
    if (!poisoned)
      return;
    // Slow path: one event at a time, each in a savepoint; a failing event
    // is dead-lettered and blocks its key. In log order, including parked
    // events, so a key blocked mid-batch parks its later events.
    pqxx::work tx{conn};
    check_fence(self, tx);
    std::set<std::string> blocked = st.blocked;
    for (auto& k : batch.keyed) {
      auto& e = batch.events[k.index];
      if (e.at <= st.offset)
        continue;
      if (blocked.count(k.key) > 0) {
        dead_letter(self, tx, e, k, "");
        ++ack.dead_lettered;
        continue;
      }
      std::vector<change> one;
      try {
        if (k.unrouted)
          throw std::runtime_error(routing_error(self, e));
        pqxx::subtransaction sub{tx};
        set_savepoint(sub);
        st.cfg.proj->apply(sub, st.suffix, {{&e, k.key}},
                           st.publishing ? &one : nullptr);
        sub.commit();
        changes.insert(changes.end(), one.begin(), one.end());
        ++ack.applied;
      } catch (const std::exception& err) {
        if (is_infrastructure(err))
          throw;
        dead_letter(self, tx, e, k, err.what());
        blocked.insert(k.key);
        ++ack.dead_lettered;
        log_error("projection", st.cfg.proj->name() + ": dead letter for key '"
                                  + k.key + "' at position "
                                  + std::to_string(e.at.position) + ": "
                                  + err.what());
      }
    }
    save_offset(self, tx, batch.end, ack.applied, changes);
    tx.commit();
    st.blocked = std::move(blocked);
  });
  if (!st.fenced.empty())
    return fenced_error_of(self);
  if (!r) {
    // The outcome may be unknown (a COMMIT cut off): the database, not
    // this actor's memory, says what was applied before the next attempt.
    st.loaded = false;
    st.in_doubt = true;
    return journal::make_error(journal::db_errc::unavailable, r.detail);
  }
  st.in_doubt = false;
  if (st.offset < batch.end)
    st.offset = batch.end;
  record_commit(st.cfg.metrics, batch, before, ack);
  // Always: a rebuilt generation starts publishing before its swap.
  ack.changes = std::move(changes);
  return ack;
}

/// Applies the dead letters of `key` in log order, each in a savepoint, and
/// forgets them; stops at the first that still fails (recording its new
/// error; the key stays blocked). A fixed unrouted event is applied to the
/// keys it really affects: here for the keys this partition owns, and for
/// the others handed over, in the same transaction, as dead letters of
/// their partitions (the manager retries those next). Their later events
/// may have been applied before it: an event nobody could decode had no
/// known keys to block.
caf::result<retry_result> retry_key(pointer self, const std::string& key) {
  auto& st = self->state;
  retry_result out;
  bool cleared = false;
  std::vector<change> changes;
  auto r = run_fenced(self, [&](pqxx::connection& conn) {
    ensure_loaded(self, conn);
    out = {};
    changes.clear();
    pqxx::work tx{conn};
    check_fence(self, tx);
    auto& c = st.cfg;
    auto rows = tx.exec_params(key_dead_letters_sql, c.proj->name(),
                               c.generation, key);
    cleared = true;
    for (const auto& row : rows) {
      journal::row_reader cols{row};
      auto id = cols.int64();
      auto e = read_raw_event(cols);
      bool unrouted = cols.boolean();
      std::vector<change> one;
      std::vector<std::string> handed;
      try {
        std::vector<keyed_event> mine;
        if (!unrouted) {
          mine.push_back({&e, key});
        } else {
          auto keys = c.proj->keys(e);
          for (auto& k : std::set<std::string>(keys.begin(), keys.end())) {
            if (partition_of(k, c.count) == c.index)
              mine.push_back({&e, k});
            else
              handed.push_back(k);
          }
        }
        pqxx::subtransaction sub{tx};
        set_savepoint(sub);
        if (!mine.empty())
          c.proj->apply(sub, st.suffix, mine, st.publishing ? &one : nullptr);
        for (auto& k : handed)
          dead_letter(self, sub, e, k, "", false, partition_of(k, c.count));
        sub.commit();
        out.applied += mine.empty() ? 0 : 1;
      } catch (const std::exception& err) {
        if (is_infrastructure(err))
          throw;
        tx.exec_params(record_error_sql, id, err.what());
        cleared = false;
        break;
      }
      tx.exec_params(forget_dead_letter_sql, id);
      changes.insert(changes.end(), one.begin(), one.end());
      out.handed_off.insert(out.handed_off.end(), handed.begin(), handed.end());
    }
    tx.commit();
  });
  if (!st.fenced.empty())
    return fenced_error_of(self);
  if (!r) {
    st.loaded = false;
    return journal::make_error(journal::db_errc::unavailable, r.detail);
  }
  if (cleared)
    st.blocked.erase(key);
  if (!changes.empty() && st.cfg.sink)
    caf::anon_send(st.cfg.sink, batch_atom::value,
                   encode_batch(st.cfg.proj->name(), st.cfg.generation,
                                st.cfg.count, {}, {}, {}, changes));
  log_info("projection", st.cfg.proj->name() + ": retried key '" + key
                           + "': " + std::to_string(out.applied) + " applied"
                           + (out.handed_off.empty()
                                ? std::string{}
                                : ", " + std::to_string(out.handed_off.size())
                                    + " handed to their partitions")
                           + (cleared ? ", unblocked" : ", still blocked"));
  return out;
}

partition_actor::behavior_type partition(pointer self, partition_config cfg) {
  auto& st = self->state;
  st.suffix = generation_suffix(cfg.generation);
  st.session = std::make_unique<journal::pg_session>(
    cfg.db_url,
    "projection-" + cfg.proj->name() + "-" + std::to_string(cfg.index),
    cfg.proj->finds_rows_by_key() ? journal::use_key_plans_only : nullptr,
    journal::default_statement_timeout, journal::session_role::read_side);
  st.publishing = !cfg.fence.role || *cfg.fence.role == generation_role::live;
  st.cfg = std::move(cfg);
  return {
    [=](apply_atom, const partition_batch& batch) {
      return apply_batch(self, batch);
    },
    [=](offset_atom) -> caf::result<cursor> {
      auto r = self->state.session->run(
        [&](pqxx::connection& conn) { ensure_loaded(self, conn); });
      if (!r)
        return journal::make_error(journal::db_errc::unavailable, r.detail);
      return self->state.offset;
    },
    [=](retry_atom, const std::string& key) { return retry_key(self, key); },
  };
}

} // namespace

int32_t partition_of(const std::string& key, int32_t count) {
  return static_cast<int32_t>(entity::fnv1a64(key)
                              % static_cast<uint64_t>(std::max(count, 1)));
}

partition_actor spawn_partition(caf::actor_system& sys, partition_config cfg) {
  return sys.spawn<caf::detached>(partition, std::move(cfg));
}

} // namespace shoutflow::projection
