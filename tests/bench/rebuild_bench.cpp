// rebuild_bench: how fast the read side replays the event log, next to a
// raw scan of the same log.
//
//   rebuild_bench --mode=generate --db-url=URL [--events=N] [--users=U]
//                 [--follows-per-user=F] [--like-share=L] [--reply-share=R]
//                 [--prefix=STR] [--seed=S]
//   rebuild_bench --mode=scan --db-url=URL [--batch=B]
//   rebuild_bench --mode=catchup --db-url=URL --started-ms=MS
//   rebuild_bench --mode=rebuild --db-url=URL --admin-target=HOST:PORT
//                 --projection=users|shouts|timelines
//   rebuild_bench --mode=copy --db-url=URL --projection=users|shouts|timelines
//
// generate  Fills an empty, migrated database with N events (default
//           1,000,000) over U users (default 10,000): first U registrations,
//           then a random mix of follows (F per user on average, default 10;
//           targets skewed towards low user numbers, density ~ 1/sqrt(i), so
//           a few users have about a thousand followers), likes (share L of
//           all events, default 0.15) of one of the 10,000 newest shouts,
//           and shouts (the rest; share R of them, default 0.1, replies to
//           one of the 10,000 newest). Every event is made by the real
//           domain (user::decide from the user's folded state + user::evolve)
//           and encoded by the real user_codec, then bulk-inserted with the
//           journal's columns (chunks of 5,000 rows, one transaction each),
//           with the claims it makes, so the projections apply all of them
//           and the entities recover from them. Users are `<prefix><i>`
//           (default "bench-user-", handle "b<i>"), as shoutflow-bench names them,
//           so shoutflow-bench --no-prepare can load the same node afterwards.
//           Ends with VACUUM ANALYZE of events and claims.
// scan      The raw read cost of the log, in the readers' order:
//           (a) one SELECT of every row ORDER BY tx_id, global_position (the
//               fetcher's columns), consumed fully, each row converted to a
//               projection::raw_event as the fetcher does;
//           (b) the real fetcher actor (actors/projection/log_reader) driven
//               from position zero in batches of B (default 2000, the node's
//               --projection-batch): what a reader could consume if applying
//               cost nothing;
//           (c) decoding every payload with user::decode_event (each
//               projection decodes every event at least once).
// catchup   Waits until every live projection generation has applied the
//           whole log (its partitions' offsets at the newest event) and
//           reports events/s since MS (Unix milliseconds, taken by the caller
//           before starting the node: the three projections replaying the
//           log concurrently, as a node does on its first start; or when a
//           load ended, to wait out the projections' backlog).
// rebuild   RebuildProjection through the AdminService, then polls (every
//           20 ms) projection_generations until the new generation is live
//           (swapped in). Reports events/s of the whole log over the time
//           from the call to the swap, and the server's own times
//           (created_at -> swapped_at of the generation row).
// copy      The write floor of a projection: every row of its live
//           generation's tables copied into new tables with the same
//           columns and indexes (CREATE TABLE … (LIKE … INCLUDING ALL)), one
//           INSERT … SELECT per table in one transaction, then dropped. A
//           rebuild writes at least these rows through at least these
//           indexes, so (events in the log) / (this time) bounds its speed.
//
// Every mode ends with one machine-readable line: RESULT mode=... key=value...

#include <caf/all.hpp>
#include <grpcpp/grpcpp.h>
#include <pqxx/pqxx>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "actors/common/clock.hpp"
#include "actors/common/id_generator.hpp"
#include "actors/common/password_hasher.hpp"
#include "actors/journal/journal_actors.hpp"
#include "actors/journal/pg_session.hpp"
#include "actors/projection/log_reader.hpp"
#include "actors/projection/projection.hpp"
#include "actors/projection/projection_actors.hpp"
#include "actors/read_models/shouts_projection.hpp"
#include "actors/read_models/timelines_projection.hpp"
#include "actors/read_models/users_projection.hpp"
#include "actors/user/user_codec.hpp"
#include "actors/user/user_domain.hpp"
#include "shoutflow/v1/admin.grpc.pb.h"
#include "tests/bench/bench_support.hpp"

