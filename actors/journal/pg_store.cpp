#include "actors/journal/pg_store.hpp"

#include <caf/all.hpp>

#include <functional>
#include <memory>

#include "actors/common/log.hpp"
#include "actors/journal/pg_row.hpp"
#include "actors/journal/pg_session.hpp"

namespace shoutflow::journal {

namespace {

constexpr const char* sql_snapshot
  = "SELECT seq_nr, version, payload FROM snapshots WHERE persistence_id = $1";

constexpr const char* sql_events_after
  = "SELECT seq_nr, event_type, event_version, payload,"
    "       coalesce(command_id, ''), global_position"
    "  FROM events WHERE persistence_id = $1 AND seq_nr > $2"
    " ORDER BY seq_nr";

constexpr const char* sql_command_events
  = "SELECT seq_nr, event_type, event_version, payload,"
    "       coalesce(command_id, ''), global_position"
    "  FROM events WHERE persistence_id = $1 AND command_id = $2"
    " ORDER BY seq_nr";

constexpr const char* sql_noop_command
  = "SELECT reply FROM noop_commands"
    " WHERE persistence_id = $1 AND command_id = $2";

constexpr const char* sql_claim
  = "SELECT owner_id, value FROM claims WHERE namespace = $1 AND key = $2";

constexpr const char* sql_save_snapshot
  = "INSERT INTO snapshots (persistence_id, seq_nr, version, payload)"
    " VALUES ($1, $2, $3, $4)"
    " ON CONFLICT (persistence_id) DO UPDATE"
    "   SET seq_nr = excluded.seq_nr, version = excluded.version,"
    "       payload = excluded.payload, recorded_at = now()"
    " WHERE snapshots.seq_nr < excluded.seq_nr";

void prepare_statements(pqxx::connection& c) {
  use_key_plans_only(c);
  c.prepare("snapshot", sql_snapshot);
  c.prepare("events_after", sql_events_after);
  c.prepare("command_events", sql_command_events);
  c.prepare("noop_command", sql_noop_command);
  c.prepare("claim", sql_claim);
  c.prepare("save_snapshot", sql_save_snapshot);
}

std::vector<event_record> event_rows(const pqxx::result& rows) {
  std::vector<event_record> out;
  out.reserve(rows.size());
  for (const auto& row : rows) {
    row_reader c{row};
    out.push_back(read_event_record(c));
  }
  return out;
}

struct reader_state {
  std::unique_ptr<pg_session> session;
  static inline const char* name = "store-reader";
};

using reader_pointer = store_actor::stateful_pointer<reader_state>;

/// Runs `fn` on the reader's connection; the CAF result carries either the
/// value or db_errc::unavailable.
template <class T, class F>
caf::result<T> with_db(reader_pointer self, F&& fn) {
  T value{};
  auto r = self->state.session->run(
    [&](pqxx::connection& conn) { value = fn(conn); });
  if (!r)
    return make_error(db_errc::unavailable, r.detail);
  return value;
}

store_actor::behavior_type reader(reader_pointer self, std::string db_url,
                                  std::size_t index) {
  self->state.session = std::make_unique<pg_session>(
    db_url, "store-reader-" + std::to_string(index), prepare_statements);
  return {
    [=](recover_atom, const std::string& pid) -> caf::result<recovery_data> {
      return with_db<recovery_data>(self, [&](pqxx::connection& conn) {
        recovery_data d;
        d.snapshot.persistence_id = pid;
        pqxx::read_transaction tx{conn};
        auto snap = tx.exec_prepared("snapshot", pid);
        if (!snap.empty()) {
          d.snapshot.seq_nr = snap[0][0].as<int64_t>();
          d.snapshot.version = snap[0][1].as<int32_t>();
          d.snapshot.payload = pqxx::binarystring{snap[0][2]}.str();
        }
        d.events = event_rows(
          tx.exec_prepared("events_after", pid, d.snapshot.seq_nr));
        return d;
      });
    },
    [=](claim_atom, const std::string& ns,
        const std::string& key) -> caf::result<claim_lookup> {
      return with_db<claim_lookup>(self, [&](pqxx::connection& conn) {
        pqxx::read_transaction tx{conn};
        auto rows = tx.exec_prepared("claim", ns, key);
        claim_lookup out;
        if (!rows.empty()) {
          out.found = true;
          out.owner = rows[0][0].as<std::string>();
          out.value = rows[0][1].as<std::string>();
        }
        return out;
      });
    },
    [=](lookup_atom, const std::string& pid,
        const std::string& cid) -> caf::result<command_lookup> {
      return with_db<command_lookup>(self, [&](pqxx::connection& conn) {
        pqxx::read_transaction tx{conn};
        command_lookup out;
        out.events = event_rows(tx.exec_prepared("command_events", pid, cid));
        if (out.events.empty()) {
          auto rows = tx.exec_prepared("noop_command", pid, cid);
          if (!rows.empty())
            out.noop_reply = pqxx::binarystring{rows[0][0]}.str();
        }
        return out;
      });
    },
    [=](snapshot_atom, const snapshot_record& snap) -> caf::result<bool> {
      // Best effort: a lost snapshot only makes the next recovery longer.
      auto r = self->state.session->run([&](pqxx::connection& conn) {
        pqxx::work tx{conn};
        tx.exec_prepared("save_snapshot", snap.persistence_id, snap.seq_nr,
                         snap.version, pqxx::binarystring{snap.payload});
        tx.commit();
      });
      if (!r) {
        log_warn("store", "snapshot of " + snap.persistence_id + " at "
                            + std::to_string(snap.seq_nr)
                            + " not saved: " + r.detail);
        return make_error(db_errc::unavailable, r.detail);
      }
      return true;
    },
  };
}

struct front_state {
  std::vector<store_actor> readers;
  static inline const char* name = "store";
};

store_actor::behavior_type
front(store_actor::stateful_pointer<front_state> self, store_config cfg) {
  for (std::size_t i = 0; i < std::max<std::size_t>(cfg.readers, 1); ++i)
    self->state.readers.push_back(
      self->spawn<caf::detached + caf::linked>(reader, cfg.db_url, i));
  auto pick = [self](const std::string& a, const std::string& b = {}) {
    auto& rs = self->state.readers;
    auto h = std::hash<std::string>{}(a) ^ (std::hash<std::string>{}(b) << 1);
    return rs[h % rs.size()];
  };
  return {
    [=](recover_atom a, std::string& pid) {
      auto r = pick(pid);
      return self->delegate(r, a, std::move(pid));
    },
    [=](claim_atom a, std::string& ns, std::string& key) {
      auto r = pick(ns, key);
      return self->delegate(r, a, std::move(ns), std::move(key));
    },
    [=](lookup_atom a, std::string& pid, std::string& cid) {
      auto r = pick(pid);
      return self->delegate(r, a, std::move(pid), std::move(cid));
    },
    [=](snapshot_atom a, snapshot_record& snap) {
      auto r = pick(snap.persistence_id);
      return self->delegate(r, a, std::move(snap));
    },
  };
}

} // namespace

store_actor spawn_pg_store(caf::actor_system& sys, store_config cfg) {
  return sys.spawn(front, std::move(cfg));
}

} // namespace shoutflow::journal
