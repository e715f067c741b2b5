// G3, the reading half: the gap-safe tail of the log applies every committed
// event exactly once, per key in log order (tx_id, position), whatever order
// the writers commit in and however often readers and partitions restart.
//
// Two levels:
//   * the engine driven directly (spawn_fetcher / spawn_partition /
//     spawn_reader) with a recording projection that writes one row per
//     applied (event, key), so the exact application order is visible;
//   * whole nodes with the real read models (users, shouts, timelines).
// Late commits are staged with two raw libpqxx connections inserting into
// `events` (payloads from the real encoder) and committing out of order.

#include <gtest/gtest.h>

#include <caf/all.hpp>
#include <google/protobuf/util/time_util.h>

#include <array>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "actors/cluster/cluster_types.hpp"
#include "actors/journal/journal_actors.hpp"
#include "actors/journal/pg_session.hpp"
#include "actors/projection/log_reader.hpp"
#include "actors/projection/log_tail.hpp"
#include "actors/projection/partition.hpp"
#include "actors/user/user_codec.hpp"
#include "shoutflow/v1/projection.pb.h"
#include "tests/support/test_db.hpp"
#include "tests/support/test_node.hpp"
#include "tests/support/wait.hpp"

using namespace shoutflow;
using namespace shoutflow::testing;
using namespace std::chrono_literals;
using projection::cursor;

namespace {

// -- polling with a deadline --------------------------------------------------

using shoutflow::testing::eventually;

// -- events built with the real encoder ---------------------------------------

google::protobuf::Timestamp now_ts() {
  return google::protobuf::util::TimeUtil::GetCurrentTime();
}

v1::UserEvent registered(const std::string& user) {
  v1::UserEvent e;
  auto* r = e.mutable_user_registered();
  r->set_user_id(user);
  r->set_handle(user);
  r->set_display_name("User " + user);
  r->set_email(user + "@example.com");
  *r->mutable_registered_at() = now_ts();
  return e;
}

v1::UserEvent followed(const std::string& user, const std::string& target) {
  v1::UserEvent e;
  auto* r = e.mutable_user_followed();
  r->set_user_id(user);
  r->set_target_user_id(target);
  *r->mutable_followed_at() = now_ts();
  return e;
}

v1::UserEvent posted(const std::string& author, const std::string& shout_id) {
  v1::UserEvent e;
  auto* r = e.mutable_shout_posted();
  r->set_shout_id(shout_id);
  r->set_author_id(author);
  r->set_text("shout " + shout_id);
  *r->mutable_posted_at() = now_ts();
  return e;
}

/// Inserts one event of `user`'s stream inside `tx`; returns its position.
int64_t insert_event(pqxx::transaction_base& tx, const std::string& user,
                     int64_t seq_nr, const v1::UserEvent& event) {
  auto enc = user::encode_event(event);
  return tx
    .exec_params1("INSERT INTO events (persistence_id, seq_nr, event_type,"
                  "  event_version, payload) VALUES ($1, $2, $3, $4, $5)"
                  " RETURNING global_position",
                  "user|" + user, seq_nr, enc.type, enc.version,
                  pqxx::binarystring(enc.payload))[0]
    .as<int64_t>();
}

uint64_t tx_of(pqxx::transaction_base& tx) {
  return std::stoull(
    tx.exec1("SELECT pg_current_xact_id()::text")[0].as<std::string>());
}

/// The last event of the log in the readers' order (tx_id, position).
cursor log_end(const test_database& db) {
  pqxx::connection conn{db.url()};
  pqxx::read_transaction tx{conn};
  auto rows = tx.exec("SELECT tx_id::text AS tx, global_position FROM events"
                      " ORDER BY tx_id DESC, global_position DESC LIMIT 1");
  if (rows.empty())
    return {};
  return {std::stoull(rows[0][0].as<std::string>()), rows[0][1].as<int64_t>()};
}

// -- the recording projection -------------------------------------------------

/// The keys the recorder files an event under: its stream's owner, plus the
/// other user a follow, unfollow, like or unlike concerns (as the users read
/// model does). Throws for an event that does not decode.
std::vector<std::string> recorded_keys(const projection::raw_event& e) {
  auto decoded = user::decode_event(e.type, e.version, e.payload);
  if (!decoded)
    throw std::runtime_error("undecodable event at "
                             + std::to_string(e.at.position));
  auto owner = projection::stream_owner(e.persistence_id);
  std::string other;
  if (decoded->has_user_followed())
    other = decoded->user_followed().target_user_id();
  else if (decoded->has_user_unfollowed())
    other = decoded->user_unfollowed().target_user_id();
  else if (decoded->has_shout_liked())
    other = decoded->shout_liked().author_id();
  else if (decoded->has_shout_unliked())
    other = decoded->shout_unliked().author_id();
  if (other.empty() || other == owner)
    return {owner};
  return {owner, other};
}

/// A read model that records every (event, key) it applies, with an
/// identity column giving the order of application within a partition.
/// `delay_ms` slows each batch down so a test can stop it mid-stream.
class recorder final : public projection::read_model {
public:
  explicit recorder(int delay_ms = 0) : delay_ms_(delay_ms) {
  }

  /// The pause each batch takes before its rows (changeable while it runs).
  void set_delay(int delay_ms) {
    delay_ms_ = delay_ms;
  }

  std::string name() const override {
    return "recorder";
  }
  std::vector<std::string> tables() const override {
    return {"rec_applied"};
  }
  std::string ddl() const override {
    return "CREATE TABLE rec_applied{g} ("
           "  applied        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
           "  key            text   NOT NULL,"
           "  tx             bigint NOT NULL,"
           "  position       bigint NOT NULL,"
           "  persistence_id text   NOT NULL,"
           "  seq_nr         bigint NOT NULL)";
  }
  std::vector<std::string> keys(const projection::raw_event& e) const override {
    return recorded_keys(e);
  }
  void apply(pqxx::transaction_base& tx, const std::string& suffix,
             const std::vector<projection::keyed_event>& events,
             std::vector<projection::change>* changes) const override {
    if (changes != nullptr)
      for (auto& k : events)
        changes->push_back({projection::change::user, k.key, "",
                            k.event->at.position, k.event->at.tx});
    auto delay_ms = delay_ms_.load();
    if (delay_ms > 0 && !events.empty())
      tx.exec("SELECT pg_sleep(" + std::to_string(delay_ms / 1000.0) + ")");
    for (auto& k : events)
      tx.exec_params("INSERT INTO rec_applied" + suffix
                       + " (key, tx, position, persistence_id, seq_nr)"
                         " VALUES ($1, $2, $3, $4, $5)",
                     k.key, static_cast<int64_t>(k.event->at.tx),
                     k.event->at.position, k.event->persistence_id,
                     k.event->seq_nr);
  }

private:
  std::atomic<int> delay_ms_;
};

/// Per key, the cursors of the events filed under it, in log order.
using keyed_log
  = std::map<std::string, std::vector<std::pair<uint64_t, int64_t>>>;

keyed_log expected_by_key(const test_database& db) {
  pqxx::connection conn{db.url()};
  pqxx::read_transaction tx{conn};
  keyed_log out;
  for (const auto& row :
       tx.exec("SELECT tx_id::text AS tx, global_position, persistence_id,"
               "       event_type, event_version, payload FROM events"
               " ORDER BY tx_id, global_position")) {
    projection::raw_event e;
    e.at = {std::stoull(row[0].as<std::string>()), row[1].as<int64_t>()};
    e.persistence_id = row[2].as<std::string>();
    e.type = row[3].as<std::string>();
    e.version = row[4].as<int32_t>();
    e.payload = pqxx::binarystring{row[5]}.str();
    for (auto& k : recorded_keys(e))
      out[k].emplace_back(e.at.tx, e.at.position);
  }
  return out;
}

/// Per key, what the recorder applied, in the order it applied it.
keyed_log applied_by_key(const test_database& db) {
  pqxx::connection conn{db.url()};
  pqxx::read_transaction tx{conn};
  keyed_log out;
  for (const auto& row : tx.exec("SELECT key, tx, position FROM rec_applied_g1"
                                 " ORDER BY applied"))
    out[row[0].as<std::string>()].emplace_back(
      static_cast<uint64_t>(row[1].as<int64_t>()), row[2].as<int64_t>());
  return out;
}

/// G3 for the recorder: per key, exactly the log's events, each once, in
/// log order.
void expect_each_key_exactly_once_in_log_order(const test_database& db) {
  auto expected = expected_by_key(db);
  auto applied = applied_by_key(db);
  ASSERT_FALSE(expected.empty());
  EXPECT_EQ(applied.size(), expected.size());
  std::size_t bad = 0;
  for (auto& [key, events] : expected) {
    auto& got = applied[key];
    if (got != events && ++bad <= 5) {
      ADD_FAILURE() << "key '" << key << "': applied " << got.size()
                    << " events, the log has " << events.size()
                    << " (or the order differs)";
    }
  }
  EXPECT_EQ(bad, 0u) << "keys applied wrongly";
  EXPECT_EQ(db.scalar<int64_t>(
              "SELECT count(*) FROM (SELECT key, position FROM rec_applied_g1"
              " GROUP BY key, position HAVING count(*) > 1) d"),
            0)
    << "an (event, key) was applied twice";
}

// -- an engine of our own (fetcher, partitions, reader) -----------------------

void prewrite_log(const test_database& db, int streams, int events,
                  uint32_t seed);

struct engine {
  projection::fetcher_actor fetcher;
  std::vector<projection::partition_actor> partitions;
  projection::reader_actor reader;
};

class engine_test : public ::testing::Test {
protected:
  engine_test() {
    projection::add_message_types(cfg_);
    journal::add_message_types(cfg_);
    sys_ = std::make_unique<caf::actor_system>(cfg_);
  }

