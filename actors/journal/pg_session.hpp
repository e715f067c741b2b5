#pragma once

// One PostgreSQL connection that survives the server going away.
//
// `run(fn)` hands `fn` a live connection. When the server is unreachable, the
// connection drops, or the outcome of a COMMIT is unknown, `run` returns
// db_failure::unavailable and the next call reconnects — but not before an
// exponential backoff (50 ms doubling to 2 s) has passed, so callers fail
// fast while the database is down instead of queueing behind timeouts.
// Statements get a server-side statement_timeout; connects get
// connect_timeout, TCP keepalives and tcp_user_timeout; and because a frozen
// server (or one behind a partition) enforces none of these, a client-side
// watchdog shuts the socket down once a call overruns statement_timeout by
// two seconds. A hung server therefore blocks a worker thread for at most
// that long. Only dedicated threads (detached actors) call this.

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <pqxx/pqxx>

namespace shoutflow::journal {

enum class db_failure {
  none,
  /// Could not connect, connection lost, or COMMIT outcome unknown.
  unavailable,
  /// A unique constraint rejected the statement.
  unique_violation,
  /// Deadlock or serialization failure: the transaction was rolled back
  /// and may simply be run again.
  retryable,
  /// Any other SQL error (a bug or a schema mismatch): logged loudly.
  error,
};

struct db_result {
  db_failure failure = db_failure::none;
  std::string detail;
  /// The connection broke during COMMIT: the transaction may have committed.
  bool in_doubt = false;
  /// The server stopped answering and the watchdog cut the connection (the
  /// transaction may have committed, too).
  bool overran = false;
  explicit operator bool() const {
    return failure == db_failure::none;
  }
};

/// For a connection whose statements all find their rows by key (the
/// journal's, the store's): the planner may not scan a table or hash- or
/// merge-join it. On a fresh database, before autovacuum's first ANALYZE,
/// `events` looks empty, and the generic plan cached after a prepared
/// statement's fifth run hash-joined each journal batch's command ids
/// against a sequential scan of `events` — and went on doing so while the
/// table grew, until the next ANALYZE: one scan of the whole journal per
/// batch, which tripled the journal's PostgreSQL CPU per command at 50,000
/// events (docs/benchmarks.md). The read side's statements are joins that
/// may want those plans; they keep the defaults.
void use_key_plans_only(pqxx::connection& c);

/// What a session's transactions may write. A `read_side` session (a
/// projection partition, a rebuild, the projection manager) never writes
/// events: the log readers' gap-safe horizon passes its open transactions
/// (docs/read-side.md, "Reading the log without gaps"). The database knows
/// it by the session's application_name, `read_side_application`, set
/// after connecting whatever the URL says.
enum class session_role { general, read_side };

constexpr const char* read_side_application = "shoutflowd-read-side";

constexpr std::chrono::milliseconds default_statement_timeout{10000};

class pg_session {
public:
  using preparer = std::function<void(pqxx::connection&)>;

  /// `name` appears in logs; the application_name is "shoutflowd", or
  /// `read_side_application` for a read-side session.
  pg_session(std::string url, std::string name, preparer prepare,
             std::chrono::milliseconds statement_timeout
             = default_statement_timeout,
             session_role role = session_role::general);

  /// Runs `fn(connection)`; libpqxx exceptions become a db_result.
  db_result run(const std::function<void(pqxx::connection&)>& fn);

  bool connected() const {
    return conn_ != nullptr;
  }

  /// Drops the connection (tests: simulate a lost connection).
  void disconnect() {
    conn_.reset();
  }

private:
  db_result connect();

  std::string url_;
  std::string name_;
  preparer prepare_;
  std::chrono::milliseconds statement_timeout_;
  session_role role_;
  std::unique_ptr<pqxx::connection> conn_;
  std::chrono::steady_clock::time_point next_attempt_{};
  std::chrono::milliseconds backoff_{0};
  bool reported_down_ = false;
};

/// SQLSTATEs after which a connection cannot be trusted or the server is
/// going away (connection exceptions, shutdowns, too many connections,
/// statement timeouts), and deadlocks / serialization failures: worth a
/// retry, never a verdict on the data.
bool is_transient_sqlstate(const std::string& state);

/// Adds libpq parameters to a URL or key=value connection string, unless
/// the string already sets them.
std::string with_conn_params(
  const std::string& url,
  const std::vector<std::pair<std::string, std::string>>& params);

/// PostgreSQL array literals for unnest()-based batch statements.
std::string text_array(const std::vector<std::string>& values);
/// NULL for empty strings.
std::string nullable_text_array(const std::vector<std::string>& values);
std::string bytea_array(const std::vector<std::string>& values);
std::string int_array(const std::vector<int64_t>& values);
std::string bool_array(const std::vector<bool>& values);

} // namespace shoutflow::journal