namespace {

using namespace shoutflow;
using clock_type = std::chrono::steady_clock;

struct options {
  std::string mode;
  std::string db_url;
  std::string admin_target;
  std::string projection;
  int64_t events = 1000000;
  int users = 10000;
  double follows_per_user = 10;
  double like_share = 0.15;
  double reply_share = 0.1;
  std::string prefix = "bench-user-";
  uint64_t seed = 1;
  int64_t batch = 2000;
  int64_t started_ms = 0;
  double timeout_s = 3600;
};

constexpr bench::program cli{
  "rebuild_bench",
  "usage: rebuild_bench --mode=generate|scan|catchup|rebuild|copy "
  "--db-url=URL\n"
  "  generate: [--events=N] [--users=U] [--follows-per-user=F]\n"
  "            [--like-share=L] [--reply-share=R] [--prefix=STR] "
  "[--seed=S]\n"
  "  scan:     [--batch=B]\n"
  "  catchup:  --started-ms=MS [--timeout=S]\n"
  "  rebuild:  --admin-target=HOST:PORT --projection=NAME [--timeout=S]\n"
  "  copy:     --projection=NAME\n"};

/// A runtime failure (exit status 1), as opposed to cli.usage_error (2).
[[noreturn]] void fail(const std::string& message) {
  std::fprintf(stderr, "rebuild_bench: %s\n", message.c_str());
  std::exit(1);
}

options parse(int argc, char** argv) {
  options o;
  bench::flags flag{cli, argc, argv};
  while (flag.next()) {
    const auto& name = flag.name();
    if (name == "mode")
      o.mode = flag.text();
    else if (name == "db-url")
      o.db_url = flag.text();
    else if (name == "admin-target")
      o.admin_target = flag.text();
    else if (name == "projection")
      o.projection = flag.text();
    else if (name == "events")
      o.events = flag.integer<int64_t>(1, 1e9);
    else if (name == "users")
      o.users = flag.integer<int>(2, 1e7);
    else if (name == "follows-per-user")
      o.follows_per_user = flag.number(0, 1000);
    else if (name == "like-share")
      o.like_share = flag.number(0, 0.9);
    else if (name == "reply-share")
      o.reply_share = flag.number(0, 1);
    else if (name == "prefix")
      o.prefix = flag.text();
    else if (name == "seed")
      o.seed = flag.integer<uint64_t>(0, 1e15);
    else if (name == "batch")
      o.batch = flag.integer<int64_t>(1, 1e6);
    else if (name == "started-ms")
      o.started_ms = flag.integer<int64_t>(1, 1e14);
    else if (name == "timeout")
      o.timeout_s = flag.number(1, 86400);
    else
      flag.unknown();
  }
  if (o.db_url.empty())
    cli.usage_error("--db-url is required");
  return o;
}

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

int64_t log_size(pqxx::connection& conn) {
  pqxx::read_transaction tx{conn};
  return tx.exec1("SELECT count(*) FROM events")[0].as<int64_t>();
}

// -- generate -----------------------------------------------------------------

/// Rows of one insert chunk, in the journal's column layout.
struct chunk {
  std::vector<std::string> pids, types, payloads, cids;
  std::vector<int64_t> seqs, versions;
  std::vector<std::string> claim_ns, claim_keys, claim_owners, claim_values;

  std::size_t size() const {
    return pids.size();
  }

  void clear() {
    *this = chunk{};
  }
};

class generator {
public:
  explicit generator(const options& o)
    : opt_(o), rng_(o.seed), users_(static_cast<std::size_t>(o.users)) {
    env_.clk = &clock_;
    env_.ids = &ids_;
    auto hash
      = password_hasher{pwhash_params::minimum()}.hash("bench password");
    if (!hash)
      fail("cannot hash the benchmark password");
    password_hash_ = *hash;
  }