  ~engine_test() override {
    {
      caf::scoped_actor self{*sys_};
      for (auto& a : spawned_)
        self->send_exit(a, caf::exit_reason::user_shutdown);
    }
    spawned_.clear();
    sys_.reset();
  }

  void create_tables(const projection::read_model& proj) {
    db_.exec(projection::expand_ddl(proj.ddl(), "_g1"));
  }

  projection::partition_actor
  spawn_partition(projection::projection_ptr proj, int32_t index, int32_t count,
                  projection::partition_fence fence = {}) {
    projection::partition_config pc;
    pc.db_url = db_.url();
    pc.proj = std::move(proj);
    pc.generation = 1;
    pc.index = index;
    pc.count = count;
    pc.fence = std::move(fence);
    auto p = projection::spawn_partition(*sys_, std::move(pc));
    spawned_.push_back(caf::actor_cast<caf::actor>(p));
    return p;
  }

  projection::reader_actor
  spawn_reader(projection::projection_ptr proj,
               const std::vector<projection::partition_actor>& partitions,
               projection::fetcher_actor fetcher, int64_t batch,
               caf::duration fetch_timeout = caf::duration{60s},
               std::chrono::milliseconds linger = 0ms) {
    projection::reader_config rc;
    rc.proj = std::move(proj);
    rc.generation = 1;
    rc.partitions = partitions;
    rc.fetcher = std::move(fetcher);
    rc.fetch_timeout = fetch_timeout;
    rc.replay.batch_size = batch;
    rc.replay.poll = 10ms;
    rc.replay.linger = linger;
    auto r = projection::spawn_reader(*sys_, std::move(rc));
    spawned_.push_back(caf::actor_cast<caf::actor>(r));
    return r;
  }

  projection::fetcher_actor spawn_fetcher() {
    auto f = projection::spawn_fetcher(*sys_, db_.url());
    spawned_.push_back(caf::actor_cast<caf::actor>(f));
    return f;
  }

  /// The node's shared tail (log_tail.hpp), counting into `metrics`.
  projection::fetcher_actor spawn_tail(projection::projection_metrics& metrics,
                                       std::size_t capacity) {
    auto t = projection::spawn_log_tail(*sys_,
                                        {db_.url(), capacity, &metrics, {}});
    spawned_.push_back(caf::actor_cast<caf::actor>(t));
    return t;
  }

  engine spawn_engine(projection::projection_ptr proj, int32_t count,
                      int64_t batch) {
    engine e;
    e.fetcher = spawn_fetcher();
    for (int32_t i = 0; i < count; ++i)
      e.partitions.push_back(spawn_partition(proj, i, count));
    e.reader = spawn_reader(proj, e.partitions, e.fetcher, batch);
    return e;
  }

  /// Stops actors and waits until each is down (a crash, as far as the
  /// engine can tell: whatever a partition had not committed is lost).
  void stop(const std::vector<caf::actor>& actors) {
    caf::scoped_actor self{*sys_};
    for (auto& a : actors)
      self->monitor(a);
    for (auto& a : actors)
      self->send_exit(a, caf::exit_reason::kill);
    for (std::size_t i = 0; i < actors.size(); ++i)
      self->receive([](const caf::down_msg&) {},
                    caf::after(30s) >> [] { FAIL() << "actor not down"; });
  }

  void stop(const engine& e) {
    std::vector<caf::actor> all{caf::actor_cast<caf::actor>(e.reader),
                                caf::actor_cast<caf::actor>(e.fetcher)};
    for (auto& p : e.partitions)
      all.push_back(caf::actor_cast<caf::actor>(p));
    stop(all);
  }

  /// Waits until `reader` has applied everything up to `c`.
  ::testing::AssertionResult await(const projection::reader_actor& reader,
                                   const cursor& c,
                                   std::chrono::milliseconds limit = 60s) {
    caf::scoped_actor self{*sys_};
    auto ok = ::testing::AssertionSuccess();
    self->request(reader, limit, await_atom::value, c)
      .receive([](cursor&) {},
               [&](caf::error& err) {
                 ok = ::testing::AssertionFailure()
                      << "reader did not reach position " << c.position << ": "
                      << sys_->render(err);
               });
    return ok;
  }

  /// Fetches after `after` until events come (any open transaction on the
  /// server, another test's too, may hold the horizon for a while); `out`
  /// keeps the last answer.
  bool fetch_until_some(const projection::fetcher_actor& f,
                        const cursor& after, projection::fetch_result& out) {
    return eventually([&] {
      out = fetch(f, after);
      return !out.events.empty();
    });
  }

  projection::fetch_result fetch(const projection::fetcher_actor& f,
                                 const cursor& after, int64_t limit = 100) {
    caf::scoped_actor self{*sys_};
    projection::fetch_result out;
    self
      ->request(f, 10s, fetch_atom::value, after, limit, int64_t{0}, int64_t{0})
      .receive([&](projection::fetch_result& r) { out = std::move(r); },
               [&](caf::error& err) {
                 ADD_FAILURE() << "fetch failed: " << sys_->render(err);
               });
    return out;
  }

  /// `events[from, to)` as one share for a single partition (count 1):
  /// every key is its own.
  static projection::partition_batch
  single_partition_batch(const std::vector<projection::raw_event>& events,
                         std::size_t from, std::size_t to, uint64_t id) {
    projection::partition_batch b;
    b.id = id;
    b.events.assign(events.begin() + static_cast<std::ptrdiff_t>(from),
                    events.begin() + static_cast<std::ptrdiff_t>(to));
    b.end = b.events.back().at;
    for (uint32_t i = 0; i < b.events.size(); ++i)
      for (auto& k : recorded_keys(b.events[i]))
        b.keyed.push_back({i, k});
    return b;
  }

  /// Writes a small log (6 streams, 46 events) and fetches all of it.
  void fetch_small_log(projection::fetch_result& res) {
    prewrite_log(db_, 6, 40, 7);
    auto fetcher = spawn_fetcher();
    ASSERT_TRUE(eventually([&] {
      res = fetch(fetcher, {});
      return res.events.size() == 46;
    }));
  }

  /// The partition's ack, or nothing when the call failed.
  std::optional<projection::partition_ack>
  apply(const projection::partition_actor& p,
        const projection::partition_batch& b) {
    caf::scoped_actor self{*sys_};
    std::optional<projection::partition_ack> ack;
    self->request(p, 30s, apply_atom::value, b)
      .receive([&](projection::partition_ack& a) { ack = a; },
               [&](caf::error&) {});
    return ack;
  }

  /// Whether the partition refuses `b` as fenced (a failed fence; any other
  /// answer, an ack included, is not).
  ::testing::AssertionResult fenced(const projection::partition_actor& p,
                                    const projection::partition_batch& b) {
    caf::scoped_actor self{*sys_};
    auto out = ::testing::AssertionFailure() << "no answer";
    self->request(p, 30s, apply_atom::value, b)
      .receive(
        [&](projection::partition_ack& a) {
          out = ::testing::AssertionFailure()
                << "applied " << a.applied << " events, not fenced";
        },
        [&](caf::error& err) {
          if (err.category() == caf::atom("db")
              && err.code()
                   == static_cast<uint8_t>(journal::db_errc::fenced))
            out = ::testing::AssertionSuccess();
          else
            out = ::testing::AssertionFailure()
                  << "failed, not fenced: " << sys_->render(err);
        });
    return out;
  }

  /// The recorder's live generation 1 with partition 0 leased to
  /// incarnation inc-a at epoch 3, and the fence of that holder.
  projection::partition_fence lease_partition_zero() {
    db_.exec("INSERT INTO projection_generations"
             " (projection, generation, state, partitions)"
             " VALUES ('recorder', 1, 'live', 1)");
    db_.exec("INSERT INTO leases (resource, part, owner_node,"
             "                    owner_incarnation, epoch, expires_at)"
             " VALUES ('"
             + cluster::partition_resource("recorder")
             + "', 0, 1, 'inc-a', 3, now() + interval '10 minutes')");
    projection::partition_fence fence;
    fence.role = projection::generation_role::live;
    fence.lease_resource = cluster::partition_resource("recorder");
    fence.lease_epoch = 3;
    fence.incarnation = "inc-a";
    return fence;
  }

  /// The partition's committed offset (none: zero).
  cursor committed_offset() const {
    pqxx::connection conn{db_.url()};
    pqxx::read_transaction tx{conn};
    auto rows = tx.exec("SELECT tx_id::text, position FROM projection_offsets"
                        " WHERE projection = 'recorder' AND generation = 1"
                        "   AND partition = 0");
    if (rows.empty())
      return {};
    journal::row_reader r{rows[0]};
    return {r.uint64(), r.int64()};
  }

