#include "actors/journal/pg_journal.hpp"

#include <map>
#include <set>
#include <tuple>

#include "actors/journal/pg_row.hpp"

namespace shoutflow::journal {

namespace {

// -- SQL ---------------------------------------------------------------------

// Earlier executions of the batch's command ids: their events, or the
// stored reply of one that appended nothing (last column). An event's
// columns come first, in read_event_record's order (a no-op's row has only
// its command id there), then the stream.
constexpr const char* sql_duplicates
  = "SELECT * FROM ("
    " SELECT e.seq_nr, e.event_type, e.event_version, e.payload,"
    "        e.command_id, e.global_position, e.persistence_id, NULL::bytea"
    "   FROM unnest($1::text[], $2::text[]) AS q(pid, cid)"
    "   JOIN events e ON e.persistence_id = q.pid AND e.command_id = q.cid"
    " UNION ALL"
    " SELECT 0, '', 0, ''::bytea, n.command_id, 0, n.persistence_id, n.reply"
    "   FROM unnest($1::text[], $2::text[]) AS q(pid, cid)"
    "   JOIN noop_commands n"
    "     ON n.persistence_id = q.pid AND n.command_id = q.cid) AS d"
    " ORDER BY 7, 1";

constexpr const char* sql_noops
  = "INSERT INTO noop_commands (persistence_id, command_id, reply)"
    " SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[])";

// Guards and releases in ONE statement, so both read one snapshot taken
// before this transaction gets its xid: every claim they depend on was
// committed by a transaction with a smaller xid, and the read side, which
// orders by (tx_id, position), sees causes before effects.
constexpr const char* sql_guards_releases
  = "WITH g AS ("
    "  SELECT c.namespace, c.key, c.owner_id FROM claims c"
    "    JOIN unnest($1::text[], $2::text[]) AS q(ns, k)"
    "      ON c.namespace = q.ns AND c.key = q.k"
    "   ORDER BY c.namespace, c.key"
    "     FOR SHARE OF c),"
    " r AS ("
    "  DELETE FROM claims c"
    "   USING unnest($3::text[], $4::text[], $5::text[]) AS q(ns, k, o)"
    "   WHERE c.namespace = q.ns AND c.key = q.k AND c.owner_id = q.o"
    "  RETURNING c.namespace, c.key, c.owner_id)"
    " SELECT 'g', namespace, key, owner_id FROM g"
    " UNION ALL SELECT 'r', namespace, key, owner_id FROM r";

// Claims are inserted (and guards locked) in key order, so two journals
// never take the same claims' locks in opposite orders.
constexpr const char* sql_claims
  = "INSERT INTO claims (namespace, key, owner_id, value)"
    " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])"
    "   AS q(ns, k, o, v)"
    " ORDER BY ns, k"
    " ON CONFLICT DO NOTHING"
    " RETURNING namespace, key, owner_id";

constexpr const char* sql_events
  = "INSERT INTO events (persistence_id, seq_nr, event_type, event_version,"
    "                    payload, command_id, correlation_id, causation_id,"
    "                    node_id, lease_epoch)"
    " SELECT u.pid, u.seq, u.type, u.version, u.payload, u.cid, u.corr,"
    "        u.cause, $9::text, nullif(u.epoch, 0)"
    "   FROM unnest($1::text[], $2::bigint[], $3::text[], $4::int[],"
    "               $5::bytea[], $6::text[], $7::text[], $8::text[],"
    "               $10::bigint[])"
    "     AS u(pid, seq, type, version, payload, cid, corr, cause, epoch)"
    " RETURNING persistence_id, seq_nr, global_position";

// The fences (docs/cluster.md): the writes' shard leases that this
// incarnation still holds, unexpired by the database's clock, with their
// epochs — locked FOR KEY SHARE until COMMIT, so no other node can take one
// over (its acquisition locks the row FOR UPDATE) before this batch is
// durable or gone. Renewals and releases are plain updates and do not wait.
// The caller compares the epochs. The locking query reads `leases` alone:
// with the writes' epochs joined in (an unnest), PostgreSQL keeps a copy of
// each joined row for its re-check of locked rows (a whole-row value built
// per row), which cost a tenth of the journal's backend CPU
// (docs/benchmarks.md).
constexpr const char* sql_fences
  = "SELECT l.part, l.epoch FROM leases l"
    " WHERE l.resource = 'shard' AND l.part = ANY($1::int[])"
    "   AND l.owner_incarnation = $2 AND l.expires_at > clock_timestamp()"
    " ORDER BY l.part"
    "   FOR KEY SHARE OF l";

// The common case in ONE statement, run in autocommit (no BEGIN, no COMMIT
// round trip): fences, earlier executions, claims, events and no-op replies
// of a batch without guards or releases. Anything unusual — a fence not
// held, a command id seen before — makes it call journal_refuse (SQLSTATE
// SF001, migration 0009), and a claim taken (or any other key met) makes
// an INSERT fail with a unique violation: either aborts it with nothing
// written, and the batch then goes through the step-by-step transaction
// below, which sorts out which write fails and why. The claims go in
// without ON CONFLICT: a speculative insertion costs an index probe before
// the insert and a WAL record after it, per claim, and every PostShout
// claims its shout id. All CTEs read one snapshot taken before the
// statement gets its xid, as the step-by-step path's reads do.
constexpr const char* sql_append
  = "WITH fenced AS ("
    "  SELECT l.part, l.epoch FROM leases l"
    "   WHERE l.resource = 'shard' AND l.part = ANY($1::int[])"
    "     AND l.owner_incarnation = $3 AND l.expires_at > clock_timestamp()"
    "   ORDER BY l.part"
    "     FOR KEY SHARE OF l),"
    " applied AS ("
    "  SELECT 1 FROM unnest($4::text[], $5::text[]) AS q(pid, cid)"
    "    JOIN events e ON e.persistence_id = q.pid AND e.command_id = q.cid"
    "  UNION ALL"
    "  SELECT 1 FROM unnest($4::text[], $5::text[]) AS q(pid, cid)"
    "    JOIN noop_commands n"
    "      ON n.persistence_id = q.pid AND n.command_id = q.cid),"
    " go AS MATERIALIZED ("
    "  SELECT (SELECT count(*) FROM fenced f"
    "            JOIN unnest($1::int[], $2::bigint[]) AS q(p, e)"
    "              ON f.part = q.p AND f.epoch = q.e) = cardinality($1::int[])"
    "         AND NOT EXISTS (SELECT 1 FROM applied) AS ok),"
    " claimed AS ("
    "  INSERT INTO claims (namespace, key, owner_id, value)"
    "  SELECT * FROM unnest($6::text[], $7::text[], $8::text[], $9::text[])"
    "    AS q(ns, k, o, v)"
    "   WHERE (SELECT ok FROM go)"
    "   ORDER BY ns, k),"
    " appended AS ("
    "  INSERT INTO events (persistence_id, seq_nr, event_type, event_version,"
    "                      payload, command_id, correlation_id, causation_id,"
    "                      node_id, lease_epoch)"
    "  SELECT u.pid, u.seq, u.type, u.version, u.payload, u.cid, u.corr,"
    "         u.cause, $18::text, nullif(u.epoch, 0)"
    "    FROM unnest($10::text[], $11::bigint[], $12::text[], $13::int[],"
    "                $14::bytea[], $15::text[], $16::text[], $17::text[],"
    "                $19::bigint[])"
    "      AS u(pid, seq, type, version, payload, cid, corr, cause, epoch)"
    "   WHERE (SELECT ok FROM go)"
    "  RETURNING persistence_id, seq_nr, global_position),"
    " noops AS ("
    "  INSERT INTO noop_commands (persistence_id, command_id, reply)"
    "  SELECT * FROM unnest($20::text[], $21::text[], $22::bytea[])"
    "   WHERE (SELECT ok FROM go)"
    "  RETURNING 1)"
    " SELECT persistence_id, seq_nr, global_position FROM appended"
    " UNION ALL"
    " SELECT NULL, NULL, journal_refuse('journal: not the common case')"
    "  WHERE NOT (SELECT ok FROM go)";

constexpr const char* sql_stream_heads
  = "SELECT persistence_id, max(seq_nr) FROM events"
    " WHERE persistence_id = ANY($1::text[]) GROUP BY persistence_id";

void prepare_statements(pqxx::connection& c) {
  use_key_plans_only(c);
  c.prepare("duplicates", sql_duplicates);
  c.prepare("guards_releases", sql_guards_releases);
  c.prepare("claims", sql_claims);
  c.prepare("events", sql_events);
  c.prepare("fences", sql_fences);
  c.prepare("noops", sql_noops);
  c.prepare("stream_heads", sql_stream_heads);
  c.prepare("append", sql_append);
}

using claim_key = std::tuple<std::string, std::string, std::string>;

claim_key key_of(const claim_op& c) {
  return {c.ns, c.key, c.owner};
}

std::set<claim_key> claim_rows(const pqxx::result& rows) {
  std::set<claim_key> out;
  for (const auto& row : rows)
    out.emplace(row[0].as<std::string>(), row[1].as<std::string>(),
                row[2].as<std::string>());
  return out;
}

/// Column arrays of claim ops (namespace, key, owner) of the live writes.
struct claim_columns {
  std::vector<std::string> ns, key, owner, value;
  void add(const claim_op& c) {
    ns.push_back(c.ns);
    key.push_back(c.key);
    owner.push_back(c.owner);
    value.push_back(c.value);
  }
  bool empty() const {
    return ns.empty();
  }
};

/// The distinct (shard, lease epoch) pairs the live writes are fenced by.
struct fence_columns {
  std::vector<int64_t> parts, epochs;
};

/// (persistence id, command id) of the live writes that carry a command id.
struct command_columns {
  std::vector<std::string> pids, cids;
};

/// One row per event of the live writes.
struct event_columns {
  std::vector<std::string> pids, types, payloads, cids, corrs, causes;
  std::vector<int64_t> seqs, versions, epochs;
};

/// The replies of the live writes that append nothing.
struct noop_columns {
  std::vector<std::string> pids, cids, replies;
};

constexpr int max_transient_retries = 5;

write_outcome failed(write_status status, std::string detail) {
  write_outcome out;
  out.status = status;
  out.detail = std::move(detail);
  return out;
}

// -- the steps of batch_writer::write -----------------------------------------

/// A batch on its way through the attempts: each write's outcome, and which
/// writes are still live (not failed yet, so part of the next attempt).
struct batch_state {
  explicit batch_state(const std::vector<journal_write>& writes)
    : batch(writes), out(writes.size()), live(writes.size(), true) {
  }