  void run() {
    pqxx::connection conn{opt_.db_url};
    if (log_size(conn) != 0)
      fail("the events table is not empty: generate into a fresh database");
    auto t0 = clock_type::now();
    auto rest = opt_.events - opt_.users;
    if (rest < 0)
      fail("--events must be at least --users (one registration each)");
    // Per remaining event: the chance it is a follow or a like.
    double p_follow = std::min(0.5, opt_.follows_per_user * opt_.users
                                      / std::max<double>(1, rest));
    double p_like = opt_.like_share * opt_.events / std::max<double>(1, rest);
    if (p_follow + p_like > 0.95)
      fail("follows and likes leave too few shouts");
    for (int i = 0; i < opt_.users; ++i)
      add(conn, i, register_cmd(i));
    std::uniform_real_distribution<double> unit{0, 1};
    std::uniform_int_distribution<int> any_user{0, opt_.users - 1};
    for (int64_t n = 0; n < rest; ++n) {
      auto who = any_user(rng_);
      auto x = unit(rng_);
      v1::UserCommand cmd;
      if (x < p_follow)
        cmd = follow_cmd(who);
      else if (x < p_follow + p_like)
        cmd = like_cmd(who);
      if (cmd.command_case() == v1::UserCommand::COMMAND_NOT_SET)
        cmd = post_cmd(who, unit(rng_) < opt_.reply_share);
      add(conn, who, cmd);
      auto made = written_ + static_cast<int64_t>(pending_.size());
      if (made >= next_progress_) {
        std::fprintf(stderr, "  %lld events (%.0f/s)\n",
                     static_cast<long long>(made),
                     static_cast<double>(written_) / seconds_since(t0));
        next_progress_ += 100000;
      }
    }
    flush(conn);
    auto insert_s = seconds_since(t0);
    auto t1 = clock_type::now();
    {
      pqxx::nontransaction tx{conn};
      tx.exec("VACUUM ANALYZE events");
      tx.exec("VACUUM ANALYZE claims");
    }
    auto vacuum_s = seconds_since(t1);
    std::map<std::string, int64_t> by_type;
    {
      pqxx::read_transaction tx{conn};
      for (const auto& row : tx.exec("SELECT event_type, count(*) FROM events"
                                     " GROUP BY 1 ORDER BY 1"))
        by_type[row[0].as<std::string>()] = row[1].as<int64_t>();
    }
    std::printf("generated %lld events over %d users in %.1f s (%.0f/s), "
                "VACUUM ANALYZE %.1f s\n",
                static_cast<long long>(written_), opt_.users, insert_s,
                static_cast<double>(written_) / insert_s, vacuum_s);
    std::string mix;
    for (auto& [type, count] : by_type) {
      std::printf("  %-16s %lld\n", type.c_str(),
                  static_cast<long long>(count));
      mix += (mix.empty() ? "" : ",") + type + ":" + std::to_string(count);
    }
    std::printf("RESULT mode=generate events=%lld users=%d seconds=%.2f "
                "eps=%.0f vacuum_s=%.2f mix=%s\n",
                static_cast<long long>(written_), opt_.users, insert_s,
                static_cast<double>(written_) / insert_s, vacuum_s,
                mix.c_str());
  }

private:
  struct user_slot {
    user::user_state state;
    int64_t seq = 0;
  };

  struct shout_ref {
    std::string id;
    std::string author;
    std::string parent;
  };

  std::string user_id(int i) const {
    return opt_.prefix + std::to_string(i);
  }

  std::string next_command_id() {
    return "gen-" + std::to_string(++commands_);
  }

  v1::UserCommand register_cmd(int i) {
    v1::UserCommand c;
    auto* r = c.mutable_register_user();
    auto id = user_id(i);
    r->set_command_id("reg-" + id); // what shoutflow-bench uses
    r->set_user_id(id);
    r->set_handle("b" + std::to_string(i));
    r->set_display_name("Bench User " + std::to_string(i));
    r->set_email(id + "@bench.example.com");
    r->set_password("bench password");
    return c;
  }

  /// A follow of a user not yet followed (density ~ 1/sqrt(target)); an
  /// empty command when a few draws found none.
  v1::UserCommand follow_cmd(int who) {
    std::uniform_real_distribution<double> unit{0, 1};
    auto& me = users_[static_cast<std::size_t>(who)].state;
    for (int attempt = 0; attempt < 4; ++attempt) {
      auto u = unit(rng_);
      auto target = std::min(opt_.users - 1,
                             static_cast<int>(u * u * opt_.users));
      if (target == who || me.following.count(user_id(target)) > 0)
        continue;
      v1::UserCommand c;
      auto* r = c.mutable_follow();
      r->set_command_id(next_command_id());
      r->set_user_id(user_id(who));
      r->set_target_user_id(user_id(target));
      return c;
    }
    return {};
  }

  const shout_ref* recent_shout() {
    if (shouts_.empty())
      return nullptr;
    auto window = std::min<std::size_t>(shouts_.size(), 10000);
    std::uniform_int_distribution<std::size_t> pick{0, window - 1};
    return &shouts_[shouts_.size() - 1 - pick(rng_)];
  }

  v1::UserCommand like_cmd(int who) {
    auto* s = recent_shout();
    auto& me = users_[static_cast<std::size_t>(who)].state;
    if (s == nullptr || me.likes.count(s->id) > 0)
      return {};
    v1::UserCommand c;
    auto* r = c.mutable_like_shout();
    r->set_command_id(next_command_id());
    r->set_user_id(user_id(who));
    r->set_shout_id(s->id);
    return c;
  }

