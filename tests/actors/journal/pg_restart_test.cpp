// PostgreSQL stopped and restarted under the journal's feet.
//
// Each test starts a throwaway PostgreSQL instance with scripts/pg (found
// through SHOUTFLOW_PG_SCRIPT, which scripts/test exports) in a temporary
// directory on a free port, and removes it again in the fixture's
// destructor, also when the test fails.

#include <gtest/gtest.h>

#include <caf/all.hpp>
#include <pqxx/pqxx>

#include <arpa/inet.h>
#include <csignal>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <future>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "actors/common/atoms.hpp"
#include "actors/journal/journal_actors.hpp"
#include "actors/journal/journal_coordinator.hpp"
#include "actors/journal/migrations.hpp"
#include "actors/journal/pg_store.hpp"
#include "tests/support/wait.hpp"

using namespace shoutflow;
using namespace shoutflow::journal;
using namespace std::chrono_literals;

namespace {

using clock_type = std::chrono::steady_clock;

/// A loopback TCP port nobody listens on right now.
int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0
      && ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0)
    port = ntohs(addr.sin_port);
  ::close(fd);
  return port;
}

struct command_result {
  int exit_code = -1;
  std::string output;
};

/// Runs a shell command, capturing stdout and stderr.
command_result run_command(const std::string& cmd) {
  command_result r;
  auto* pipe = ::popen((cmd + " 2>&1").c_str(), "r");
  if (pipe == nullptr)
    return r;
  std::array<char, 512> buf{};
  std::size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0)
    r.output.append(buf.data(), n);
  auto status = ::pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

using shoutflow::testing::eventually;

/// A throwaway PostgreSQL instance: started on construction, stopped and
/// its directory removed on destruction.
class pg_instance {
public:
  /// Empty when the instance is up, else what went wrong.
  std::string error;

  pg_instance() {
    auto* script = std::getenv("SHOUTFLOW_PG_SCRIPT");
    if (script == nullptr || *script == '\0') {
      error = "SHOUTFLOW_PG_SCRIPT is not set: run the suite with "
              "scripts/test, or export SHOUTFLOW_PG_SCRIPT=<source "
              "dir>/scripts/pg";
      return;
    }
    script_ = script;
    if (!std::filesystem::exists(script_)) {
      error = "SHOUTFLOW_PG_SCRIPT=" + script_ + " does not exist";
      return;
    }
    char tmpl[] = "/tmp/sf-pg-restart-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) {
      error = "mkdtemp failed";
      return;
    }
    dir_ = tmpl;
    port_ = free_port();
    if (port_ == 0) {
      error = "no free port";
      return;
    }
    error = pg("start");
  }

  ~pg_instance() {
    if (dir_.empty())
      return;
    thaw();
    run_command("'" + script_ + "' stop --data '" + dir_ + "'");
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  pg_instance(const pg_instance&) = delete;
  pg_instance& operator=(const pg_instance&) = delete;

  /// `scripts/pg <verb>` on this instance: empty on success, else its output.
  std::string pg(const std::string& verb) {
    auto r = run_command("'" + script_ + "' " + verb + " --data '" + dir_
                         + "' --port " + std::to_string(port_));
    if (r.exit_code == 0)
      return {};
    return "scripts/pg " + verb + " failed:\n" + r.output;
  }

  std::string url(const std::string& db) const {
    return "postgresql://shoutflow@127.0.0.1:" + std::to_string(port_) + "/"
           + db;
  }

  /// SIGSTOPs the server and all its processes: it keeps its sockets (the
  /// kernel still accepts data and answers keepalives) but never replies.
  std::string freeze() {
    auto r = run_command("head -n1 '" + dir_ + "/postmaster.pid'");
    if (r.exit_code != 0)
      return r.output;
    auto postmaster = std::stoi(r.output);
    std::vector<pid_t> pids{postmaster};
    auto children = run_command("pgrep -P " + std::to_string(postmaster));
    std::size_t pos = 0;
    while (pos < children.output.size()) {
      auto end = children.output.find('\n', pos);
      if (end == std::string::npos)
        end = children.output.size();
      if (end > pos)
        pids.push_back(std::stoi(children.output.substr(pos, end - pos)));
      pos = end + 1;
    }
    for (auto pid : pids) {
      if (::kill(pid, SIGSTOP) != 0)
        return "SIGSTOP " + std::to_string(pid) + " failed";
      frozen_.push_back(pid);
    }
    return {};
  }

  void thaw() {
    for (auto pid : frozen_)
      ::kill(pid, SIGCONT);
    frozen_.clear();
  }

private:
  std::string script_;
  std::string dir_;
  int port_ = 0;
  std::vector<pid_t> frozen_;
};