  const std::vector<journal_write>& batch;
  std::vector<write_outcome> out;
  std::vector<bool> live;

  std::size_t size() const {
    return batch.size();
  }

  /// Write `i` has its final outcome and drops out of later attempts.
  void fail(std::size_t i, write_status status, std::string detail) {
    out[i] = failed(status, std::move(detail));
    live[i] = false;
  }
};

fence_columns fences_of(const batch_state& st) {
  std::set<std::pair<int64_t, int64_t>> wanted;
  for (std::size_t i = 0; i < st.size(); ++i)
    if (st.live[i] && st.batch[i].shard >= 0)
      wanted.emplace(st.batch[i].shard, st.batch[i].lease_epoch);
  fence_columns out;
  for (auto& [p, e] : wanted) {
    out.parts.push_back(p);
    out.epochs.push_back(e);
  }
  return out;
}

command_columns commands_of(const batch_state& st) {
  command_columns out;
  for (std::size_t i = 0; i < st.size(); ++i)
    if (st.live[i] && !st.batch[i].command_id.empty()) {
      out.pids.push_back(st.batch[i].persistence_id);
      out.cids.push_back(st.batch[i].command_id);
    }
  return out;
}

claim_columns claims_of(const batch_state& st) {
  claim_columns out;
  for (std::size_t i = 0; i < st.size(); ++i)
    if (st.live[i])
      for (auto& c : st.batch[i].claims)
        out.add(c);
  return out;
}

event_columns events_of(const batch_state& st) {
  event_columns out;
  for (std::size_t i = 0; i < st.size(); ++i) {
    if (!st.live[i])
      continue;
    auto& w = st.batch[i];
    for (auto& e : w.events) {
      out.epochs.push_back(w.shard >= 0 ? w.lease_epoch : 0);
      out.pids.push_back(w.persistence_id);
      out.seqs.push_back(e.seq_nr);
      out.types.push_back(e.type);
      out.versions.push_back(e.version);
      out.payloads.push_back(e.payload);
      out.cids.push_back(w.command_id);
      out.corrs.push_back(w.correlation_id);
      out.causes.push_back(w.causation_id);
    }
  }
  return out;
}

noop_columns noops_of(const batch_state& st) {
  noop_columns out;
  for (std::size_t i = 0; i < st.size(); ++i) {
    auto& w = st.batch[i];
    if (st.live[i] && w.events.empty() && !w.command_id.empty()) {
      out.pids.push_back(w.persistence_id);
      out.cids.push_back(w.command_id);
      out.replies.push_back(w.noop_reply);
    }
  }
  return out;
}

/// What one attempt (one transaction) found.
struct attempt_state {
  /// A write failed whose side effects are in the transaction: it was rolled
  /// back, and the next attempt runs without that write.
  bool retry = false;
  /// The one-statement append refused the batch (not the common case):
  /// nothing was written; run the step-by-step attempt.
  bool refused = false;
  /// (persistence_id, seq_nr) -> global position of each inserted event.
  std::map<std::pair<std::string, int64_t>, int64_t> positions;
  std::chrono::steady_clock::time_point started
    = std::chrono::steady_clock::now();
};

/// In-batch checks, in batch order: a later write must not contradict an
/// earlier one of the same batch (the database cannot see those yet).
void check_within_batch(batch_state& st) {
  std::set<std::pair<std::string, std::string>> claimed, guarded, released;
  std::set<std::string> streams;
  for (std::size_t i = 0; i < st.size(); ++i) {
    auto& w = st.batch[i];
    if (!streams.insert(w.persistence_id).second) {
      st.fail(i, write_status::conflict,
              "two writes to one stream in a batch: a stale writer");
      continue;
    }
    bool ok = true;
    for (auto& c : w.claims)
      ok = ok && claimed.count({c.ns, c.key}) == 0;
    for (auto& c : w.guards)
      ok = ok && released.count({c.ns, c.key}) == 0;
    for (auto& c : w.releases)
      ok = ok && released.count({c.ns, c.key}) == 0
           && guarded.count({c.ns, c.key}) == 0;
    if (!ok) {
      st.fail(i, write_status::precondition_failed,
              "a claim changed within the batch");
      continue;
    }
    for (auto& c : w.claims)
      claimed.insert({c.ns, c.key});
    for (auto& c : w.guards)
      guarded.insert({c.ns, c.key});
    for (auto& c : w.releases)
      released.insert({c.ns, c.key});
  }
}

/// 0. Fences: a write whose shard lease this node no longer holds at the
/// write's epoch fails as `fenced`, before anything of it is written.
void check_fences(pqxx::work& tx, batch_state& st,
                  const std::string& incarnation) {
  auto wanted = fences_of(st);
  if (wanted.parts.empty())
    return;
  std::set<std::pair<int64_t, int64_t>> held;
  for (const auto& row :
       tx.exec_prepared("fences", int_array(wanted.parts), incarnation))
    held.emplace(row[0].as<int64_t>(), row[1].as<int64_t>());
  for (std::size_t i = 0; i < st.size(); ++i) {
    auto& w = st.batch[i];
    if (!st.live[i] || w.shard < 0 || held.count({w.shard, w.lease_epoch}) > 0)
      continue;
    st.fail(i, write_status::fenced,
            "shard " + std::to_string(w.shard) + " lease epoch "
              + std::to_string(w.lease_epoch)
              + " is no longer this node's: the shard moved");
  }
}

/// 1. Commands applied before: answer with their original events.
void fail_duplicates(pqxx::work& tx, batch_state& st) {
  auto n = st.size();
  auto& batch = st.batch;
  auto keys = commands_of(st);
  if (keys.pids.empty())
    return;
  std::map<std::pair<std::string, std::string>, std::vector<event_record>>
    found;
  std::map<std::pair<std::string, std::string>, std::string> replies;
  for (const auto& row : tx.exec_prepared("duplicates", text_array(keys.pids),
                                          text_array(keys.cids))) {
    row_reader c{row};
    auto e = read_event_record(c);
    auto key = std::make_pair(c.text(), e.command_id);
    if (!c.is_null()) {
      replies[key] = c.bytea();
      continue;
    }
    found[key].push_back(std::move(e));
  }
  for (std::size_t i = 0; i < n; ++i) {
    if (!st.live[i])
      continue;
    auto key = std::make_pair(batch[i].persistence_id, batch[i].command_id);
    if (auto hit = found.find(key); hit != found.end()) {
      st.fail(i, write_status::duplicate, "command already applied");
      st.out[i].original = std::move(hit->second);
    } else if (auto noop = replies.find(key); noop != replies.end()) {
      st.fail(i, write_status::duplicate, "command already applied");
      st.out[i].original_reply = std::move(noop->second);
    }
  }
}

/// 2. Guards (claims that must exist, locked FOR SHARE until COMMIT) and
/// releases (claims to delete). A failed release, or a failed guard of a
/// write that also releases, leaves side effects: roll back and retry
/// without that write. Returns whether to roll back.
bool guard_and_release(pqxx::work& tx, batch_state& st) {
  auto n = st.size();
  auto& batch = st.batch;
  claim_columns guards, releases;
  for (std::size_t i = 0; i < n; ++i)
    if (st.live[i]) {
      for (auto& g : batch[i].guards)
        guards.add(g);
      for (auto& r : batch[i].releases)
        releases.add(r);
    }
  if (guards.empty() && releases.empty())
    return false;
  std::set<claim_key> held, freed;
  for (const auto& row :
       tx.exec_prepared("guards_releases", text_array(guards.ns),
                        text_array(guards.key), text_array(releases.ns),
                        text_array(releases.key), text_array(releases.owner))) {
    auto key = claim_key{row[1].as<std::string>(), row[2].as<std::string>(),
                         row[3].as<std::string>()};
    (row[0].as<std::string>() == "g" ? held : freed).insert(std::move(key));
  }
  bool retry = false;
  for (std::size_t i = 0; i < n; ++i) {
    if (!st.live[i])
      continue;
    std::string problem;
    for (auto& g : batch[i].guards)
      if (problem.empty() && held.count(key_of(g)) == 0)
        problem = "no claim " + g.ns + "/" + g.key + " owned by " + g.owner;
    for (auto& r : batch[i].releases)
      if (problem.empty() && freed.count(key_of(r)) == 0)
        problem = "no claim to release: " + r.ns + "/" + r.key;
    if (!problem.empty()) {
      retry = retry || !batch[i].releases.empty();
      st.fail(i, write_status::precondition_failed, problem);
    }
  }
  return retry;
}

/// 3. Claims: a taken one fails its write; if that write's releases or
/// other claims went in, roll back and retry without it. Returns whether to
/// roll back.
bool insert_claims(pqxx::work& tx, batch_state& st) {
  auto n = st.size();
  auto& batch = st.batch;
  auto cols = claims_of(st);
  if (cols.empty())
    return false;
  auto done = claim_rows(
    tx.exec_prepared("claims", text_array(cols.ns), text_array(cols.key),
                     text_array(cols.owner), text_array(cols.value)));
  bool retry = false;
  for (std::size_t i = 0; i < n; ++i) {
    if (!st.live[i])
      continue;
    auto& claims = batch[i].claims;
    auto taken = std::find_if(claims.begin(), claims.end(), [&](auto& c) {
      return done.count(key_of(c)) == 0;
    });
    if (taken == claims.end())
      continue;
    retry = retry || !batch[i].releases.empty()
            || std::any_of(claims.begin(), claims.end(),
                           [&](auto& c) { return done.count(key_of(c)) > 0; });
    st.fail(i, write_status::precondition_failed,
            "already claimed: " + taken->ns + "/" + taken->key);
  }
  return retry;
}

/// 4. The events themselves. Returns (persistence_id, seq_nr) -> global
/// position of each inserted event.
std::map<std::pair<std::string, int64_t>, int64_t>
insert_events(pqxx::work& tx, const batch_state& st,
              const std::string& node_id) {
  std::map<std::pair<std::string, int64_t>, int64_t> positions;
  auto e = events_of(st);
  if (!e.pids.empty()) {
    for (const auto& row : tx.exec_prepared(
           "events", text_array(e.pids), int_array(e.seqs), text_array(e.types),
           int_array(e.versions), bytea_array(e.payloads),
           nullable_text_array(e.cids), nullable_text_array(e.corrs),
           nullable_text_array(e.causes), node_id, int_array(e.epochs)))
      positions[{row[0].as<std::string>(), row[1].as<int64_t>()}]
        = row[2].as<int64_t>();
  }
  return positions;
}

/// 5. Commands that append nothing keep their reply.
void keep_noop_replies(pqxx::work& tx, const batch_state& st) {
  auto noops = noops_of(st);
  if (!noops.pids.empty())
    tx.exec_prepared("noops", text_array(noops.pids), text_array(noops.cids),
                     bytea_array(noops.replies));
}

/// Whether the batch can go through the one-statement append: it has no
/// guards or releases (those need the step-by-step attempt's checks).
bool one_statement_fits(const batch_state& st) {
  for (std::size_t i = 0; i < st.size(); ++i)
    if (st.live[i]
        && (!st.batch[i].guards.empty() || !st.batch[i].releases.empty()))
      return false;
  return true;
}

/// Steps 0 to 5 of the common case in one autocommit statement (sql_append):
/// one round trip. Sets a.refused when the statement found something
/// unusual and wrote nothing.
void append_in_one_statement(pqxx::connection& conn, const batch_state& st,
                             attempt_state& a, const std::string& node_id,
                             const std::string& incarnation) {
  auto f = fences_of(st);
  auto k = commands_of(st);
  auto c = claims_of(st);
  auto e = events_of(st);
  auto n = noops_of(st);
  pqxx::nontransaction tx{conn};
  try {
    for (const auto& row : tx.exec_prepared(
           "append", int_array(f.parts), int_array(f.epochs), incarnation,
           text_array(k.pids), text_array(k.cids), text_array(c.ns),
           text_array(c.key), text_array(c.owner), text_array(c.value),
           text_array(e.pids), int_array(e.seqs), text_array(e.types),
           int_array(e.versions), bytea_array(e.payloads),
           nullable_text_array(e.cids), nullable_text_array(e.corrs),
           nullable_text_array(e.causes), node_id, int_array(e.epochs),
           text_array(n.pids), text_array(n.cids), bytea_array(n.replies)))
      a.positions[{row[0].as<std::string>(), row[1].as<int64_t>()}]
        = row[2].as<int64_t>();
  } catch (const pqxx::sql_error& err) {
    // 23505: a claim taken, or a stale writer's seq_nr (sorted out by the
    // step-by-step transaction, which meets it again).
    if (err.sqlstate() != "SF001" && err.sqlstate() != "23505")
      throw;
    a.positions.clear();
    a.refused = true;
  } catch (const pqxx::broken_connection& err) {
    // The statement commits by itself: a connection lost during it leaves
    // the outcome unknown, as a lost COMMIT does.
    throw pqxx::in_doubt_error{err.what()};
  }
}

/// One attempt: steps 0 to 5 over the live writes in ONE transaction, then
/// COMMIT. Returning without COMMIT (a.retry set) rolls the attempt back.
void run_attempt(pqxx::connection& conn, batch_state& st, attempt_state& a,
                 const std::string& node_id, const std::string& incarnation) {
  pqxx::work tx{conn};
  check_fences(tx, st, incarnation);
  fail_duplicates(tx, st);
  a.retry = guard_and_release(tx, st);
  if (a.retry)
    return;
  a.retry = insert_claims(tx, st);
  if (a.retry)
    return;
  a.positions = insert_events(tx, st, node_id);
  keep_noop_replies(tx, st);
  tx.commit();
}

/// After COMMIT: every write still live is `ok`, with its events' positions;
/// the batch counts in the metrics if it committed any write.
void record_commit(batch_state& st, const attempt_state& a,
                   journal_metrics* metrics) {
  std::size_t committed = 0;
  std::size_t events = 0;
  for (std::size_t i = 0; i < st.size(); ++i) {
    if (!st.live[i])
      continue;
    auto& w = st.batch[i];
    st.out[i].status = write_status::ok;
    for (auto& e : w.events)
      st.out[i].positions.push_back(
        a.positions.at({w.persistence_id, e.seq_nr}));
    ++committed;
    events += w.events.size();
    if (metrics != nullptr)
      for (auto& e : w.events)
        metrics->appended(e.type).Increment();
  }
  if (metrics != nullptr && committed > 0) {
    metrics->batches.Increment();
    metrics->writes.Increment(static_cast<double>(committed));
    metrics->events.Increment(static_cast<double>(events));
    metrics->batch_writes.Observe(static_cast<double>(committed));
    metrics->commit_seconds.Observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now()
                                    - a.started)
        .count());
  }
}