  v1::UserCommand post_cmd(int who, bool reply) {
    v1::UserCommand c;
    auto* r = c.mutable_post_shout();
    auto cid = next_command_id();
    r->set_command_id(cid);
    r->set_user_id(user_id(who));
    r->set_text("generated shout " + cid + " for the read-side benchmarks");
    if (reply)
      if (auto* s = recent_shout())
        r->set_reply_to_shout_id(s->id);
    return c;
  }

  /// The facts `needs` asks for, answered from what the generator wrote
  /// (asked again with the answers until it asks for nothing new).
  entity::facts facts_for(const user::user_state& s,
                          const v1::UserCommand& cmd) {
    entity::facts out;
    for (auto asked = user::needs(s, cmd, out, env_); asked.size() > out.size();
         asked = user::needs(s, cmd, out, env_))
      for (auto i = out.size(); i < asked.size(); ++i)
        out.push_back(answer(asked[i]));
    return out;
  }

  /// One fact, from what the generator wrote.
  entity::fact answer(const entity::fact_request& req) {
    entity::fact f;
    f.kind = req.kind;
    if (req.kind == entity::fact_kind::password_hash) {
      f.found = true;
      f.value = password_hash_;
    } else if (req.kind == entity::fact_kind::claim_owner) {
      if (req.a == user::user_claim) {
        f.found = true;
        f.value = req.b;
      } else if (req.a == user::shout_claim) {
        auto it = shout_index_.find(req.b);
        if (it != shout_index_.end()) {
          f.found = true;
          f.value = shouts_[it->second].author;
          f.detail = shouts_[it->second].parent;
        }
      } // handles: never taken before their registration
    } else {
      fail("unexpected fact request");
    }
    return f;
  }

  void add(pqxx::connection& conn, int who, const v1::UserCommand& cmd) {
    auto& slot = users_[static_cast<std::size_t>(who)];
    auto eff = user::decide(slot.state, cmd, facts_for(slot.state, cmd), env_);
    if (eff.rejected())
      fail("the domain rejected a generated command: "
           + eff.rejection->DebugString() + cmd.DebugString());
    if (eff.events.size() != 1)
      fail("a generated command did not make exactly one event: "
           + cmd.DebugString());
    auto& ev = eff.events.front();
    auto enc = user::encode_event(ev);
    slot.state = user::evolve(std::move(slot.state), ev);
    ++slot.seq;
    std::string cid;
    switch (cmd.command_case()) {
      case v1::UserCommand::kRegisterUser:
        cid = cmd.register_user().command_id();
        break;
      case v1::UserCommand::kFollow:
        cid = cmd.follow().command_id();
        break;
      case v1::UserCommand::kLikeShout:
        cid = cmd.like_shout().command_id();
        break;
      case v1::UserCommand::kPostShout:
        cid = cmd.post_shout().command_id();
        break;
      default:
        fail("unexpected command");
    }
    pending_.pids.push_back("user|" + user_id(who));
    pending_.seqs.push_back(slot.seq);
    pending_.types.push_back(enc.type);
    pending_.versions.push_back(enc.version);
    pending_.payloads.push_back(enc.payload);
    pending_.cids.push_back(cid);
    for (auto& c : eff.claims) {
      pending_.claim_ns.push_back(c.ns);
      pending_.claim_keys.push_back(c.key);
      pending_.claim_owners.push_back(c.owner);
      pending_.claim_values.push_back(c.value);
    }
    if (ev.has_shout_posted()) {
      auto& p = ev.shout_posted();
      shout_index_[p.shout_id()] = shouts_.size();
      shouts_.push_back({p.shout_id(), p.author_id(), p.reply_to_shout_id()});
    }
    if (pending_.size() >= 5000)
      flush(conn);
  }