  /// A recorder partition 0 leased as lease_partition_zero() says, and the
  /// small log as two batches: `first` (20 events), then `second`.
  struct leased_partition {
    projection::partition_actor actor;
    projection::partition_batch first;
    projection::partition_batch second;
  };

  void start_leased_partition(leased_partition& out) {
    auto proj = std::make_shared<recorder>();
    create_tables(*proj);
    auto fence = lease_partition_zero();
    projection::fetch_result res;
    ASSERT_NO_FATAL_FAILURE(fetch_small_log(res));
    out.actor = spawn_partition(proj, 0, 1, fence);
    out.first = single_partition_batch(res.events, 0, 20, 1);
    out.second = single_partition_batch(res.events, 20, res.events.size(), 2);
  }

  /// Nothing beyond `rows` recorded and `offset` committed.
  void expect_nothing_more_written(int64_t rows, const cursor& offset) {
    EXPECT_EQ(recorded(), rows) << "a fenced batch wrote read-model rows";
    EXPECT_EQ(committed_offset(), offset) << "a fenced batch moved the offset";
  }

  /// How many (event, key) applications the log implies: what recorded()
  /// reaches once everything is applied.
  int64_t expected_applications() const {
    int64_t total = 0;
    for (auto& [key, events] : expected_by_key(db_))
      total += static_cast<int64_t>(events.size());
    return total;
  }

  int64_t recorded() const {
    return db_.scalar<int64_t>("SELECT count(*) FROM rec_applied_g1");
  }

  caf::actor_system_config cfg_;
  test_database db_;
  std::unique_ptr<caf::actor_system> sys_;
  std::vector<caf::actor> spawned_;
};

/// Writes `streams` users' registrations, then `events` follows and posts
/// spread over many transactions of one to nine events (raw SQL, fast).
void prewrite_log(const test_database& db, int streams, int events,
                  uint32_t seed) {
  std::mt19937 rng{seed};
  std::vector<int64_t> seq(static_cast<std::size_t>(streams), 0);
  auto user = [](int i) { return "u" + std::to_string(i); };
  pqxx::connection conn{db.url()};
  {
    pqxx::work tx{conn};
    for (int i = 0; i < streams; ++i)
      insert_event(tx, user(i), ++seq[static_cast<std::size_t>(i)],
                   registered(user(i)));
    tx.commit();
  }
  int written = 0;
  int shout = 0;
  while (written < events) {
    pqxx::work tx{conn};
    auto n = 1 + static_cast<int>(rng() % 9);
    for (int k = 0; k < n && written < events; ++k, ++written) {
      auto i = static_cast<int>(rng() % static_cast<uint32_t>(streams));
      auto j = static_cast<int>(rng() % static_cast<uint32_t>(streams));
      auto& s = seq[static_cast<std::size_t>(i)];
      if (j != i && rng() % 2 == 0)
        insert_event(tx, user(i), ++s, followed(user(i), user(j)));
      else
        insert_event(tx, user(i), ++s,
                     posted(user(i), "S" + std::to_string(++shout)));
    }
    tx.commit();
  }
}

} // namespace

namespace shoutflow::projection {
// Readable cursors in gtest's failure messages.
void PrintTo(const cursor& c, std::ostream* os) {
  *os << "(" << c.tx << ", " << c.position << ")";
}
} // namespace shoutflow::projection

namespace {

/// Gives the log's transactions the ids `first`, `first` + 1, ... in their
/// (tx_id, position) order, so that the log straddles a power of ten when
/// `first` is chosen so (on a long-lived server the real ids rarely do
/// within one test; on a fresh one they do). Every id stays far below any
/// running transaction's: the rows remain readable.
void renumber_transactions(const test_database& db, uint64_t first) {
  db.exec("UPDATE events SET tx_id = (" + std::to_string(first)
          + " + r.n - 1)::text::xid8"
            "  FROM (SELECT tx_id AS old, row_number() OVER (ORDER BY tx_id) n"
            "          FROM (SELECT DISTINCT tx_id FROM events) d) r"
            " WHERE events.tx_id = r.old");
}

} // namespace

// -- the fetcher --------------------------------------------------------------

// Transaction ids are numbers: 9 < 10 < 99 < 100, though "10" < "9" as text.
// Each transaction writes one event; positions run against the id order.
// Read in pages of two, every event comes exactly once, in numeric
// (tx_id, position) order. (A query that selected tx_id::text under its own
// name and ordered by `tx_id` sorted by the text: it lost and repeated
// events whenever the xid counter gained a digit.)
TEST_F(engine_test, fetcher_orders_transaction_ids_as_numbers_not_text) {
  auto fetcher = spawn_fetcher();
  const std::vector<uint64_t> ids{101, 100, 99, 98, 11, 10, 9, 8};
  std::map<uint64_t, int64_t> position_of;
  {
    pqxx::connection conn{db_.url()};
    for (std::size_t i = 0; i < ids.size(); ++i) {
      pqxx::work tx{conn};
      auto user = "u" + std::to_string(i);
      auto p = insert_event(tx, user, 1, registered(user));
      tx.exec_params("UPDATE events SET tx_id = $1::text::xid8"
                     " WHERE global_position = $2",
                     std::to_string(ids[i]), p);
      tx.commit();
      position_of[ids[i]] = p;
    }
  }
  std::vector<cursor> want;
  for (auto& [id, p] : position_of) // numeric order
    want.push_back({id, p});
  std::vector<cursor> got;
  cursor after;
  for (int page = 0; page < 10; ++page) {
    auto res = fetch(fetcher, after, 2);
    if (res.events.empty())
      break;
    for (auto& e : res.events)
      got.push_back(e.at);
    after = res.events.back().at;
  }
  EXPECT_EQ(got, want);
}

// The same through a whole engine: a log whose transaction ids cross 100 is
// applied per key exactly once, in log order.
TEST_F(engine_test, reader_applies_a_log_whose_transaction_ids_gain_a_digit) {
  auto proj = std::make_shared<recorder>();
  create_tables(*proj);
  prewrite_log(db_, 6, 200, 11);
  auto transactions
    = db_.scalar<int64_t>("SELECT count(DISTINCT tx_id) FROM events");
  ASSERT_GT(transactions, 20);
  renumber_transactions(db_, 100 - static_cast<uint64_t>(transactions / 2));
  ASSERT_GT(db_.scalar<int64_t>("SELECT count(*) FROM events"
                                " WHERE tx_id < '100'::xid8"),
            0);
  ASSERT_GT(db_.scalar<int64_t>("SELECT count(*) FROM events"
                                " WHERE tx_id >= '100'::xid8"),
            0);
  auto e = spawn_engine(proj, 3, 7);
  ASSERT_TRUE(await(e.reader, log_end(db_)));
  expect_each_key_exactly_once_in_log_order(db_);
}

// A transaction that inserted first (lower position) but commits last holds
// back everything committed after it: the fetcher returns nothing past the
// horizon, says so, and once it commits returns both in (tx_id, position)
// order — it never skips the late one.
TEST_F(engine_test,
       fetcher_holds_back_commits_behind_an_open_older_transaction) {
  auto fetcher = spawn_fetcher();
  pqxx::connection ca{db_.url()}, cb{db_.url()};
  pqxx::work a{ca};
  pqxx::work b{cb};
  auto pa = insert_event(a, "u1", 1, registered("u1"));
  auto pb = insert_event(b, "u2", 1, registered("u2"));
  auto xa = tx_of(a);
  auto xb = tx_of(b);
  ASSERT_LT(pa, pb);
  ASSERT_LT(xa, xb);
  b.commit();

  auto held = fetch(fetcher, {});
  EXPECT_TRUE(held.events.empty())
    << "read position " << held.events.front().at.position
    << " while an older transaction was still open";
  EXPECT_TRUE(held.behind_horizon);

  a.commit();
  projection::fetch_result both;
  ASSERT_TRUE(eventually([&] {
    both = fetch(fetcher, {});
    return both.events.size() >= 2;
  }))
    << "the late commit never became readable";
  ASSERT_EQ(both.events.size(), 2u);
  EXPECT_EQ(both.events[0].at, (cursor{xa, pa}));
  EXPECT_EQ(both.events[1].at, (cursor{xb, pb}));
  EXPECT_EQ(both.events[0].persistence_id, "user|u1");
}

// The other way round: the transaction with the older xid inserts last
// (higher position) and commits first. It is readable at once; the younger
// transaction's row has a LOWER position yet comes after it in the cursor
// order, so a reader that continues after (tx_id, position) still reads it —
// one that continued after the highest position seen would skip it forever.
TEST_F(engine_test, fetcher_reads_a_late_commit_with_a_lower_position) {
  auto fetcher = spawn_fetcher();
  pqxx::connection ca{db_.url()}, cb{db_.url()};
  pqxx::work a{ca};
  pqxx::work b{cb};
  auto xb = tx_of(b); // b takes the older transaction id
  auto pa = insert_event(a, "u1", 1, registered("u1"));
  auto pb = insert_event(b, "u2", 1, registered("u2"));
  auto xa = tx_of(a);
  ASSERT_LT(pa, pb);
  ASSERT_LT(xb, xa);
  b.commit();

  projection::fetch_result first;
  ASSERT_TRUE(fetch_until_some(fetcher, {}, first));
  ASSERT_EQ(first.events.size(), 1u);
  EXPECT_EQ(first.events[0].at, (cursor{xb, pb}));

  a.commit();
  projection::fetch_result late;
  ASSERT_TRUE(fetch_until_some(fetcher, first.events[0].at, late))
    << "position " << pa << " (committed late) was skipped";
  ASSERT_EQ(late.events.size(), 1u);
  EXPECT_EQ(late.events[0].at, (cursor{xa, pa}));
  EXPECT_LT(late.events[0].at.position, first.events[0].at.position);
}