/// One throwaway instance for the whole suite (initdb is slow); each test
/// gets its own migrated database on it and leaves the server running.
class pg_restart_test : public ::testing::Test {
protected:
  static void TearDownTestSuite() {
    instance_.reset();
  }

  void SetUp() override {
    if (instance_ == nullptr)
      instance_ = std::make_unique<pg_instance>();
    ASSERT_TRUE(instance_->error.empty()) << instance_->error;
    pg("start"); // a no-op unless an earlier test left it stopped
    static int counter = 0;
    auto db = "sf_restart_" + std::to_string(counter++);
    {
      pqxx::connection conn{instance_->url("shoutflow")};
      pqxx::nontransaction tx{conn};
      tx.exec("CREATE DATABASE " + db);
    }
    url_ = instance_->url(db);
    migrate(url_);
  }

  ~pg_restart_test() override {
    if (instance_ != nullptr)
      instance_->thaw();
  }

  /// `scripts/pg <verb>` on the instance; fails the test on error.
  void pg(const std::string& verb) {
    auto failure = instance_->pg(verb);
    ASSERT_TRUE(failure.empty()) << failure;
  }

  void freeze() {
    auto failure = instance_->freeze();
    ASSERT_TRUE(failure.empty()) << failure;
  }

  void thaw() {
    instance_->thaw();
  }

  /// Runs one statement on a fresh connection (admin work on the instance).
  void exec(const std::string& sql) {
    pqxx::connection conn{url_};
    pqxx::nontransaction tx{conn};
    tx.exec(sql);
  }

  static inline std::unique_ptr<pg_instance> instance_;
  std::string url_;
};

journal_write one_event(const std::string& pid, int64_t seq) {
  journal_write w;
  w.persistence_id = pid;
  w.command_id = pid + "-" + std::to_string(seq);
  w.events.push_back(
    {seq, "tick", 1, "payload-" + w.command_id, w.command_id, 0});
  return w;
}

// -- the coordinator under load -----------------------------------------------

/// Where the server is, as seen by the clients.
enum class phase : int { up, stopping, down, starting, up_again };

/// Shared record of a load run; clients write it, the test reads it.
struct load_record {
  std::atomic<phase> now{phase::up};
  std::atomic<bool> stop{false};
  std::atomic<int> clients_done{0};
  std::atomic<int64_t> ok_total{0};
  std::atomic<int64_t> outage_unavailable{0};

  std::mutex mx;
  /// (persistence_id -> seq_nrs) acknowledged `ok`.
  std::map<std::string, std::set<int64_t>> acked;
  /// Seq_nrs whose retry came back duplicate/conflict: known to be stored.
  std::map<std::string, std::set<int64_t>> known_present;
  /// Highest seq_nr each client ever sent.
  std::map<std::string, int64_t> last_sent;
  std::map<std::string, int64_t> ok_after_restart;
  std::vector<std::string> violations;
  clock_type::duration slowest_outage_reply{0};

  void violation(std::string what) {
    std::lock_guard<std::mutex> guard{mx};
    violations.push_back(std::move(what));
  }
};

struct client_state {
  int64_t seq = 1;
  /// The current seq_nr came back `unavailable` at least once.
  bool retrying = false;
  static inline const char* name = "load-client";
};