  void flush(pqxx::connection& conn) {
    if (pending_.size() == 0)
      return;
    pqxx::work tx{conn};
    // The journal's INSERT (actors/journal/pg_journal.cpp), one statement.
    tx.exec_params(
      "INSERT INTO events (persistence_id, seq_nr, event_type, event_version,"
      "                    payload, command_id, correlation_id, causation_id,"
      "                    node_id)"
      " SELECT u.*, u.cid, u.cid, 'node-0'"
      "   FROM unnest($1::text[], $2::bigint[], $3::text[], $4::int[],"
      "               $5::bytea[], $6::text[]) AS u(pid, seq, typ, ver, pay,"
      "                                              cid)",
      journal::text_array(pending_.pids), journal::int_array(pending_.seqs),
      journal::text_array(pending_.types),
      journal::int_array(pending_.versions),
      journal::bytea_array(pending_.payloads),
      journal::text_array(pending_.cids));
    if (!pending_.claim_ns.empty())
      tx.exec_params(
        "INSERT INTO claims (namespace, key, owner_id, value)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])",
        journal::text_array(pending_.claim_ns),
        journal::text_array(pending_.claim_keys),
        journal::text_array(pending_.claim_owners),
        journal::text_array(pending_.claim_values));
    tx.commit();
    written_ += static_cast<int64_t>(pending_.size());
    pending_.clear();
  }

  options opt_;
  std::mt19937_64 rng_;
  system_clock clock_;
  /// Node id 1: a node serving this database generates as node 0.
  snowflake_generator ids_{clock_, 1};
  user::user_environment env_;
  std::string password_hash_;
  std::vector<user_slot> users_;
  std::vector<shout_ref> shouts_;
  std::map<std::string, std::size_t> shout_index_;
  chunk pending_;
  int64_t commands_ = 0;
  int64_t written_ = 0;
  int64_t next_progress_ = 100000;
};

// -- scan ---------------------------------------------------------------------

/// The fetcher's columns (actors/projection/log_reader.cpp), whole log, in
/// the readers' order.
constexpr const char* scan_sql = R"sql(
SELECT tx_id::text AS tx, global_position, persistence_id, seq_nr, event_type,
       event_version, payload,
       (extract(epoch FROM recorded_at) * 1000)::bigint
  FROM events
 ORDER BY events.tx_id, events.global_position
)sql";

projection::raw_event to_raw(const pqxx::row& row) {
  projection::raw_event e;
  e.at = {std::stoull(row[0].as<std::string>()), row[1].as<int64_t>()};
  e.persistence_id = row[2].as<std::string>();
  e.seq_nr = row[3].as<int64_t>();
  e.type = row[4].as<std::string>();
  e.version = row[5].as<int32_t>();
  e.payload = pqxx::binarystring{row[6]}.str();
  e.recorded_at_ms = row[7].as<int64_t>();
  return e;
}