// The read side's own transactions (partitions, rebuilds, the manager:
// sessions that never write events, known by their application_name) do
// not hold the horizon back. Before, a partition's open transaction — its
// fan-out, tens of milliseconds under load — kept every reader of the node
// from the events committed meanwhile, its own prefetch included. Any
// other open transaction still holds it (the tests above, and the second
// half here): only the read side is passed.
TEST_F(engine_test, fetcher_reads_past_an_open_read_side_transaction) {
  auto fetcher = spawn_fetcher();
  pqxx::connection side{db_.url()}, writer{db_.url()}, other{db_.url()};
  pqxx::nontransaction{side}.exec(std::string{"SET application_name = '"}
                                  + journal::read_side_application + "'");
  pqxx::work open{side};
  auto held_by = tx_of(open); // takes an xid, as a partition's fence does
  pqxx::work w{writer};
  auto p1 = insert_event(w, "u1", 1, registered("u1"));
  auto x1 = tx_of(w);
  ASSERT_LT(held_by, x1);
  w.commit();

  // Eventually: other tests' transactions on this server count.
  projection::fetch_result passed;
  ASSERT_TRUE(fetch_until_some(fetcher, {}, passed))
    << "an open read-side transaction (xid " << held_by
    << ") held back an event committed after it";
  ASSERT_EQ(passed.events.size(), 1u);
  EXPECT_EQ(passed.events[0].at, (cursor{x1, p1}));

  // A transaction of any other session still holds it back.
  pqxx::work held{other};
  auto x_other = tx_of(held);
  pqxx::work w2{writer};
  auto p2 = insert_event(w2, "u2", 1, registered("u2"));
  auto x2 = tx_of(w2);
  ASSERT_LT(x_other, x2);
  w2.commit();
  auto behind = fetch(fetcher, passed.events[0].at);
  EXPECT_TRUE(behind.events.empty())
    << "read position " << behind.events.front().at.position
    << " while an older transaction of another session was open";
  EXPECT_TRUE(behind.behind_horizon);
  held.commit();
  open.commit();
  projection::fetch_result late;
  ASSERT_TRUE(fetch_until_some(fetcher, passed.events[0].at, late));
  EXPECT_EQ(late.events[0].at, (cursor{x2, p2}));
}

// Partitions label their sessions as the read side's: without the label
// their transactions would hold the horizon back again.
TEST_F(engine_test, partition_sessions_are_labelled_read_side) {
  auto proj = std::make_shared<recorder>(50);
  create_tables(*proj);
  projection::fetch_result res;
  ASSERT_NO_FATAL_FAILURE(fetch_small_log(res));
  auto p = spawn_partition(proj, 0, 1);
  ASSERT_TRUE(apply(p, single_partition_batch(res.events, 0, 5, 1)));
  auto labelled = db_.scalar<int64_t>(
    std::string{"SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database()"
                "   AND application_name = '"}
    + journal::read_side_application + "'");
  EXPECT_EQ(labelled, 1) << "the partition's session is not labelled";
}

// -- the shared log tail ------------------------------------------------------

double log_reads(projection::projection_metrics& m, const std::string& source) {
  return m.log_reads.Add({{"source", source}}).Value();
}

// The tail answers as a fetcher would (late commits held back behind the
// horizon, then read in (tx_id, position) order), and a second reader at a
// cursor it has read past is answered from its window, without PostgreSQL.
TEST_F(engine_test, log_tail_holds_back_late_commits_and_shares_what_it_read) {
  prometheus::Registry registry;
  projection::projection_metrics metrics{registry};
  auto tail = spawn_tail(metrics, 100);
  pqxx::connection ca{db_.url()}, cb{db_.url()};
  pqxx::work a{ca};
  pqxx::work b{cb};
  auto pa = insert_event(a, "u1", 1, registered("u1"));
  auto pb = insert_event(b, "u2", 1, registered("u2"));
  auto xa = tx_of(a);
  auto xb = tx_of(b);
  ASSERT_LT(xa, xb);
  b.commit();

  auto held = fetch(tail, {});
  EXPECT_TRUE(held.events.empty())
    << "read position " << held.events.front().at.position
    << " while an older transaction was still open";
  EXPECT_TRUE(held.behind_horizon);

  a.commit();
  projection::fetch_result both;
  ASSERT_TRUE(fetch_until_some(tail, {}, both))
    << "the late commit never became readable";
  ASSERT_EQ(both.events.size(), 2u);
  EXPECT_EQ(both.events[0].at, (cursor{xa, pa}));
  EXPECT_EQ(both.events[1].at, (cursor{xb, pb}));

  auto database = log_reads(metrics, "database");
  auto shared = log_reads(metrics, "shared");
  auto again = fetch(tail, {});
  auto rest = fetch(tail, both.events[0].at);
  ASSERT_EQ(again.events.size(), 2u);
  EXPECT_EQ(again.events[1].at, (cursor{xb, pb}));
  EXPECT_EQ(again.events[1].payload, both.events[1].payload);
  ASSERT_EQ(rest.events.size(), 1u);
  EXPECT_EQ(rest.events[0].at, (cursor{xb, pb}));
  EXPECT_EQ(log_reads(metrics, "database"), database)
    << "read again from PostgreSQL what the window holds";
  EXPECT_EQ(log_reads(metrics, "shared"), shared + 2);
}

// A live reader asks the node's tail without a timeout (the tail answers
// every request within its own fetch timeout). A request the tail held when
// it stopped would never be answered, so the reader watches the tail and
// stops with it; the manager then starts the runner again. Here the tail
// stops while the reader follows it, as the node's would.
TEST_F(engine_test, reader_without_a_fetch_timeout_stops_with_its_fetcher) {
  auto proj = std::make_shared<recorder>();
  create_tables(*proj);
  prometheus::Registry registry;
  projection::projection_metrics metrics{registry};
  auto tail = spawn_tail(metrics, 100);
  auto p = spawn_partition(proj, 0, 1);
  auto reader = spawn_reader(proj, {p}, tail, 10, caf::infinite);
  prewrite_log(db_, 2, 5, 3);
  ASSERT_TRUE(eventually([&] { return recorded() > 0; }))
    << "the reader never applied anything";
  caf::scoped_actor self{*sys_};
  self->monitor(reader);
  // Someone waiting for a position the log never reaches is told, too.
  auto far = self->request(reader, 10s, await_atom::value,
                           cursor{~uint64_t{0}, 0});
  self->send_exit(tail, caf::exit_reason::kill);
  bool down = false;
  self->receive(
    [&](const caf::down_msg& m) { down = m.source == reader.address(); },
    caf::after(10s) >> [] {});
  EXPECT_TRUE(down) << "the reader outlived its fetcher";
  caf::error answer;
  far.receive([&](cursor&) {}, [&](caf::error& e) { answer = std::move(e); });
  EXPECT_EQ(answer, caf::make_error(caf::sec::request_receiver_down))
    << "a watermark waiter was not told: " << sys_->render(answer);
}

// The tail's database fetcher stops (killed here; in a node, an exception
// outside pg_session): the tail spawns another, and a reader's next fetch
// (its retry, after the failed one) gets what was committed meanwhile.
TEST_F(engine_test, log_tail_replaces_a_fetcher_that_stopped) {
  prometheus::Registry registry;
  projection::projection_metrics metrics{registry};
  std::mutex mtx;
  std::vector<projection::fetcher_actor> fetchers;
  projection::log_tail_config cfg{db_.url(), 100, &metrics, {}};
  cfg.spawn_db = [&](caf::actor_system& sys) {
    auto f = projection::spawn_fetcher(sys, db_.url());
    std::lock_guard<std::mutex> guard{mtx};
    fetchers.push_back(f);
    return f;
  };
  auto tail = projection::spawn_log_tail(*sys_, cfg);
  spawned_.push_back(caf::actor_cast<caf::actor>(tail));
  {
    pqxx::connection c{db_.url()};
    pqxx::work tx{c};
    insert_event(tx, "u1", 1, registered("u1"));
    tx.commit();
  }
  // Eventually: any open transaction of the server (another database's
  // too) holds the horizon back.
  projection::fetch_result first;
  ASSERT_TRUE(fetch_until_some(tail, {}, first));
  ASSERT_EQ(first.events.size(), 1u);
  projection::fetcher_actor dead;
  {
    std::lock_guard<std::mutex> guard{mtx};
    ASSERT_EQ(fetchers.size(), 1u);
    dead = fetchers.front();
  }
  {
    caf::scoped_actor self{*sys_};
    self->monitor(dead);
    self->send_exit(dead, caf::exit_reason::kill);
    self->receive([](caf::down_msg&) {});
  }
  int64_t second_position = 0;
  {
    pqxx::connection c{db_.url()};
    pqxx::work tx{c};
    second_position = insert_event(tx, "u2", 1, registered("u2"));
    tx.commit();
  }
  auto after = first.events.back().at;
  projection::fetch_result next;
  ASSERT_TRUE(eventually([&] {
    caf::scoped_actor self{*sys_};
    bool ok = false;
    self
      ->request(tail, 10s, fetch_atom::value, after, int64_t{100}, int64_t{0},
                int64_t{0})
      .receive(
        [&](projection::fetch_result& r) {
          next = std::move(r);
          ok = !next.events.empty();
        },
        [&](caf::error&) {}); // the request that met the dead fetcher
    return ok;
  }))
    << "the tail never read again after its fetcher stopped";
  ASSERT_EQ(next.events.size(), 1u);
  EXPECT_EQ(next.events[0].at.position, second_position);
  std::lock_guard<std::mutex> guard{mtx};
  EXPECT_EQ(fetchers.size(), 2u);
  for (auto& f : fetchers)
    spawned_.push_back(caf::actor_cast<caf::actor>(f));
}