/// Writes its own stream with contiguous seq_nrs, advancing only once the
/// current one is known to be stored; retries the same seq_nr (same command
/// id) after `unavailable`.
caf::behavior load_client(caf::stateful_actor<client_state>* self,
                          journal_actor journal, std::string pid,
                          std::shared_ptr<load_record> rec) {
  self->send(self, tick_atom::value);
  return {
    [=](tick_atom) {
      if (rec->stop) {
        ++rec->clients_done;
        self->quit();
        return;
      }
      auto seq = self->state.seq;
      {
        std::lock_guard<std::mutex> guard{rec->mx};
        rec->last_sent[pid] = std::max(rec->last_sent[pid], seq);
      }
      auto sent_at = clock_type::now();
      auto sent_in = rec->now.load();
      self->request(journal, 5s, write_atom::value, one_event(pid, seq))
        .then(
          [=](write_outcome& out) {
            auto took = clock_type::now() - sent_at;
            auto replied_in = rec->now.load();
            auto& st = self->state;
            auto where = pid + " seq " + std::to_string(seq) + ": ";
            if (sent_in == phase::down && replied_in == phase::down) {
              // Fully inside the outage: a prompt `unavailable`.
              if (out.status != write_status::unavailable)
                rec->violation(where + "status "
                               + std::to_string(static_cast<int>(out.status))
                               + " while the server was down");
              else
                ++rec->outage_unavailable;
              std::lock_guard<std::mutex> guard{rec->mx};
              rec->slowest_outage_reply = std::max(rec->slowest_outage_reply,
                                                   took);
            }
            switch (out.status) {
              case write_status::ok: {
                if (out.positions.size() != 1)
                  rec->violation(where + "ok without one position");
                ++rec->ok_total;
                std::lock_guard<std::mutex> guard{rec->mx};
                rec->acked[pid].insert(seq);
                if (sent_in == phase::up_again)
                  ++rec->ok_after_restart[pid];
                break;
              }
              case write_status::duplicate:
              case write_status::conflict: {
                // Only a retry of an in-doubt write may find itself stored.
                if (!st.retrying)
                  rec->violation(where
                                 + "duplicate/conflict on a first "
                                   "attempt: "
                                 + out.detail);
                if (out.status == write_status::duplicate
                    && (out.original.size() != 1
                        || out.original[0].seq_nr != seq))
                  rec->violation(where + "duplicate with other events");
                std::lock_guard<std::mutex> guard{rec->mx};
                rec->known_present[pid].insert(seq);
                break;
              }
              case write_status::precondition_failed:
              case write_status::fenced:
                rec->violation(where + "unexpected outcome: " + out.detail);
                break;
              case write_status::unavailable:
                st.retrying = true;
                // Client back-off before retrying the same seq_nr.
                self->delayed_send(self, 20ms, tick_atom::value);
                return;
            }
            st.retrying = false;
            ++st.seq;
            self->send(self, tick_atom::value);
          },
          [=](caf::error& err) {
            rec->violation(pid + " seq " + std::to_string(seq)
                           + ": no answer from the journal: "
                           + self->system().render(err));
            self->state.retrying = true;
            self->send(self, tick_atom::value);
          });
    },
  };
}

} // namespace

