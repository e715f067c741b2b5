#include "actors/journal/pg_session.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "actors/common/log.hpp"
#include "actors/common/text.hpp"

namespace shoutflow::journal {

namespace {

constexpr std::chrono::milliseconds first_backoff{50};
constexpr std::chrono::milliseconds idle_in_transaction_limit{2000};
constexpr std::chrono::milliseconds max_backoff{2000};

/// SQLSTATEs after which the connection cannot be trusted or the server is
/// going away: treat as "unavailable" and reconnect.
bool transient(const std::string& state) {
  return state.rfind("08", 0) == 0     // connection exception
         || state.rfind("57P", 0) == 0 // admin/crash shutdown, cannot connect
         || state == "53300"           // too many connections
         || state == "57014";          // statement timeout / cancel
}

bool retryable(const std::string& state) {
  return state == "40P01"     // deadlock detected
         || state == "40001"; // serialization failure
}

/// Shuts down the sockets of calls that overran their deadline, so the
/// blocked libpq call returns with a broken connection. One thread for the
/// process; a ticket is disarmed (under the lock) before its connection can
/// be closed, so a shut-down descriptor always still belongs to it.
class watchdog {
public:
  static watchdog& instance() {
    static watchdog w;
    return w;
  }

  uint64_t arm(int fd, std::chrono::steady_clock::time_point deadline) {
    std::lock_guard<std::mutex> guard{mtx_};
    auto ticket = ++next_;
    armed_[ticket] = {fd, deadline};
    cv_.notify_one();
    return ticket;
  }

  /// False if the deadline passed and the socket was shut down.
  bool disarm(uint64_t ticket) {
    std::lock_guard<std::mutex> guard{mtx_};
    return armed_.erase(ticket) > 0;
  }

  ~watchdog() {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }

private:
  struct entry {
    int fd;
    std::chrono::steady_clock::time_point deadline;
  };

  watchdog() : thread_([this] { loop(); }) {
  }

  void loop() {
    std::unique_lock<std::mutex> lock{mtx_};
    while (!stop_) {
      auto now = std::chrono::steady_clock::now();
      auto next = now + std::chrono::seconds(1);
      for (auto it = armed_.begin(); it != armed_.end();) {
        if (it->second.deadline <= now) {
          ::shutdown(it->second.fd, SHUT_RDWR);
          it = armed_.erase(it);
        } else {
          next = std::min(next, it->second.deadline);
          ++it;
        }
      }
      cv_.wait_until(lock, next);
    }
  }