// Live partitions as a node runs them: one reader per partition, all
// reading through one tail whose window (30 events) is smaller than the
// log. Two readers catch up together; the third starts only then, far
// behind the window (fetched for alone until it reaches it), while
// transactions commit out of order. Every key gets exactly its events, once,
// in log order.
TEST_F(engine_test,
       readers_sharing_a_log_tail_apply_everything_once_in_log_order) {
  prometheus::Registry registry;
  projection::projection_metrics metrics{registry};
  auto proj = std::make_shared<recorder>();
  create_tables(*proj);
  prewrite_log(db_, 12, 400, 21);
  auto tail = spawn_tail(metrics, 30);
  constexpr int32_t count = 3;
  std::vector<projection::partition_actor> partitions;
  for (int32_t i = 0; i < count; ++i)
    partitions.push_back(spawn_partition(proj, i, count));
  auto reader_of = [&](int32_t i) {
    std::vector<projection::partition_actor> only(count);
    only[static_cast<std::size_t>(i)] = partitions[static_cast<std::size_t>(i)];
    return spawn_reader(proj, only, tail, 7);
  };
  auto r0 = reader_of(0);
  auto r2 = reader_of(2);
  auto prewritten = log_end(db_);
  ASSERT_TRUE(await(r0, prewritten));
  ASSERT_TRUE(await(r2, prewritten));
  EXPECT_GT(log_reads(metrics, "shared"), 0.0);

  std::thread late([&] {
    pqxx::connection ca{db_.url()}, cb{db_.url()};
    for (int i = 0; i < 20; ++i) {
      pqxx::work a{ca};
      pqxx::work b{cb};
      auto ua = "la" + std::to_string(i);
      auto ub = "lb" + std::to_string(i);
      insert_event(a, ua, 1, registered(ua));
      insert_event(b, ub, 1, registered(ub));
      b.commit();
      a.commit(); // older transaction id, lower position, committed last
    }
  });
  auto r1 = reader_of(1);
  late.join();
  auto end = log_end(db_);
  for (auto& r : {r0, r1, r2})
    ASSERT_TRUE(await(r, end));
  EXPECT_GT(log_reads(metrics, "direct"), 0.0)
    << "precondition: the late reader never started behind the window";
  expect_each_key_exactly_once_in_log_order(db_);
}

// A fetcher in front of another that notes when each fetch arrives.
struct fetch_times {
  std::mutex mtx;
  std::vector<std::chrono::steady_clock::time_point> at;

  std::size_t size() {
    std::lock_guard<std::mutex> guard{mtx};
    return at.size();
  }
};

projection::fetcher_actor::behavior_type
timed_fetcher(projection::fetcher_actor::pointer self,
              projection::fetcher_actor next,
              std::shared_ptr<fetch_times> times) {
  return {
    [=](fetch_atom, const cursor& after, int64_t limit, int64_t until_position,
        int64_t until_ms) {
      {
        std::lock_guard<std::mutex> guard{times->mtx};
        times->at.push_back(std::chrono::steady_clock::now());
      }
      return self->delegate(next, fetch_atom::value, after, limit,
                            until_position, until_ms);
    },
    [=](head_atom) { return self->delegate(next, head_atom::value); },
  };
}

// A live reader with a linger fetches at most once per linger, however
// often it polls (every 10 ms here) and however fast events commit (one per
// transaction, without pause, up to 3,000), and still applies every event
// once, in log order. With no linger the same reader fetches every few
// milliseconds.
TEST_F(engine_test, reader_with_a_linger_fetches_at_most_once_per_linger) {
  auto proj = std::make_shared<recorder>();
  create_tables(*proj);
  auto times = std::make_shared<fetch_times>();
  auto fetcher = sys_->spawn(timed_fetcher, spawn_fetcher(), times);
  spawned_.push_back(caf::actor_cast<caf::actor>(fetcher));
  auto p = spawn_partition(proj, 0, 1);
  constexpr auto linger = 100ms;
  auto reader = spawn_reader(proj, {p}, fetcher, 1000, caf::duration{60s},
                             linger);
  std::atomic<bool> writing{true};
  std::thread writer([&] {
    pqxx::connection c{db_.url()};
    // At most 3,000: the reader must apply them all below (a reader with
    // nothing new still fetches once per linger).
    for (int i = 0; writing && i < 3000; ++i) {
      pqxx::work tx{c};
      auto u = "w" + std::to_string(i);
      insert_event(tx, u, 1, registered(u));
      tx.commit();
    }
  });
  // 60 s: under TSan a batch of 1,000 events takes seconds to apply.
  auto fetched = eventually([&] { return times->size() >= 8; }, 60s);
  writing = false;
  writer.join();
  ASSERT_TRUE(fetched) << "the reader fetched " << times->size()
                       << " times in 60 s";
  ASSERT_TRUE(await(reader, log_end(db_)));
  expect_each_key_exactly_once_in_log_order(db_);
  std::lock_guard<std::mutex> guard{times->mtx};
  // Arrivals, not sends: a fetch sent on time may arrive a little late and
  // the next one on time, hence the margin.
  for (std::size_t i = 1; i < times->at.size(); ++i)
    EXPECT_GE(times->at[i] - times->at[i - 1], linger - 20ms)
      << "fetches " << i - 1 << " and " << i << " came "
      << std::chrono::duration_cast<std::chrono::milliseconds>(
           times->at[i] - times->at[i - 1])
           .count()
      << " ms apart";
}

// -- partitions ---------------------------------------------------------------

// A batch delivered again (a lost ack) and a partition restarted on the same
// offset change nothing: the offset is committed with the rows.
TEST_F(engine_test, partition_applies_a_redelivered_batch_once) {
  auto proj = std::make_shared<recorder>();
  create_tables(*proj);
  projection::fetch_result res;
  ASSERT_NO_FATAL_FAILURE(fetch_small_log(res));
  auto batch = single_partition_batch(res.events, 0, res.events.size(), 1);
  auto pairs = batch.keyed.size();
  auto applied = [&](const projection::partition_actor& p) {
    auto ack = apply(p, batch);
    EXPECT_TRUE(ack) << "apply failed";
    return ack ? ack->applied : ~std::size_t{0};
  };
  auto p = spawn_partition(proj, 0, 1);
  EXPECT_EQ(applied(p), pairs);
  EXPECT_EQ(applied(p), 0u) << "redelivered batch applied again";
  stop({caf::actor_cast<caf::actor>(p)});
  auto restarted = spawn_partition(proj, 0, 1);
  EXPECT_EQ(applied(restarted), 0u)
    << "a restarted partition re-applied its committed batch";
  EXPECT_EQ(recorded(), static_cast<int64_t>(pairs));
  expect_each_key_exactly_once_in_log_order(db_);
}

// A call whose outcome the partition cannot know (its connection broke, as
// when a COMMIT is cut off) may still have committed: the partition then
// re-reads its offset from the database before the next attempt, instead
// of trusting what it remembers. Here another instance commits the second
// batch behind the partition's back, as its own lost COMMIT would have;
// when the batch is sent again the partition skips it.
TEST_F(engine_test, partition_rereads_its_offset_after_a_failed_call) {
  auto proj = std::make_shared<recorder>();
  create_tables(*proj);
  projection::fetch_result res;
  ASSERT_NO_FATAL_FAILURE(fetch_small_log(res));
  auto first = single_partition_batch(res.events, 0, 23, 1);
  auto second = single_partition_batch(res.events, 23, 46, 2);

  auto p = spawn_partition(proj, 0, 1);
  auto a1 = apply(p, first);
  ASSERT_TRUE(a1);
  EXPECT_EQ(a1->applied, first.keyed.size());
  auto behind_its_back = spawn_partition(proj, 0, 1);
  auto a2 = apply(behind_its_back, second);
  ASSERT_TRUE(a2);
  EXPECT_EQ(a2->applied, second.keyed.size());
  stop({caf::actor_cast<caf::actor>(behind_its_back)});

  // Break p's connection; its next call fails, and a later one succeeds.
  db_.exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
           " WHERE datname = current_database()"
           "   AND application_name LIKE 'shoutflowd%'");
  std::optional<projection::partition_ack> again;
  int failed = 0;
  ASSERT_TRUE(eventually([&] {
    again = apply(p, second);
    failed += again ? 0 : 1;
    return again.has_value();
  }));
  EXPECT_GT(failed, 0) << "the broken connection went unnoticed";
  EXPECT_EQ(again->applied, 0u)
    << "applied a batch that had committed: the offset was not re-read";
  EXPECT_EQ(recorded(),
            static_cast<int64_t>(first.keyed.size() + second.keyed.size()));
  expect_each_key_exactly_once_in_log_order(db_);
}