void run_scan(const options& o) {
  pqxx::connection conn{o.db_url};
  auto total = log_size(conn);
  if (total == 0)
    fail("the events table is empty");

  // (a) One SELECT, consumed fully. Warm the buffers once first, untimed,
  // so (a) and (b) both read from PostgreSQL's cache.
  {
    pqxx::read_transaction tx{conn};
    tx.exec("SELECT count(*), sum(length(payload)) FROM events");
  }
  std::vector<projection::raw_event> rows;
  rows.reserve(static_cast<std::size_t>(total));
  auto t0 = clock_type::now();
  double query_s = 0;
  {
    pqxx::read_transaction tx{conn};
    auto result = tx.exec(scan_sql);
    query_s = seconds_since(t0);
    for (const auto& row : result)
      rows.push_back(to_raw(row));
  }
  auto select_s = seconds_since(t0);
  if (static_cast<int64_t>(rows.size()) != total)
    fail("the scan returned " + std::to_string(rows.size()) + " rows, not "
         + std::to_string(total));
  std::printf("(a) one SELECT ORDER BY tx_id, global_position: %lld rows in "
              "%.2f s (%.0f rows/s; query and transfer %.2f s, conversion "
              "%.2f s)\n",
              static_cast<long long>(total), select_s, total / select_s,
              query_s, select_s - query_s);

  // (c) Decoding every payload.
  auto t2 = clock_type::now();
  int64_t decoded = 0;
  for (auto& e : rows)
    if (user::decode_event(e.type, e.version, e.payload))
      ++decoded;
  auto decode_s = seconds_since(t2);
  if (decoded != total)
    fail(std::to_string(total - decoded) + " events do not decode");
  rows.clear();
  rows.shrink_to_fit();

  // (b) The real fetcher, in batches, as a reader drives it.
  caf::actor_system_config cfg;
  projection::add_message_types(cfg);
  journal::add_message_types(cfg);
  caf::actor_system sys{cfg};
  auto fetcher = projection::spawn_fetcher(sys, o.db_url);
  caf::scoped_actor self{sys};
  projection::cursor after;
  int64_t fetched = 0, batches = 0;
  auto t1 = clock_type::now();
  int64_t horizon_waits = 0;
  for (;;) {
    bool failed = false, empty = false;
    self
      ->request(fetcher, std::chrono::seconds(60), fetch_atom::value, after,
                o.batch, int64_t{0}, int64_t{0})
      .receive(
        [&](projection::fetch_result& r) {
          if (r.events.empty()) {
            // Rows behind an open transaction's horizon (any database of
            // the server): fetch again, as a reader does after 2 ms.
            if (r.behind_horizon) {
              ++horizon_waits;
              std::this_thread::sleep_for(std::chrono::milliseconds(2));
              return;
            }
            empty = true;
            return;
          }
          fetched += static_cast<int64_t>(r.events.size());
          after = r.events.back().at;
          ++batches;
        },
        [&](caf::error& err) {
          std::fprintf(stderr, "rebuild_bench: fetch: %s\n",
                       sys.render(err).c_str());
          failed = true;
        });
    if (failed)
      fail("the fetcher failed");
    if (empty)
      break;
  }
  auto fetch_s = seconds_since(t1);
  self->send_exit(fetcher, caf::exit_reason::user_shutdown);
  if (fetched != total)
    fail("the fetcher returned " + std::to_string(fetched) + " events, not "
         + std::to_string(total));
  std::printf("(b) the fetcher actor, batches of %lld: %lld events in %lld "
              "batches, %.2f s (%.0f events/s; %lld waits behind the xmin "
              "horizon)\n",
              static_cast<long long>(o.batch), static_cast<long long>(fetched),
              static_cast<long long>(batches), fetch_s, fetched / fetch_s,
              static_cast<long long>(horizon_waits));
  std::printf("(c) user::decode_event of every payload: %.2f s (%.0f "
              "events/s)\n",
              decode_s, total / decode_s);
  std::printf("RESULT mode=scan events=%lld select_s=%.3f select_eps=%.0f "
              "fetcher_s=%.3f fetcher_eps=%.0f batch=%lld decode_s=%.3f "
              "decode_eps=%.0f\n",
              static_cast<long long>(total), select_s, total / select_s,
              fetch_s, fetched / fetch_s, static_cast<long long>(o.batch),
              decode_s, total / decode_s);
}

// -- catchup / rebuild --------------------------------------------------------

// "Caught up" compares projection::cursor values, (writer xid, position),
// never positions alone: the last event in the readers' order is not always
// the one with the highest position (a transaction with a smaller xid may
// commit rows with higher positions).

/// Per projection: the lowest partition cursor of a generation (zero before
/// every partition has written one), and events applied so far.
struct progress {
  projection::cursor at;
  int64_t applied = 0;
  int partitions = 0;
  bool reached(const projection::cursor& head) const {
    return head <= at;
  }
};

progress generation_progress(pqxx::connection& conn,
                             const std::string& projection,
                             int32_t generation) {
  pqxx::read_transaction tx{conn};
  auto rows = tx.exec_params(
    "SELECT g.partitions, o.tx_id::text, o.position, o.events"
    "  FROM projection_generations g"
    "  LEFT JOIN projection_offsets o"
    "    ON o.projection = g.projection AND o.generation = g.generation"
    " WHERE g.projection = $1 AND g.generation = $2",
    projection, generation);
  progress p;
  int offsets = 0;
  for (const auto& row : rows) {
    p.partitions = row[0].as<int>();
    if (row[1].is_null())
      continue;
    projection::cursor at{std::stoull(row[1].as<std::string>()),
                          row[2].as<int64_t>()};
    if (offsets++ == 0 || at < p.at)
      p.at = at;
    p.applied += row[3].as<int64_t>();
  }
  if (offsets < p.partitions)
    p.at = {};
  return p;
}

projection::cursor log_head(pqxx::connection& conn) {
  pqxx::read_transaction tx{conn};
  // The text gets its own name: under the name tx_id, ORDER BY tx_id would
  // sort the text ("992583" after "14021885") and name a head in the middle
  // of the log, so "every partition at the head" came early.
  auto rows = tx.exec("SELECT tx_id::text AS tx, global_position FROM events"
                      " ORDER BY tx_id DESC, global_position DESC LIMIT 1");
  if (rows.empty())
    return {};
  return {std::stoull(rows[0][0].as<std::string>()), rows[0][1].as<int64_t>()};
}

