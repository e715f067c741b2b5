#pragma once

// The read side's vocabulary: log positions, events as read from the log,
// the projection interface, and read-model change notifications.
//
// A projection turns the event log into read-model tables. It names, for
// every event, the keys the event affects; events for one key are applied in
// log order by one partition (the partition of hash(key)), which writes the
// read-model rows and its offset in one transaction. A projection must only
// write rows owned by the key it is applying an event for — that is what
// makes per-key log order and exactly-once effect hold with many partitions
// writing concurrently.

#include <pqxx/pqxx>

#include "actors/journal/pg_row.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace shoutflow::projection {

/// A position in the gap-safe order of the log: (writer xid, global
/// position). Readers consume events in this order.
struct cursor {
  uint64_t tx = 0;
  int64_t position = 0;
};

inline bool operator<(const cursor& a, const cursor& b) {
  return std::tie(a.tx, a.position) < std::tie(b.tx, b.position);
}
inline bool operator<=(const cursor& a, const cursor& b) {
  return !(b < a);
}
inline bool operator==(const cursor& a, const cursor& b) {
  return a.tx == b.tx && a.position == b.position;
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cursor& x) {
  return f(x.tx, x.position);
}

/// One row of the events table, undecoded (so it can cross nodes as is).
struct raw_event {
  cursor at;
  std::string persistence_id;
  int64_t seq_nr = 0;
  std::string type;
  int32_t version = 1;
  std::string payload;
  int64_t recorded_at_ms = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, raw_event& x) {
  return f(x.at, x.persistence_id, x.seq_nr, x.type, x.version, x.payload,
           x.recorded_at_ms);
}

/// What changed in the read models, for Watch subscribers.
struct change {
  enum kind_t : uint8_t {
    user,
    shout,
    timeline_add,
    timeline_remove,
    /// a shout of an author above the celebrity threshold (not fanned out)
    author_post,
    /// such a shout deleted
    author_remove,
    /// timeline `subject` now merges the feed of author `item` (a follow);
    /// the watch hub consumes it: it subscribes that timeline's streams
    /// to the author's feed before it forwards any later change.
    feed_added,
    /// timeline `subject` no longer merges author `item`'s feed (unfollow)
    feed_removed,
  };
  kind_t kind = user;
  /// user id, shout id, or timeline owner.
  std::string subject;
  /// the shout entering or leaving a timeline.
  std::string item;
  /// The event's place in the log: (tx, position).
  int64_t position = 0;
  uint64_t tx = 0;
  /// The partition that committed it (-1: not known yet, or a retried
  /// dead letter's change, outside the log order).
  int32_t partition = -1;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, change& x) {
  return f(x.kind, x.subject, x.item, x.position, x.tx, x.partition);
}

/// An event for one key, handed to `projection::apply`.
struct keyed_event {
  const raw_event* event;
  std::string key;
};

class read_model {
public:
  virtual ~read_model() = default;

  virtual std::string name() const = 0;

  /// Base names of one generation's tables; generation N's tables are
  /// `<base>_g<N>`, and the live generation is readable as view `<base>`.
  virtual std::vector<std::string> tables() const = 0;

  /// CREATE statements for one generation, with "{g}" where the suffix
  /// ("_g3") goes.
  virtual std::string ddl() const = 0;

  /// CREATE INDEX IF NOT EXISTS statements, with "{g}" for the suffix, for
  /// the indexes only queries read and `apply` never needs. A new live
  /// generation gets them with its tables; a rebuild creates them once it
  /// has caught up, built in one sort from the finished table instead of one
  /// B-tree insert per row it applies (generations.hpp). Empty: none.
  virtual std::string query_indexes() const {
    return {};
  }

  /// Statements, with "{g}" for the suffix, that a build's tables get after
  /// `ddl`: what its `apply` keeps before its promotion in place of the
  /// tables it leaves to `completion_sql`. Empty: none.
  virtual std::string build_ddl() const {
    return {};
  }

  /// Statements, with "{g}" for the suffix, that a build runs once it has
  /// caught up, before its query indexes and in the same transaction
  /// (finish_build): they fill the tables `apply` leaves alone in a build
  /// before its promotion (see `apply`) with the rows live application
  /// would have, and leave the tables as `ddl` makes them. A second run
  /// changes nothing. Empty: none.
  virtual std::string completion_sql() const {
    return {};
  }

  /// True when every statement `apply` runs finds its rows by key through
  /// an index (a document loaded and stored by its id): the partitions'
  /// connections then forbid scans and hash or merge joins
  /// (journal::use_key_plans_only), so a generic plan cached while the
  /// generation's tables were young does not scan them once they have
  /// grown. False for read models whose statements join many rows.
  virtual bool finds_rows_by_key() const {
    return false;
  }

  /// The keys an event affects (none: the projection ignores it). Throws
  /// std::runtime_error for an event it cannot decode: the reader then
  /// routes it to the key of its source stream as poison.
  virtual std::vector<std::string> keys(const raw_event& e) const = 0;

  /// Applies events in order inside `tx`; tables carry `suffix`. Appends
  /// the changes it made to `*changes`; with `changes` null nobody will
  /// publish them (a rebuild before its promotion), and the projection may
  /// skip working them out and leave the tables `completion_sql` fills
  /// alone. Throws to refuse an event (the partition then isolates it into
  /// the dead letters).
  virtual void apply(pqxx::transaction_base& tx, const std::string& suffix,
                     const std::vector<keyed_event>& events,
                     std::vector<change>* changes) const = 0;
};

using projection_ptr = std::shared_ptr<const read_model>;

/// "_g<N>"
inline std::string generation_suffix(int generation) {
  return "_g" + std::to_string(generation);
}

/// `ddl` with every "{g}" replaced by `suffix`.
std::string expand_ddl(const std::string& ddl, const std::string& suffix);

/// The name under which `sql` is prepared ("rm" and its hash in hex).
std::string prepared_name(const std::string& sql);

/// Runs `sql` as a prepared statement of `tx`'s connection, prepared on
/// its first use there (libpqxx remembers the definition per connection;
/// a new connection prepares it again). Every statement a partition runs
/// goes through here: its own (offsets, fence, change log) and the read
/// models', which are expanded per generation and so cannot be prepared
/// when the connection opens. Parsed and planned on every batch, they took
/// a third of the partitions' PostgreSQL time (the issue 14 profile).
template <class... Args>
pqxx::result exec_prepared_sql(pqxx::transaction_base& tx,
                               const std::string& sql, Args&&... args) {
  auto name = prepared_name(sql);
  tx.conn().prepare(name, sql);
  return tx.exec_prepared(name, std::forward<Args>(args)...);
}

/// The user id of a user stream ("user|alice" -> "alice").
std::string stream_owner(const std::string& persistence_id);

/// Reads an event from the next eight columns of `c`: the xid8 as text, the
/// global position, persistence id, seq_nr, type, version, payload and
/// recorded_at in ms — the order of `log_fetch_sql` and of the dead
/// letters' query, the two places a raw event comes from.
raw_event read_raw_event(journal::row_reader& c);

} // namespace shoutflow::projection