// A live partition writes its batch's changes into the outbox
// (projection_change_log) in the transaction that moves its offset, for the
// watch hubs that miss the broadcast: each row runs from the offset before
// the batch to the offset after it, and holds every change the batch made.
TEST_F(engine_test, live_partition_logs_each_batch_with_its_offset) {
  auto proj = std::make_shared<recorder>();
  create_tables(*proj);
  db_.exec("INSERT INTO projection_generations"
           " (projection, generation, state, partitions)"
           " VALUES ('recorder', 1, 'live', 1)");
  projection::fetch_result res;
  ASSERT_NO_FATAL_FAILURE(fetch_small_log(res));
  projection::partition_fence fence;
  fence.role = projection::generation_role::live;
  auto p = spawn_partition(proj, 0, 1, fence);
  auto first = single_partition_batch(res.events, 0, 20, 1);
  auto second = single_partition_batch(res.events, 20, res.events.size(), 2);
  for (auto* b : {&first, &second}) {
    auto ack = apply(p, *b);
    ASSERT_TRUE(ack) << "apply failed";
    EXPECT_EQ(ack->applied, b->keyed.size());
  }

  pqxx::connection conn{db_.url()};
  pqxx::read_transaction tx{conn};
  auto offset = tx.exec("SELECT tx_id::text, position, events"
                        "  FROM projection_offsets"
                        " WHERE projection = 'recorder' AND generation = 1"
                        "   AND partition = 0");
  ASSERT_EQ(offset.size(), 1u);
  journal::row_reader o{offset[0]};
  EXPECT_EQ(o.uint64(), second.end.tx);
  EXPECT_EQ(o.int64(), second.end.position);
  EXPECT_EQ(o.int64(),
            static_cast<int64_t>(first.keyed.size() + second.keyed.size()));
  auto logged = tx.exec("SELECT after_tx::text, after_position, to_tx::text,"
                        "       to_position, batch"
                        "  FROM projection_change_log"
                        " WHERE projection = 'recorder' AND generation = 1"
                        "   AND partition = 0 ORDER BY to_tx, to_position");
  ASSERT_EQ(logged.size(), 2u);
  cursor after;
  for (std::size_t i = 0; i < 2; ++i) {
    auto& b = i == 0 ? first : second;
    journal::row_reader r{logged[i]};
    cursor from{r.uint64(), r.int64()};
    cursor to{r.uint64(), r.int64()};
    EXPECT_EQ(from, after) << "logged batch " << i << " starts elsewhere";
    EXPECT_EQ(to, b.end) << "logged batch " << i << " ends elsewhere";
    after = to;
    v1::ReadSideMessage m;
    ASSERT_TRUE(m.ParseFromString(r.bytea()));
    ASSERT_TRUE(m.has_batch());
    std::vector<int64_t> positions;
    for (auto& c : m.batch().changes())
      positions.push_back(c.at().position());
    std::vector<int64_t> expected;
    for (auto& k : b.keyed)
      expected.push_back(b.events[k.index].at.position);
    EXPECT_EQ(positions, expected) << "logged batch " << i;
  }
}

// The partition's fence (G2/G3: one owner applies a partition at a time).
// A partition whose lease has moved on — another incarnation, a new epoch —
// writes nothing: neither read-model rows nor its offset. It stays fenced.
TEST_F(engine_test, a_partition_whose_lease_moved_on_writes_nothing) {
  leased_partition lp;
  ASSERT_NO_FATAL_FAILURE(start_leased_partition(lp));
  ASSERT_TRUE(apply(lp.actor, lp.first)) << "the holder's batch failed";
  auto applied = recorded();
  EXPECT_EQ(applied, static_cast<int64_t>(lp.first.keyed.size()));

  db_.exec("UPDATE leases SET owner_incarnation = 'inc-b', epoch = 4"
           " WHERE resource = '"
           + cluster::partition_resource("recorder") + "' AND part = 0");
  EXPECT_TRUE(fenced(lp.actor, lp.second));
  expect_nothing_more_written(applied, lp.first.end);
  EXPECT_TRUE(fenced(lp.actor, lp.second))
    << "the partition did not stay fenced";
}

// A partition of a generation that is no longer in its role's state (a swap
// retired it) writes nothing.
TEST_F(engine_test, a_partition_of_a_retired_generation_writes_nothing) {
  leased_partition lp;
  ASSERT_NO_FATAL_FAILURE(start_leased_partition(lp));
  ASSERT_TRUE(apply(lp.actor, lp.first))
    << "the live generation's batch failed";
  auto applied = recorded();

  db_.exec("UPDATE projection_generations SET state = 'retired'"
           " WHERE projection = 'recorder' AND generation = 1");
  EXPECT_TRUE(fenced(lp.actor, lp.second));
  expect_nothing_more_written(applied, lp.first.end);
}

// A takeover in progress (the new owner's acquisition holds the lease row
// FOR UPDATE with the epoch bumped) and a batch of the old owner: the batch
// waits for the takeover's COMMIT, then ends fenced with nothing written.
// Without the fence's row lock it would read the old, committed epoch and
// commit beside the new owner.
TEST_F(engine_test, a_batch_behind_a_takeover_waits_and_is_fenced) {
  leased_partition lp;
  ASSERT_NO_FATAL_FAILURE(start_leased_partition(lp));

  pqxx::connection taker{db_.url()};
  pqxx::work take{taker};
  auto resource = taker.quote(cluster::partition_resource("recorder"));
  take.exec("SELECT 1 FROM leases WHERE resource = " + resource
            + " AND part = 0 FOR UPDATE");
  take.exec("UPDATE leases SET owner_incarnation = 'inc-b', epoch = 4"
            " WHERE resource = "
            + resource + " AND part = 0");
  ::testing::AssertionResult outcome = ::testing::AssertionFailure();
  std::thread old_owner{[&] { outcome = fenced(lp.actor, lp.first); }};
  bool waited = eventually(
    [&] {
      return db_.scalar<int64_t>("SELECT count(*) FROM pg_locks"
                                 " WHERE NOT granted")
             > 0;
    },
    10s);
  take.commit();
  old_owner.join();
  EXPECT_TRUE(waited) << "the batch never waited for the takeover";
  EXPECT_TRUE(outcome);
  expect_nothing_more_written(0, cursor{});
}

// A reader that crashed after one partition committed a batch and before
// the other did resumes from the lowest offset: the partition that is ahead
// skips the replayed events, the other applies them.
TEST_F(engine_test, reader_resumes_from_the_lowest_partition_offset) {
  auto proj = std::make_shared<recorder>();
  create_tables(*proj);
  prewrite_log(db_, 12, 300, 11);
  auto fetcher = spawn_fetcher();
  projection::fetch_result res; // the first 100 events
  ASSERT_TRUE(eventually([&] {
    res = fetch(fetcher, {});
    return res.events.size() == 100;
  }));
  auto p0 = spawn_partition(proj, 0, 2);
  auto p1 = spawn_partition(proj, 1, 2);
  projection::partition_batch share;
  share.id = 1;
  share.events = res.events;
  share.end = res.events.back().at;
  for (uint32_t i = 0; i < share.events.size(); ++i)
    for (auto& k : recorded_keys(share.events[i]))
      if (projection::partition_of(k, 2) == 0)
        share.keyed.push_back({i, k});
  ASSERT_FALSE(share.keyed.empty());
  {
    caf::scoped_actor self{*sys_};
    self->request(p0, 30s, apply_atom::value, share)
      .receive(
        [&](projection::partition_ack& a) {
          EXPECT_EQ(a.applied, share.keyed.size());
        },
        [&](caf::error& err) { FAIL() << sys_->render(err); });
  }
  auto ahead = recorded();
  ASSERT_GT(ahead, 0);

  auto reader = spawn_reader(proj, {p0, p1}, fetcher, 37);
  ASSERT_TRUE(await(reader, log_end(db_)));
  expect_each_key_exactly_once_in_log_order(db_);
}

// -- readers under concurrent writers and restarts ----------------------------