void run_catchup(const options& o) {
  if (o.started_ms == 0)
    cli.usage_error("catchup needs --started-ms");
  pqxx::connection conn{o.db_url};
  auto head = log_head(conn);
  auto total = log_size(conn);
  std::map<std::string, int32_t> live;
  auto deadline
    = clock_type::now()
      + std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000));
  // The node creates the live generations at start; wait for them.
  while (live.size() < 3) {
    live.clear();
    pqxx::read_transaction tx{conn};
    for (const auto& row : tx.exec("SELECT projection, generation FROM"
                                   " projection_generations WHERE state ="
                                   " 'live'"))
      live[row[0].as<std::string>()] = row[1].as<int32_t>();
    tx.commit();
    if (clock_type::now() > deadline)
      fail("no live generations");
    if (live.size() < 3)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::map<std::string, double> done_at;
  auto wall_ms = [] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
  };
  auto next_report = clock_type::now();
  while (done_at.size() < live.size()) {
    for (auto& [name, g] : live) {
      if (done_at.count(name) > 0)
        continue;
      auto p = generation_progress(conn, name, g);
      if (p.reached(head))
        done_at[name] = static_cast<double>(wall_ms() - o.started_ms) / 1000;
    }
    if (clock_type::now() >= next_report) {
      std::string line;
      for (auto& [name, g] : live) {
        auto p = generation_progress(conn, name, g);
        line += " " + name + " " + std::to_string(p.at.position);
      }
      std::fprintf(stderr, "  at %.1f s:%s of %lld\n",
                   static_cast<double>(wall_ms() - o.started_ms) / 1000,
                   line.c_str(), static_cast<long long>(head.position));
      next_report += std::chrono::seconds(5);
    }
    if (clock_type::now() > deadline)
      fail("the live projections did not catch up within the timeout");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  double all = 0;
  std::string fields;
  for (auto& [name, s] : done_at) {
    all = std::max(all, s);
    std::printf("%-9s caught up with %lld events %.2f s after the node "
                "started (%.0f events/s)\n",
                name.c_str(), static_cast<long long>(total), s, total / s);
    fields += " " + name + "_s=" + std::to_string(s);
  }
  std::printf("RESULT mode=catchup events=%lld seconds=%.3f eps=%.0f%s\n",
              static_cast<long long>(total), all, total / all, fields.c_str());
}

void run_rebuild(const options& o) {
  if (o.admin_target.empty() || o.projection.empty())
    cli.usage_error("rebuild needs --admin-target and --projection");
  pqxx::connection conn{o.db_url};
  auto total = log_size(conn);
  auto head = log_head(conn);
  auto channel = grpc::CreateChannel(o.admin_target,
                                     grpc::InsecureChannelCredentials());
  auto stub = v1::AdminService::NewStub(channel);
  v1::RebuildProjectionRequest req;
  req.set_projection(o.projection);
  v1::RebuildProjectionResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto cpu0 = bench::cpu_seconds();
  auto t0 = clock_type::now();
  auto status = stub->RebuildProjection(&ctx, req, &resp);
  auto call_s = seconds_since(t0);
  if (!status.ok())
    fail("RebuildProjection: " + status.error_message());
  auto g = resp.generation();
  std::fprintf(stderr, "  %s: generation %d building (call took %.3f s)\n",
               o.projection.c_str(), g, call_s);
  auto deadline
    = t0 + std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000));
  auto next_report = t0 + std::chrono::seconds(5);
  double applied_s = 0; // when every partition had reached the head
  for (;;) {
    std::string state;
    {
      pqxx::read_transaction tx{conn};
      state = tx.exec_params1("SELECT state FROM projection_generations"
                              " WHERE projection = $1 AND generation = $2",
                              o.projection, g)[0]
                .as<std::string>();
    }
    if (state == "live")
      break;
    if (state != "building")
      fail("generation " + std::to_string(g) + " is " + state);
    auto now = clock_type::now();
    if (applied_s == 0 || now >= next_report) {
      auto p = generation_progress(conn, o.projection, g);
      if (applied_s == 0 && p.reached(head))
        applied_s = seconds_since(t0);
      if (now >= next_report) {
        std::fprintf(stderr,
                     "  at %.0f s: position %lld of %lld (%.0f "
                     "events/s)\n",
                     seconds_since(t0), static_cast<long long>(p.at.position),
                     static_cast<long long>(head.position),
                     static_cast<double>(p.at.position) / seconds_since(t0));
        next_report += std::chrono::seconds(5);
      }
    }
    if (now > deadline)
      fail("generation " + std::to_string(g) + " not live within the timeout");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  auto live_s = seconds_since(t0);
  double server_s = 0;
  {
    pqxx::read_transaction tx{conn};
    server_s = tx.exec_params1(
                   "SELECT extract(epoch FROM swapped_at - created_at)::float8"
                   "  FROM projection_generations"
                   " WHERE projection = $1 AND generation = $2",
                   o.projection, g)[0]
                 .as<double>();
  }
  if (applied_s == 0)
    applied_s = live_s;
  std::printf("%s: generation %d live %.2f s after RebuildProjection: %.0f "
              "events/s over the %lld events of the log (server: created -> "
              "swapped %.2f s; every partition at the head after %.2f s)\n",
              o.projection.c_str(), g, live_s, total / live_s,
              static_cast<long long>(total), server_s, applied_s);
  std::printf("RESULT mode=rebuild projection=%s generation=%d events=%lld "
              "seconds=%.3f eps=%.0f server_s=%.3f applied_s=%.3f "
              "client_cpu_s=%.2f\n",
              o.projection.c_str(), g, static_cast<long long>(total), live_s,
              total / live_s, server_s, applied_s, bench::cpu_seconds() - cpu0);
}