TEST_F(pg_restart_test, journal_rides_out_a_server_restart_under_load) {
  caf::actor_system_config cfg;
  add_message_types(cfg);
  caf::actor_system sys{cfg};
  journal_config jcfg;
  jcfg.db_url = url_;
  jcfg.node_id = "node-restart";
  jcfg.batch_window = 2ms;
  jcfg.writers = 2;
  auto journal = spawn_pg_journal(sys, jcfg, nullptr);
  // A store with one reader, to check that it reconnects by itself too.
  auto store = spawn_pg_store(sys, {url_, 1});
  auto rec = std::make_shared<load_record>();
  constexpr int clients = 6;
  std::vector<std::string> pids;
  for (int i = 0; i < clients; ++i) {
    pids.push_back("client-" + std::to_string(i));
    sys.spawn(load_client, journal, pids.back(), rec);
  }
  // Stops the clients, the journal and the store however the test ends.
  struct shutdown_guard {
    std::shared_ptr<load_record> rec;
    journal_actor journal;
    store_actor store;
    ~shutdown_guard() {
      rec->stop = true;
      eventually([&] { return rec->clients_done == clients; }, 10s);
      caf::anon_send_exit(journal, caf::exit_reason::user_shutdown);
      caf::anon_send_exit(store, caf::exit_reason::user_shutdown);
    }
  } guard{rec, journal, store};

  ASSERT_TRUE(eventually([&] { return rec->ok_total >= 150; }, 20s))
    << "no steady load before the outage: " << rec->ok_total << " ok";
  // The store's reader holds a connection from before the outage.
  {
    caf::scoped_actor self{sys};
    self->request(store, 5s, recover_atom::value, pids.front())
      .receive([](recovery_data&) {},
               [&](caf::error& err) { ADD_FAILURE() << sys.render(err); });
  }

  rec->now = phase::stopping;
  pg("stop");
  rec->now = phase::down;
  ASSERT_TRUE(eventually([&] { return rec->outage_unavailable >= 30; }, 10s))
    << "writes did not fail promptly during the outage: only "
    << rec->outage_unavailable << " unavailable";

  rec->now = phase::starting;
  pg("start");
  rec->now = phase::up_again;
  // Same journal actor: its workers reconnect by themselves.
  ASSERT_TRUE(eventually(
    [&] {
      std::lock_guard<std::mutex> lock{rec->mx};
      for (auto& pid : pids)
        if (rec->ok_after_restart[pid] < 10)
          return false;
      return true;
    },
    20s))
    << "writes did not succeed again after the restart";

  // The store's reader reconnects by itself, too.
  {
    caf::scoped_actor self{sys};
    std::size_t recovered = 0;
    auto ok = eventually(
      [&] {
        bool answered = false;
        self->request(store, 5s, recover_atom::value, pids.front())
          .receive(
            [&](recovery_data& d) {
              answered = true;
              recovered = d.events.size();
            },
            [&](caf::error&) {});
        return answered;
      },
      10s);
    EXPECT_TRUE(ok) << "the store did not answer after the restart";
    EXPECT_GT(recovered, 0u);
  }

  rec->stop = true;
  ASSERT_TRUE(eventually([&] { return rec->clients_done == clients; }, 10s));
  {
    caf::scoped_actor self{sys};
    bool drained = false;
    self->request(journal, 10s, drain_atom::value)
      .receive([&](bool b) { drained = b; },
               [&](caf::error& err) { ADD_FAILURE() << sys.render(err); });
    EXPECT_TRUE(drained);
  }

  std::lock_guard<std::mutex> lock{rec->mx};
  std::cerr << "load: " << rec->ok_total << " ok in all, "
            << rec->outage_unavailable << " prompt unavailable during the "
            << "outage (slowest "
            << std::chrono::duration_cast<std::chrono::milliseconds>(
                 rec->slowest_outage_reply)
                 .count()
            << " ms)\n";
  for (auto& v : rec->violations)
    ADD_FAILURE() << v;
  EXPECT_LT(rec->slowest_outage_reply, 1s)
    << "a write during the outage took "
    << std::chrono::duration_cast<std::chrono::milliseconds>(
         rec->slowest_outage_reply)
         .count()
    << " ms to fail";

  // G1 and G2: every acknowledged event is stored exactly once; each stream
  // is contiguous from 1 and holds nothing its client never sent.
  pqxx::connection conn{url_};
  pqxx::read_transaction tx{conn};
  int64_t acked_total = 0;
  for (auto& pid : pids) {
    std::map<int64_t, int> stored;
    for (const auto& row :
         tx.exec_params("SELECT seq_nr, count(*) FROM events"
                        " WHERE persistence_id = $1 GROUP BY seq_nr",
                        pid))
      stored[row[0].as<int64_t>()] = row[1].as<int>();
    for (auto seq : rec->acked[pid]) {
      EXPECT_EQ(stored.count(seq), 1u)
        << pid << " seq " << seq << " was acknowledged but is not stored";
      ++acked_total;
    }
    for (auto seq : rec->known_present[pid])
      EXPECT_EQ(stored.count(seq), 1u)
        << pid << " seq " << seq << " came back duplicate but is not stored";
    int64_t expected = 1;
    for (auto& [seq, count] : stored) {
      EXPECT_EQ(count, 1) << pid << " seq " << seq << " stored twice";
      EXPECT_EQ(seq, expected) << pid << ": gap in the stream";
      expected = seq + 1;
    }
    EXPECT_LE(static_cast<int64_t>(stored.size()), rec->last_sent[pid]);
  }
  // Rows nobody was told about: a write that committed while its reply said
  // `unavailable`, whose client was stopped before retrying it — at most one
  // per client, and it is its stream's last.
  for (auto& pid : pids) {
    auto n = tx.exec_params1("SELECT count(*) FROM events"
                             " WHERE persistence_id = $1",
                             pid)[0]
               .as<int64_t>();
    auto known = static_cast<int64_t>(rec->acked[pid].size()
                                      + rec->known_present[pid].size());
    EXPECT_GE(n - known, 0) << pid;
    EXPECT_LE(n - known, 1) << pid;
  }
  EXPECT_GT(acked_total, 150);
}