// Commands from many concurrent clients commit out of order (two journal
// writers, group commit); the engine tails the log meanwhile with three
// partitions and small batches. Per key, the order of application is the
// log order, and every (event, key) is applied exactly once.
TEST_F(engine_test, concurrent_writers_are_applied_once_in_log_order_per_key) {
  auto proj = std::make_shared<recorder>();
  create_tables(*proj);
  auto e = spawn_engine(proj, 3, 50);

  test_node n{db_.url()};
  constexpr int users = 24;
  for (int i = 0; i < users; ++i) {
    auto id = "w" + std::to_string(i);
    auto r = n.send(register_user("reg-" + id, id, id));
    ASSERT_TRUE(r.has_result()) << r.DebugString();
  }
  std::mutex mu;
  std::vector<std::pair<std::string, std::string>> shouts; // id, author
  std::atomic<int> failures{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 8; ++t)
    clients.emplace_back([&, t] {
      std::mt19937 rng{static_cast<uint32_t>(100 + t)};
      auto pick = [&] { return "w" + std::to_string(rng() % users); };
      for (int i = 0; i < 150; ++i) {
        auto cid = "c" + std::to_string(t) + "-" + std::to_string(i);
        auto who = pick();
        v1::UserCommand c;
        auto kind = rng() % 8;
        std::pair<std::string, std::string> target;
        if (kind >= 5) {
          std::lock_guard<std::mutex> lock{mu};
          if (shouts.empty())
            kind = 0;
          else
            target = shouts[rng() % shouts.size()];
        }
        if (kind <= 1) {
          c = post_shout(cid, who, "hello " + cid);
        } else if (kind <= 3) {
          auto other = pick();
          if (other == who)
            continue;
          c = follow(cid, who, other);
        } else if (kind == 4) {
          auto* u = c.mutable_unfollow();
          u->set_command_id(cid);
          u->set_user_id(who);
          u->set_target_user_id(pick());
          if (u->target_user_id() == who)
            continue;
        } else if (kind <= 6) {
          auto* l = c.mutable_like_shout();
          l->set_command_id(cid);
          l->set_user_id(who);
          l->set_shout_id(target.first);
        } else {
          auto* u = c.mutable_unlike_shout();
          u->set_command_id(cid);
          u->set_user_id(who);
          u->set_shout_id(target.first);
        }
        auto r = n.send(c);
        if (!r.has_result()) {
          ++failures;
          continue;
        }
        if (!r.result().shout_id().empty()) {
          std::lock_guard<std::mutex> lock{mu};
          shouts.emplace_back(r.result().shout_id(), who);
        }
      }
    });
  for (auto& c : clients)
    c.join();
  EXPECT_EQ(failures.load(), 0);
  // Out-of-order commits did happen: some event of a younger transaction
  // has a lower position than one of an older transaction.
  EXPECT_GT(db_.scalar<int64_t>("SELECT count(*) FROM events a JOIN events b"
                                "  ON a.tx_id < b.tx_id"
                                " AND a.global_position > b.global_position"),
            0)
    << "precondition: the workload never committed out of position order";
  ASSERT_TRUE(await(e.reader, log_end(db_)));
  expect_each_key_exactly_once_in_log_order(db_);
}

// The reader is killed mid-stream (its partitions keep their offsets), a
// new reader takes over; then the whole engine is killed mid-stream and a
// new one starts from the database alone. Nothing is applied twice, nothing
// is missing, and per key the order stays the log order.
TEST_F(engine_test, restarts_mid_stream_apply_nothing_twice) {
  // Slow until the crash, so the engine is still mid-stream when it is
  // stopped however late the test's thread gets there: with 2 ms a batch
  // the engine once finished the whole log first on a loaded machine.
  // At 100 ms a batch (three partitions, 20 events each) the rest of the
  // log takes seconds; the fresh engine runs at full speed.
  auto proj = std::make_shared<recorder>(100);
  create_tables(*proj);
  prewrite_log(db_, 20, 1600, 23);
  auto total = expected_applications();
  auto end = log_end(db_);

  auto e = spawn_engine(proj, 3, 20);
  ASSERT_TRUE(eventually([&] { return recorded() >= total / 5; }));
  stop({caf::actor_cast<caf::actor>(e.reader)});
  auto at_reader_stop = recorded();
  EXPECT_LT(at_reader_stop, total) << "the reader finished before it stopped";

  e.reader = spawn_reader(proj, e.partitions, e.fetcher, 20);
  ASSERT_TRUE(
    eventually([&] { return recorded() >= at_reader_stop + total / 5; }));
  stop(e);
  auto at_crash = recorded();
  EXPECT_LT(at_crash, total) << "the engine finished before it was killed";

  proj->set_delay(0);
  auto fresh = spawn_engine(proj, 3, 20);
  ASSERT_TRUE(await(fresh.reader, end));
  EXPECT_EQ(recorded(), total);
  expect_each_key_exactly_once_in_log_order(db_);
}

// A partition whose call fails (its connection cut, as in a database
// restart) is sent the same share again after a pause: the reader keeps the
// share until the partition acknowledges it, and only then moves on. Every
// connection of the engine is cut three times while it is mid-stream; a
// partition's first call after a cut fails (see the test above), so each
// cut makes the partitions that still have work fail a share.
TEST_F(engine_test, reader_resends_the_share_of_a_failed_partition) {
  auto proj = std::make_shared<recorder>(50);
  create_tables(*proj);
  prewrite_log(db_, 20, 1200, 29);
  auto total = expected_applications();
  auto end = log_end(db_);

  auto e = spawn_engine(proj, 3, 20);
  for (int cut = 1; cut <= 3; ++cut) {
    ASSERT_TRUE(eventually([&] { return recorded() >= cut * total / 5; }));
    db_.exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
             " WHERE datname = current_database()"
             "   AND application_name LIKE 'shoutflowd%'");
    EXPECT_LT(recorded(), total) << "the engine finished before cut " << cut;
  }
  ASSERT_TRUE(await(e.reader, end));
  EXPECT_EQ(recorded(), total);
  expect_each_key_exactly_once_in_log_order(db_);
}

// -- whole nodes --------------------------------------------------------------

namespace {

/// Counters of the users and shouts read models as the events imply them.
struct expected_counts {
  std::map<std::string, std::array<int64_t, 5>> users;  // shouts, followers,
                                                        // following, likes
                                                        // given, received
  std::map<std::string, std::array<int64_t, 2>> shouts; // likes, replies
};

expected_counts counts_from_events(const test_database& db) {
  expected_counts out;
  pqxx::connection conn{db.url()};
  pqxx::read_transaction tx{conn};
  for (const auto& row : tx.exec("SELECT event_type, event_version, payload"
                                 "  FROM events ORDER BY tx_id,"
                                 "  global_position")) {
    auto e = user::decode_event(row[0].as<std::string>(), row[1].as<int>(),
                                pqxx::binarystring{row[2]}.str());
    if (!e)
      throw std::runtime_error("undecodable event in the log");
    switch (e->event_case()) {
      case v1::UserEvent::kUserRegistered:
        out.users[e->user_registered().user_id()];
        break;
      case v1::UserEvent::kShoutPosted: {
        auto& p = e->shout_posted();
        out.users[p.author_id()][0] += 1;
        out.shouts[p.shout_id()];
        if (!p.reply_to_shout_id().empty())
          out.shouts[p.reply_to_shout_id()][1] += 1;
        break;
      }
      case v1::UserEvent::kShoutDeleted: {
        auto& d = e->shout_deleted();
        out.users[d.author_id()][0] -= 1;
        if (!d.reply_to_shout_id().empty())
          out.shouts[d.reply_to_shout_id()][1] -= 1;
        break;
      }
      case v1::UserEvent::kUserFollowed:
        out.users[e->user_followed().target_user_id()][1] += 1;
        out.users[e->user_followed().user_id()][2] += 1;
        break;
      case v1::UserEvent::kUserUnfollowed:
        out.users[e->user_unfollowed().target_user_id()][1] -= 1;
        out.users[e->user_unfollowed().user_id()][2] -= 1;
        break;
      case v1::UserEvent::kShoutLiked:
        out.users[e->shout_liked().user_id()][3] += 1;
        out.users[e->shout_liked().author_id()][4] += 1;
        out.shouts[e->shout_liked().shout_id()][0] += 1;
        break;
      case v1::UserEvent::kShoutUnliked:
        out.users[e->shout_unliked().user_id()][3] -= 1;
        out.users[e->shout_unliked().author_id()][4] -= 1;
        out.shouts[e->shout_unliked().shout_id()][0] -= 1;
        break;
      default:
        break;
    }
  }
  return out;
}

void expect_counts_match_events(const test_database& db) {
  auto want = counts_from_events(db);
  pqxx::connection conn{db.url()};
  pqxx::read_transaction tx{conn};
  expected_counts got;
  for (const auto& row :
       tx.exec("SELECT user_id, shout_count, follower_count, following_count,"
               "       likes_given, likes_received FROM rm_users"))
    got.users[row[0].as<std::string>()]
      = {row[1].as<int64_t>(), row[2].as<int64_t>(), row[3].as<int64_t>(),
         row[4].as<int64_t>(), row[5].as<int64_t>()};
  for (const auto& row :
       tx.exec("SELECT shout_id, like_count, reply_count FROM rm_shouts"))
    got.shouts[row[0].as<std::string>()] = {row[1].as<int64_t>(),
                                            row[2].as<int64_t>()};
  EXPECT_EQ(got.users.size(), want.users.size());
  EXPECT_EQ(got.shouts.size(), want.shouts.size());
  int bad = 0;
  for (auto& [id, c] : want.users)
    if (got.users[id] != c && ++bad <= 5)
      ADD_FAILURE() << "user " << id << ": counters differ from the events";
  for (auto& [id, c] : want.shouts)
    if (got.shouts[id] != c && ++bad <= 10)
      ADD_FAILURE() << "shout " << id << ": counters differ from the events";
  EXPECT_EQ(bad, 0);
  // Per stream, the users read model saw every event of the stream in
  // order: its last applied seq_nr is the stream's last.
  EXPECT_EQ(tx.exec1("SELECT count(*) FROM rm_users u JOIN (SELECT"
                     "  persistence_id, max(seq_nr) AS s FROM events"
                     "  GROUP BY persistence_id) e"
                     "  ON e.persistence_id = 'user|' || u.user_id"
                     " WHERE u.source_seq <> e.s")[0]
              .as<int64_t>(),
            0);
}

/// Waits (through the watch hub) until every read model has
/// applied the whole log.
void await_read_models(test_node& n, const test_database& db) {
  auto end = log_end(db);
  caf::scoped_actor self{n.get().system()};
  self
    ->request(n.get().hub(), 60s, await_atom::value,
              std::vector<std::string>{"users", "shouts", "timelines"}, end)
    .receive([](bool) {},
             [&](caf::error& err) {
               FAIL() << "read models did not catch up: "
                      << n.get().system().render(err);
             });
}

std::vector<projection::reader_status> status_of(test_node& n) {
  caf::scoped_actor self{n.get().system()};
  std::vector<projection::reader_status> out;
  self->request(n.get().projections(), 10s, status_atom::value)
    .receive([&](std::vector<projection::reader_status>& s) { out = s; },
             [&](caf::error& err) {
               ADD_FAILURE() << n.get().system().render(err);
             });
  return out;
}

bool has_user(const test_database& db, const std::string& id) {
  return db.scalar<int64_t>("SELECT count(*) FROM rm_users WHERE user_id = '"
                            + id + "'")
         == 1;
}

} // namespace