void run_copy(const options& o) {
  projection::projection_ptr proj;
  if (o.projection == "users")
    proj = std::make_shared<read_models::users_projection>(nullptr);
  else if (o.projection == "shouts")
    proj = std::make_shared<read_models::shouts_projection>();
  else if (o.projection == "timelines")
    proj = std::make_shared<read_models::timelines_projection>(
      read_models::timeline_config{});
  else
    cli.usage_error("--projection must be users, shouts or timelines");
  pqxx::connection conn{o.db_url};
  auto events = log_size(conn);
  std::vector<std::string> copies;
  int64_t rows = 0;
  auto t0 = clock_type::now();
  {
    pqxx::work tx{conn};
    auto g = tx.exec_params1("SELECT generation FROM projection_generations"
                             " WHERE projection = $1 AND state = 'live'",
                             proj->name())[0]
               .as<int32_t>();
    for (const auto& base : proj->tables()) {
      auto src = base + projection::generation_suffix(g);
      auto dst = "bench_copy_" + base;
      // Generated columns (rm_users.search) are computed, not copied.
      auto cols
        = tx.exec_params1("SELECT string_agg(quote_ident(attname), ', '"
                          "                  ORDER BY attnum)"
                          "  FROM pg_attribute WHERE attrelid = $1::regclass"
                          "   AND attnum > 0 AND NOT attisdropped"
                          "   AND attgenerated = ''",
                          src)[0]
            .as<std::string>();
      tx.exec("CREATE TABLE " + dst + " (LIKE " + src + " INCLUDING ALL)");
      copies.push_back(dst);
      rows
        += static_cast<int64_t>(tx.exec("INSERT INTO " + dst + " (" + cols
                                        + ") SELECT " + cols + " FROM " + src)
                                  .affected_rows());
    }
    tx.commit();
  }
  auto secs = seconds_since(t0);
  {
    pqxx::work tx{conn};
    for (auto& t : copies)
      tx.exec("DROP TABLE " + t);
    tx.commit();
  }
  std::printf("%s: its %lld rows copied with their indexes in %.2f s"
              " (%.0f rows/s): a rebuild writing them cannot beat %.0f"
              " events/s over the %lld events of the log\n",
              o.projection.c_str(), static_cast<long long>(rows), secs,
              rows / secs, events / secs, static_cast<long long>(events));
  std::printf("RESULT mode=copy projection=%s rows=%lld seconds=%.3f"
              " rows_per_s=%.0f events=%lld eps_bound=%.0f\n",
              o.projection.c_str(), static_cast<long long>(rows), secs,
              rows / secs, static_cast<long long>(events), events / secs);
}

} // namespace

int main(int argc, char** argv) {
  auto opt = parse(argc, argv);
  try {
    if (opt.mode == "generate")
      generator{opt}.run();
    else if (opt.mode == "scan")
      run_scan(opt);
    else if (opt.mode == "catchup")
      run_catchup(opt);
    else if (opt.mode == "rebuild")
      run_rebuild(opt);
    else if (opt.mode == "copy")
      run_copy(opt);
    else
      cli.usage_error(
        "--mode must be generate, scan, catchup, rebuild or copy");
  } catch (const std::exception& e) {
    fail(e.what());
  }
  std::fflush(stdout);
  return 0;
}