  std::mutex mtx_;
  std::condition_variable cv_;
  std::map<uint64_t, entry> armed_;
  uint64_t next_ = 0;
  bool stop_ = false;
  std::thread thread_;
};

constexpr std::chrono::seconds watchdog_slack{2};

std::string escape_array_element(const std::string& s) {
  std::string out;
  out.reserve(s.size() + 2);
  out.push_back('"');
  for (auto c : s) {
    if (c == '"' || c == '\\')
      out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

template <class F>
std::string array_of(std::size_t n, F&& element) {
  std::string out = "{";
  for (std::size_t i = 0; i < n; ++i) {
    if (i > 0)
      out.push_back(',');
    out += element(i);
  }
  out.push_back('}');
  return out;
}

} // namespace

void use_key_plans_only(pqxx::connection& c) {
  pqxx::nontransaction tx{c};
  tx.exec("SET enable_seqscan = off; SET enable_hashjoin = off;"
          " SET enable_mergejoin = off");
}

pg_session::pg_session(std::string url, std::string name, preparer prepare,
                       std::chrono::milliseconds statement_timeout,
                       session_role role)
  : url_(with_conn_params(url, {{"connect_timeout", "3"},
                                {"keepalives", "1"},
                                {"keepalives_idle", "5"},
                                {"keepalives_interval", "2"},
                                {"keepalives_count", "3"},
                                {"tcp_user_timeout", "5000"},
                                {"application_name", "shoutflowd"}})),
    name_(std::move(name)),
    prepare_(std::move(prepare)),
    statement_timeout_(statement_timeout),
    role_(role) {
}

db_result pg_session::connect() {
  auto now = std::chrono::steady_clock::now();
  if (now < next_attempt_)
    return {db_failure::unavailable,
            "database unavailable (reconnecting with backoff)"};
  try {
    auto conn = std::make_unique<pqxx::connection>(url_);
    {
      pqxx::nontransaction tx{*conn};
      tx.exec("SET statement_timeout = "
              + std::to_string(statement_timeout_.count()));
      tx.exec("SET synchronous_commit = on");
      if (role_ == session_role::read_side)
        tx.exec(std::string{"SET application_name = '"} + read_side_application
                + "'");
      // A process frozen inside a transaction (SIGSTOP, a stalled host)
      // would keep its row locks — among them its FOR KEY SHARE on a lease
      // (docs/cluster.md) — and block that lease's takeover for as long as
      // it stays frozen. PostgreSQL ends such a session after this long,
      // below the default lease TTL (3 s); our transactions never leave the
      // server waiting between two statements for anywhere near that.
      tx.exec("SET idle_in_transaction_session_timeout = "
              + std::to_string(idle_in_transaction_limit.count()));
    }
    if (prepare_)
      prepare_(*conn);
    conn_ = std::move(conn);
    backoff_ = std::chrono::milliseconds{0};
    next_attempt_ = {};
    if (reported_down_)
      log_info(name_, "reconnected to the database");
    reported_down_ = false;
    return {};
  } catch (const std::exception& e) {
    conn_.reset();
    backoff_ = backoff_.count() == 0 ? first_backoff
                                     : std::min(backoff_ * 2, max_backoff);
    next_attempt_ = now + backoff_;
    if (!reported_down_)
      log_warn(name_, std::string{"database unreachable, retrying with "
                                  "backoff: "}
                        + e.what());
    reported_down_ = true;
    return {db_failure::unavailable,
            std::string{"database unavailable: "} + e.what()};
  }
}

db_result pg_session::run(const std::function<void(pqxx::connection&)>& fn) {
  if (conn_ == nullptr || !conn_->is_open()) {
    conn_.reset();
    if (auto r = connect(); !r)
      return r;
  }
  auto lost = [&](const std::string& what) -> db_result {
    conn_.reset();
    next_attempt_ = {}; // the first reconnect may be immediate
    return {db_failure::unavailable, what};
  };
  // Disarmed before anything below may close the connection (and free its
  // descriptor for reuse).
  std::exception_ptr failure;
  bool overran = false;
  {
    struct disarm_on_exit {
      uint64_t ticket;
      bool& overran;
      ~disarm_on_exit() {
        overran = !watchdog::instance().disarm(ticket);
      }
    } armed{watchdog::instance().arm(conn_->sock(),
                                     std::chrono::steady_clock::now()
                                       + statement_timeout_ + watchdog_slack),
            overran};
    try {
      fn(*conn_);
    } catch (...) {
      failure = std::current_exception();
    }
  }
  if (!failure)
    return {};
  if (overran) {
    conn_.reset();
    return {db_failure::unavailable,
            "the database did not answer within "
              + std::to_string((statement_timeout_ + watchdog_slack).count())
              + " ms",
            false, true};
  }
  try {
    std::rethrow_exception(failure);
  } catch (const pqxx::broken_connection& e) {
    return lost(std::string{"connection lost: "} + e.what());
  } catch (const pqxx::in_doubt_error& e) {
    auto r = lost(std::string{"connection lost during COMMIT, outcome "
                              "unknown: "}
                  + e.what());
    r.in_doubt = true;
    return r;
  } catch (const pqxx::unique_violation& e) {
    return {db_failure::unique_violation, e.what()};
  } catch (const pqxx::sql_error& e) {
    if (retryable(e.sqlstate()))
      return {db_failure::retryable, e.what()};
    if (transient(e.sqlstate()))
      return lost(std::string{"database unavailable: "} + e.what());
    log_error(name_,
              std::string{"SQL error "} + e.sqlstate() + ": " + e.what());
    return {db_failure::error, e.what()};
  } catch (const std::exception& e) {
    // libpqxx reports some connection failures as plain pqxx::failure.
    if (!conn_->is_open())
      return lost(std::string{"connection lost: "} + e.what());
    log_error(name_, std::string{"database error: "} + e.what());
    return {db_failure::error, e.what()};
  }
}

bool is_transient_sqlstate(const std::string& state) {
  return transient(state) || retryable(state);
}

std::string with_conn_params(
  const std::string& url,
  const std::vector<std::pair<std::string, std::string>>& params) {
  bool is_url = url.rfind("postgresql://", 0) == 0
                || url.rfind("postgres://", 0) == 0;
  std::string out = url;
  for (auto& [key, value] : params) {
    if (out.find(key + "=") != std::string::npos)
      continue;
    if (is_url) {
      out += out.find('?') == std::string::npos ? '?' : '&';
      out += key + "=" + value;
    } else {
      out += (out.empty() ? "" : " ") + key + "=" + value;
    }
  }
  return out;
}

std::string text_array(const std::vector<std::string>& values) {
  return array_of(values.size(), [&](std::size_t i) {
    return escape_array_element(values[i]);
  });
}

std::string nullable_text_array(const std::vector<std::string>& values) {
  return array_of(values.size(), [&](std::size_t i) {
    return values[i].empty() ? std::string{"NULL"}
                             : escape_array_element(values[i]);
  });
}

std::string bytea_array(const std::vector<std::string>& values) {
  // Each element is the bytea hex form \x..., its backslash escaped for the
  // array literal.
  return array_of(values.size(), [&](std::size_t i) {
    return "\"\\\\x" + to_hex(values[i]) + "\"";
  });
}

std::string bool_array(const std::vector<bool>& values) {
  return array_of(values.size(), [&](std::size_t i) {
    return std::string{values[i] ? "t" : "f"};
  });
}

std::string int_array(const std::vector<int64_t>& values) {
  return array_of(values.size(),
                  [&](std::size_t i) { return std::to_string(values[i]); });
}

} // namespace shoutflow::journal