// Through a node's real read models: a transaction with the older xid but a
// higher position commits first and is applied while the younger one (lower
// position) is still open — the reader's watermark passes the lower
// position — and the younger one is still applied when it commits late.
// Then the classic gap: an older transaction holds back a younger commit and
// a command acknowledged by the node; all three are applied once it commits.
// A recorder engine tailing the same log checks the per-key order.
TEST_F(engine_test, node_applies_late_commits_a_position_cursor_would_skip) {
  auto rec = std::make_shared<recorder>();
  create_tables(*rec);
  auto e = spawn_engine(rec, 2, 100);
  test_node n{db_.url(), [](node::node_config& c) { with_read_side(c); }};

  pqxx::connection ca{db_.url()}, cb{db_.url()};
  {
    pqxx::work a{ca};
    pqxx::work b{cb};
    tx_of(b); // b takes the older transaction id
    auto pa = insert_event(a, "u1", 1, registered("u1"));
    auto pb = insert_event(b, "u2", 1, registered("u2"));
    insert_event(b, "u2", 2, posted("u2", "S-u2"));
    ASSERT_LT(pa, pb);
    b.commit();
    ASSERT_TRUE(eventually([&] { return has_user(db_, "u2"); }));
    // The reader's watermark is past the open transaction's position: a
    // reader continuing after the highest position would never read it.
    // (The row is visible once its partition commits; the watermark moves
    // when every partition of the batch has.)
    EXPECT_TRUE(eventually([&] {
      for (auto& s : status_of(n))
        if (s.projection == "users" && s.watermark.position > pa)
          return true;
      return false;
    }));
    EXPECT_FALSE(has_user(db_, "u1"));
    a.commit();
  }
  ASSERT_TRUE(eventually([&] { return has_user(db_, "u1"); }))
    << "the late commit at a lower position was skipped";

  {
    pqxx::work a{ca};
    pqxx::work b{cb};
    insert_event(a, "u3", 1, registered("u3"));
    auto p3 = insert_event(a, "u3", 2, followed("u3", "u1"));
    insert_event(b, "u4", 1, registered("u4"));
    insert_event(b, "u4", 2, followed("u4", "u1"));
    b.commit();
    auto acked = n.send(register_user("r5", "u5", "u5"));
    ASSERT_TRUE(acked.has_result()) << acked.DebugString();
    // Behind the open transaction: nothing after it may be applied yet.
    for (auto& s : status_of(n))
      EXPECT_LT(s.watermark.position, p3) << s.projection;
    EXPECT_FALSE(has_user(db_, "u4"));
    EXPECT_FALSE(has_user(db_, "u5"));
    a.commit();
  }
  await_read_models(n, db_);
  for (auto* id : {"u1", "u2", "u3", "u4", "u5"})
    EXPECT_TRUE(has_user(db_, id)) << id;
  EXPECT_EQ(db_.scalar<int64_t>(
              "SELECT follower_count FROM rm_users WHERE user_id = 'u1'"),
            2);
  expect_counts_match_events(db_);
  ASSERT_TRUE(await(e.reader, log_end(db_)));
  expect_each_key_exactly_once_in_log_order(db_);
}

// A node is stopped while its projections are applying a long log; a new
// node on the same database resumes from the committed offsets: every
// counter equals what the events imply (nothing twice, nothing missing).
TEST(node_restart, mid_stream_applies_nothing_twice) {
  test_database db;
  {
    test_node writer{db.url()};
    constexpr int users = 40;
    for (int i = 0; i < users; ++i) {
      auto id = "n" + std::to_string(i);
      auto r = writer.send(register_user("reg-" + id, id, id));
      ASSERT_TRUE(r.has_result()) << r.DebugString();
    }
    std::mutex mu;
    std::vector<std::string> shouts;
    std::vector<std::thread> clients;
    for (int t = 0; t < 8; ++t)
      clients.emplace_back([&, t] {
        std::mt19937 rng{static_cast<uint32_t>(7 + t)};
        auto pick = [&] { return "n" + std::to_string(rng() % users); };
        for (int i = 0; i < 200; ++i) {
          auto cid = "c" + std::to_string(t) + "-" + std::to_string(i);
          auto who = pick();
          auto kind = rng() % 4;
          std::string target;
          {
            std::lock_guard<std::mutex> lock{mu};
            if (!shouts.empty())
              target = shouts[rng() % shouts.size()];
          }
          v1::UserCommand c;
          if (kind == 0 || target.empty()) {
            c = post_shout(cid, who, "text " + cid);
            if (!target.empty() && rng() % 3 == 0)
              c.mutable_post_shout()->set_reply_to_shout_id(target);
          } else if (kind == 1) {
            auto other = pick();
            if (other == who)
              continue;
            c = follow(cid, who, other);
          } else {
            auto* l = c.mutable_like_shout();
            l->set_command_id(cid);
            l->set_user_id(who);
            l->set_shout_id(target);
          }
          auto r = writer.send(c);
          if (r.has_result() && !r.result().shout_id().empty()) {
            std::lock_guard<std::mutex> lock{mu};
            shouts.push_back(r.result().shout_id());
          }
        }
      });
    for (auto& c : clients)
      c.join();
  }
  auto head = db.scalar<int64_t>("SELECT max(global_position) FROM events");
  ASSERT_GT(head, 1200);

  {
    test_node first{db.url(), [](node::node_config& c) {
                      with_read_side(c);
                      c.projection_batch = 10;
                    }};
    ASSERT_TRUE(eventually([&] {
      for (auto& s : status_of(first))
        if (s.watermark.position > 0)
          return true;
      return false;
    }));
    bool behind = false;
    for (auto& s : status_of(first))
      behind = behind || s.watermark.position < head;
    EXPECT_TRUE(behind) << "caught up before the stop: nothing was cut";
    first.stop();
  }
  EXPECT_LT(db.scalar<int64_t>("SELECT min(position) FROM projection_offsets"),
            head)
    << "the stop did not interrupt the projections";

  test_node second{db.url(), [](node::node_config& c) { with_read_side(c); }};
  await_read_models(second, db);
  expect_counts_match_events(db);
  EXPECT_EQ(db.scalar<int64_t>("SELECT count(*) FROM projection_dead_letters"),
            0);
}

// Once everything is applied, the AdminService reports no lag — also when
// the last event in log order (tx_id, position) is not the one with the
// highest position (a younger transaction inserted first, committed last).
TEST(node_status, no_lag_once_everything_is_applied) {
  test_database db;
  test_node n{db.url(), [](node::node_config& c) { with_read_side(c); }};
  pqxx::connection ca{db.url()}, cb{db.url()};
  pqxx::work a{ca};
  pqxx::work b{cb};
  tx_of(b); // b takes the older transaction id
  auto pa = insert_event(a, "u1", 1, registered("u1"));
  auto pb = insert_event(b, "u2", 1, registered("u2"));
  ASSERT_LT(pa, pb);
  b.commit();
  a.commit();
  await_read_models(n, db);
  ASSERT_TRUE(has_user(db, "u1"));
  ASSERT_TRUE(has_user(db, "u2"));

  auto stub = n.admin_stub();
  v1::ProjectionStatus status;
  auto ctx = context_with_deadline();
  auto s = stub->GetProjectionStatus(ctx.get(), {}, &status);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(status.head_position(), pb);
  ASSERT_EQ(status.projections_size(), 3);
  for (auto& p : status.projections()) {
    EXPECT_EQ(p.lag_seconds(), 0.0) << p.projection();
    EXPECT_EQ(p.lag_events(), 0)
      << p.projection() << " reports lag with every event applied (position "
      << p.position() << ", head " << status.head_position() << ")";
  }
}