/// A deadlock or serialization failure: repeat the attempt, at most
/// max_transient_retries times per batch. True: repeat it.
bool retry_transient(const db_result& result, int& transient_retries) {
  return result.failure == db_failure::retryable
         && transient_retries++ < max_transient_retries;
}

/// A connection that died while idle (a failover, a restarted server) fails
/// its next use before COMMIT is sent: nothing was written, so one more try
/// on a fresh connection is safe. True: repeat the attempt.
bool reconnect_once(const db_result& result, bool& reconnected) {
  if (result.failure == db_failure::unavailable && !result.in_doubt
      && !result.overran && !reconnected) {
    reconnected = true;
    return true;
  }
  return false;
}

/// The database refused something in the batch (bad data, a check): write
/// each remaining write alone, so only the culprit fails. True: every
/// outcome is final.
bool isolate_sql_error(batch_writer& writer, const db_result& result,
                       batch_state& st) {
  if (result.failure != db_failure::error
      || std::count(st.live.begin(), st.live.end(), true) <= 1)
    return false;
  for (std::size_t i = 0; i < st.size(); ++i)
    if (st.live[i])
      st.out[i] = writer.write({st.batch[i]}).front();
  return true;
}

/// A unique violation means a stale writer: find the streams whose head is
/// already at or past the write's first seq_nr and fail just those. True:
/// some failed, run the next attempt without them. False: `result` now says
/// why every live write is in doubt.
bool fail_stale_writers(pg_session& session, batch_state& st,
                        db_result& result) {
  if (result.failure != db_failure::unique_violation)
    return false;
  auto n = st.size();
  auto& batch = st.batch;
  std::vector<std::string> pids;
  for (std::size_t i = 0; i < n; ++i)
    if (st.live[i])
      pids.push_back(batch[i].persistence_id);
  std::map<std::string, int64_t> heads;
  auto lookup = session.run([&](pqxx::connection& conn) {
    pqxx::read_transaction tx{conn};
    for (const auto& row : tx.exec_prepared("stream_heads", text_array(pids)))
      heads[row[0].as<std::string>()] = row[1].as<int64_t>();
  });
  bool found = false;
  for (std::size_t i = 0; lookup && i < n; ++i) {
    if (!st.live[i] || batch[i].events.empty())
      continue;
    auto head = heads.find(batch[i].persistence_id);
    if (head != heads.end() && head->second >= batch[i].events.front().seq_nr) {
      st.fail(i, write_status::conflict,
              "seq_nr " + std::to_string(batch[i].events.front().seq_nr)
                + " already written: another writer appended to this "
                  "stream");
      found = true;
    }
  }
  if (found)
    return true;
  result = lookup ? db_result{db_failure::error, result.detail} : lookup;
  return false;
}