// -- session settings across a reconnect --------------------------------------

// pg_session sets statement_timeout and synchronous_commit = on per
// connection ("an acknowledged write is durable"). After the server restarts
// under an idle writer, the next batch must run on a connection that has
// them again — whichever way it reconnected. The server here defaults to
// synchronous_commit = off, so a connection without the SET would
// acknowledge writes that a crash can lose (G1).
TEST_F(pg_restart_test, writer_keeps_its_session_settings_after_a_restart) {
  exec("ALTER SYSTEM SET synchronous_commit = off");
  exec("SELECT pg_reload_conf()");
  batch_writer writer{url_, "node-restart", "restart-writer"};
  auto show = [&](const std::string& setting) {
    std::string value;
    auto r = writer.session().run([&](pqxx::connection& conn) {
      pqxx::nontransaction tx{conn};
      value = tx.exec1("SHOW " + setting)[0].as<std::string>();
    });
    EXPECT_TRUE(r) << r.detail;
    return value;
  };
  auto backend = [&] {
    int64_t pid = 0;
    writer.session().run([&](pqxx::connection& conn) {
      pqxx::nontransaction tx{conn};
      pid = tx.exec1("SELECT pg_backend_pid()")[0].as<int64_t>();
    });
    return pid;
  };
  auto out = writer.write({one_event("s", 1)});
  ASSERT_EQ(out[0].status, write_status::ok) << out[0].detail;
  ASSERT_EQ(show("synchronous_commit"), "on");
  ASSERT_EQ(show("statement_timeout"), "10s");
  auto before = backend();

  pg("stop");
  pg("start");

  // The first batch after the restart may report `unavailable` (the old
  // connection is gone); a retry within the back-off bound must commit.
  write_status status = write_status::unavailable;
  ASSERT_TRUE(eventually(
    [&] {
      status = writer.write({one_event("s", 2)})[0].status;
      return status != write_status::unavailable;
    },
    10s));
  ASSERT_EQ(status, write_status::ok);
  EXPECT_NE(backend(), before) << "the writer did not reconnect";
  EXPECT_EQ(show("synchronous_commit"), "on")
    << "acknowledged writes are no longer durable after the reconnect";
  EXPECT_EQ(show("statement_timeout"), "10s")
    << "statements are unbounded after the reconnect";
  exec("ALTER SYSTEM RESET synchronous_commit");
  exec("SELECT pg_reload_conf()");
}

// -- a server that stops answering --------------------------------------------

// pg_session.hpp promises that "a hung server cannot block a worker thread
// for long" (statement_timeout, TCP keepalives). A server that accepted the
// connection but no longer answers — frozen here with SIGSTOP; a network
// partition behaves alike — is never noticed: statement_timeout is enforced
// by that very server, keepalives are answered by its kernel (and do not run
// at all while sent data is unacknowledged), and libpq has no client-side
// timeout. The writer thread blocks until the server wakes up, and with it
// the coordinator's batch and every entity write behind it.
TEST_F(pg_restart_test, writer_gives_up_on_a_frozen_server) {
  batch_writer writer{url_, "node-frozen", "frozen-writer"};
  auto out = writer.write({one_event("f", 1)});
  ASSERT_EQ(out[0].status, write_status::ok) << out[0].detail;
  freeze();
  auto pending = std::async(std::launch::async,
                            [&] { return writer.write({one_event("f", 2)}); });
  // statement_timeout (10 s) plus slack.
  auto answered = pending.wait_for(15s) == std::future_status::ready;
  thaw();
  auto outs = pending.get();
  EXPECT_TRUE(answered)
    << "the writer was still blocked 15 s after the server froze";
  if (answered) {
    ASSERT_EQ(outs.size(), 1u);
    EXPECT_EQ(outs[0].status, write_status::unavailable) << outs[0].detail;
  }
}