/// Unreachable database, unknown COMMIT outcome or an unexpected SQL error:
/// every write still live is in doubt.
void fail_in_doubt(batch_state& st, const std::string& detail) {
  for (std::size_t i = 0; i < st.size(); ++i)
    if (st.live[i])
      st.fail(i, write_status::unavailable, detail);
}

} // namespace

// -- batch_writer -------------------------------------------------------------

batch_writer::batch_writer(std::string db_url, std::string node_id,
                           std::string name, journal_metrics* metrics,
                           std::string incarnation)
  : node_id_(std::move(node_id)),
    incarnation_(std::move(incarnation)),
    session_(std::move(db_url), std::move(name), prepare_statements),
    metrics_(metrics) {
}

// The steps, in order:
//   check_within_batch   writes that contradict an earlier one of the batch
//   a batch without guards or releases first tries append_in_one_statement:
//   steps 0 to 5 in one autocommit statement that refuses (writing nothing)
//   whenever one of them would fail a write; then, or otherwise,
//   attempts, each ONE transaction over the writes still live
//   (run_attempt):
//     0. check_fences        shard leases no longer held at the epoch
//     1. fail_duplicates     command ids applied before
//     2. guard_and_release   guards locked FOR SHARE, releases deleted
//     3. insert_claims       claims taken
//     4. insert_events       the events, with their global positions
//     5. keep_noop_replies   replies of commands that append nothing
//     COMMIT, then record_commit: the outcomes and the metrics
//   and after a failed attempt, the first that applies:
//     retry_transient, reconnect_once   repeat the attempt
//     isolate_sql_error                 write each live write alone
//     fail_stale_writers                fail those, next attempt
//     fail_in_doubt                     the rest is `unavailable`
std::vector<write_outcome>
batch_writer::write(const std::vector<journal_write>& batch) {
  batch_state st{batch};
  check_within_batch(st);

  // Each attempt either commits every live write or fails at least one more
  // write (which then drops out), so n + 1 attempts always suffice; a
  // deadlock or serialization failure repeats an attempt (bounded).
  int transient_retries = 0;
  bool reconnected = false;
  // The first attempt is one statement when the batch fits; once refused,
  // or after any failure, the step-by-step transaction takes over.
  bool one_statement = one_statement_fits(st);
  for (std::size_t attempt = 0; attempt <= st.size(); ++attempt) {
    if (std::none_of(st.live.begin(), st.live.end(), [](bool b) { return b; }))
      return std::move(st.out);
    attempt_state a;
    auto result = session_.run([&](pqxx::connection& conn) {
      if (one_statement)
        append_in_one_statement(conn, st, a, node_id_, incarnation_);
      else
        run_attempt(conn, st, a, node_id_, incarnation_);
    });
    auto was_one_statement = one_statement;
    one_statement = false;
    if (result && a.refused) {
      if (metrics_ != nullptr)
        metrics_->refused_appends.Increment();
      --attempt; // nothing was written and no write failed
      continue;
    }
    if (result && !a.retry) {
      if (metrics_ != nullptr && was_one_statement)
        metrics_->one_statement_batches.Increment();
      record_commit(st, a, metrics_);
      return std::move(st.out);
    }
    if (a.retry)
      continue;
    if (retry_transient(result, transient_retries)
        || reconnect_once(result, reconnected)) {
      --attempt;
      continue;
    }
    if (isolate_sql_error(*this, result, st))
      return std::move(st.out);
    if (fail_stale_writers(session_, st, result))
      continue;
    fail_in_doubt(st, result.detail);
    return std::move(st.out);
  }
  return std::move(st.out);
}

} // namespace shoutflow::journal
