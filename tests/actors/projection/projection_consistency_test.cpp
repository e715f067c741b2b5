// G3, the whole read side: after a concurrent mixed workload every read-model
// row equals what a pure replay of the event log gives; a rebuild from zero
// yields the same rows as the generation it replaces; timelines equal pure
// fan-out on both sides of the celebrity threshold and under the cap; and a
// point-in-time build reflects exactly the events up to its position while
// the live generation stays as it was.
//
// The expected read models are computed here from the `events` table alone
// (payloads decoded with the real codec, replayed in log order), never from
// what the commands returned.

#include <gtest/gtest.h>

#include <caf/all.hpp>
#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "actors/projection/projection_actors.hpp"
#include "actors/user/user_codec.hpp"
#include "tests/support/test_db.hpp"
#include "tests/support/test_node.hpp"
#include "tests/support/wait.hpp"

using namespace shoutflow;
using namespace shoutflow::testing;
using namespace std::chrono_literals;

namespace {

using google::protobuf::util::TimeUtil;
using rows = std::vector<std::string>;

using shoutflow::testing::eventually;

// -- the log, replayed by pure functions --------------------------------------

struct log_event {
  uint64_t tx = 0;
  int64_t position = 0;
  std::string owner;
  int64_t seq_nr = 0;
  v1::UserEvent event;
};

/// The log in the readers' order, up to `until` (0: all of it).
std::vector<log_event> read_log(const test_database& db, int64_t until = 0) {
  pqxx::connection conn{db.url()};
  pqxx::read_transaction tx{conn};
  std::vector<log_event> out;
  for (const auto& row : tx.exec_params(
         "SELECT tx_id::text AS tx, global_position, persistence_id, seq_nr,"
         "       event_type, event_version, payload FROM events"
         " WHERE $1::bigint = 0 OR global_position <= $1"
         " ORDER BY tx_id, global_position",
         until)) {
    log_event e;
    e.tx = std::stoull(row[0].as<std::string>());
    e.position = row[1].as<int64_t>();
    e.owner = row[2].as<std::string>().substr(5); // "user|"
    e.seq_nr = row[3].as<int64_t>();
    auto decoded = user::decode_event(row[4].as<std::string>(),
                                      row[5].as<int>(),
                                      pqxx::binarystring{row[6]}.str());
    if (!decoded)
      throw std::runtime_error("undecodable event at "
                               + std::to_string(e.position));
    e.event = std::move(*decoded);
    out.push_back(std::move(e));
  }
  return out;
}

int64_t ms(const google::protobuf::Timestamp& t) {
  return TimeUtil::TimestampToMilliseconds(t);
}

struct user_doc {
  std::string handle, display_name, avatar_hash, bio;
  int64_t created_ms = 0, shouts = 0, followers = 0, following = 0,
          likes_given = 0, likes_received = 0, last_login_ms = 0,
          source_seq = 0, position = 0;
};

struct shout_doc {
  std::string author, text, reply_to;
  int64_t created_ms = 0, likes = 0, replies = 0, position = 0;
  bool deleted = false;
};

struct login {
  int64_t at_ms = 0;
  bool success = false;
  std::string ip, agent;
};

/// The read models as pure fan-out defines them.
struct model {
  int64_t threshold = 10000;
  std::map<std::string, user_doc> users;
  std::map<std::pair<std::string, int64_t>, login> logins; // (user, position)
  std::map<std::string, shout_doc> shouts;
  std::map<std::pair<std::string, std::string>, int64_t>
    follows; // (author, follower) -> position of the follow
  std::map<std::string, int64_t> authors; // ever followed -> followers now
  std::map<std::pair<std::string, std::string>, bool>
    fanned_out; // (author, shout)

  void apply(const log_event& le) {
    auto& e = le.event;
    auto touch_user = [&](const std::string& id) -> user_doc& {
      auto& d = users[id];
      d.position = le.position;
      return d;
    };
    auto touch_shout = [&](const std::string& id) -> shout_doc& {
      auto& d = shouts[id];
      d.position = le.position;
      return d;
    };
    touch_user(le.owner).source_seq = le.seq_nr;
    switch (e.event_case()) {
      case v1::UserEvent::kUserRegistered: {
        auto& r = e.user_registered();
        auto& d = users[le.owner];
        d.handle = r.handle();
        d.display_name = r.display_name();
        d.avatar_hash = r.avatar_hash();
        d.created_ms = ms(r.registered_at());
        break;
      }
      case v1::UserEvent::kProfileUpdated: {
        auto& r = e.profile_updated();
        auto& d = users[le.owner];
        if (r.has_display_name())
          d.display_name = r.display_name();
        if (r.has_avatar_hash())
          d.avatar_hash = r.avatar_hash();
        if (r.has_bio())
          d.bio = r.bio();
        break;
      }
      case v1::UserEvent::kUserFollowed: {
        auto& r = e.user_followed();
        users[r.user_id()].following += 1;
        touch_user(r.target_user_id()).followers += 1;
        follows[{r.target_user_id(), r.user_id()}] = le.position;
        authors[r.target_user_id()] += 1;
        break;
      }
      case v1::UserEvent::kUserUnfollowed: {
        auto& r = e.user_unfollowed();
        users[r.user_id()].following -= 1;
        touch_user(r.target_user_id()).followers -= 1;
        follows.erase({r.target_user_id(), r.user_id()});
        authors[r.target_user_id()] -= 1;
        break;
      }
      case v1::UserEvent::kShoutPosted: {
        auto& r = e.shout_posted();
        users[r.author_id()].shouts += 1;
        auto& s = touch_shout(r.shout_id());
        s.author = r.author_id();
        s.text = r.text();
        s.reply_to = r.reply_to_shout_id();
        s.created_ms = ms(r.posted_at());
        if (!r.reply_to_shout_id().empty())
          touch_shout(r.reply_to_shout_id()).replies += 1;
        auto count = authors.find(r.author_id());
        fanned_out[{r.author_id(), r.shout_id()}]
          = (count == authors.end() ? 0 : count->second) < threshold;
        break;
      }
      case v1::UserEvent::kShoutDeleted: {
        auto& r = e.shout_deleted();
        users[r.author_id()].shouts -= 1;
        touch_shout(r.shout_id()).deleted = true;
        if (!r.reply_to_shout_id().empty())
          touch_shout(r.reply_to_shout_id()).replies -= 1;
        break;
      }
      case v1::UserEvent::kShoutLiked: {
        auto& r = e.shout_liked();
        users[r.user_id()].likes_given += 1;
        touch_user(r.author_id()).likes_received += 1;
        touch_shout(r.shout_id()).likes += 1;
        break;
      }
      case v1::UserEvent::kShoutUnliked: {
        auto& r = e.shout_unliked();
        users[r.user_id()].likes_given -= 1;
        touch_user(r.author_id()).likes_received -= 1;
        touch_shout(r.shout_id()).likes -= 1;
        break;
      }
      case v1::UserEvent::kUserLoggedIn: {
        auto& r = e.user_logged_in();
        users[le.owner].last_login_ms = ms(r.logged_in_at());
        logins[{le.owner, le.position}] = {ms(r.logged_in_at()), true,
                                           r.client_ip(), r.user_agent()};
        break;
      }
      case v1::UserEvent::kLoginFailed: {
        auto& r = e.login_failed();
        logins[{le.owner, le.position}] = {ms(r.failed_at()), false,
                                           r.client_ip(), r.user_agent()};
        break;
      }
      case v1::UserEvent::EVENT_NOT_SET:
        break;
    }
  }

  bool follows_author(const std::string& follower,
                      const std::string& author) const {
    return follows.count({author, follower}) > 0;
  }

  /// A home timeline by pure fan-out: the owner's own shouts and those of
  /// everyone the owner follows now, without deleted ones, newest first,
  /// the newest `cap`.
  std::vector<std::string> timeline(const std::string& owner,
                                    int64_t cap) const {
    std::vector<std::string> out;
    for (auto& [id, s] : shouts)
      if (!s.deleted && (s.author == owner || follows_author(owner, s.author)))
        out.push_back(id);
    std::sort(out.rbegin(), out.rend());
    if (static_cast<int64_t>(out.size()) > cap)
      out.resize(static_cast<std::size_t>(cap));
    return out;
  }
};

model replay(const test_database& db, int64_t threshold, int64_t until = 0) {
  model m;
  m.threshold = threshold;
  for (auto& e : read_log(db, until))
    m.apply(e);
  return m;
}

// -- read models as rows ------------------------------------------------------

std::string join(std::initializer_list<std::string> xs) {
  std::string out;
  for (auto& x : xs)
    out += (out.empty() ? "" : "|") + x;
  return out;
}

std::string num(int64_t v) {
  return std::to_string(v);
}

std::string flag(bool b) {
  return b ? "1" : "0";
}

/// Expected rows of each read-model table, formatted like `actual_rows`.
std::map<std::string, rows> expected_rows(const model& m) {
  std::map<std::string, rows> out;
  for (auto* table : {"rm_users", "rm_logins", "rm_shouts", "rm_followers",
                      "rm_authors", "rm_author_shouts", "rm_home"})
    out[table];
  for (auto& [id, d] : m.users)
    out["rm_users"].push_back(
      join({id, d.handle, d.display_name, d.avatar_hash, d.bio,
            num(d.created_ms), num(d.shouts), num(d.followers),
            num(d.following), num(d.likes_given), num(d.likes_received),
            num(d.last_login_ms), num(d.source_seq), num(d.position)}));
  for (auto& [k, l] : m.logins)
    out["rm_logins"].push_back(join(
      {k.first, num(k.second), num(l.at_ms), flag(l.success), l.ip, l.agent}));
  for (auto& [id, s] : m.shouts)
    out["rm_shouts"].push_back(
      join({id, s.author, s.text, num(s.created_ms), num(s.likes),
            num(s.replies), s.reply_to, flag(s.deleted), num(s.position)}));
  for (auto& [k, pos] : m.follows)
    out["rm_followers"].push_back(join({k.first, k.second, num(pos)}));
  for (auto& [author, n] : m.authors)
    out["rm_authors"].push_back(join({author, num(n)}));
  for (auto& [k, fanned] : m.fanned_out)
    out["rm_author_shouts"].push_back(join(
      {k.first, k.second, flag(fanned), flag(m.shouts.at(k.second).deleted)}));
  // Stored home rows: own shouts, and the fanned-out shouts of followed
  // authors (the others are merged at read time), never deleted ones.
  for (auto& [id, s] : m.shouts) {
    if (s.deleted)
      continue;
    out["rm_home"].push_back(join({s.author, id, s.author}));
    if (!m.fanned_out.at({s.author, id}))
      continue;
    for (auto it = m.follows.lower_bound({s.author, ""});
         it != m.follows.end() && it->first.first == s.author; ++it)
      out["rm_home"].push_back(join({it->first.second, id, s.author}));
  }
  for (auto& [name, r] : out)
    std::sort(r.begin(), r.end());
  return out;
}

/// The read-model tables with `suffix` ("" reads the live views), as rows
/// formatted like `expected_rows`.
std::map<std::string, rows> actual_rows(const test_database& db,
                                        const std::string& suffix) {
  const std::map<std::string, std::string> queries = {
    {"rm_users",
     "SELECT concat_ws('|', user_id, handle, display_name, avatar_hash, bio,"
     " coalesce((extract(epoch FROM created_at) * 1000)::bigint, 0),"
     " shout_count, follower_count, following_count, likes_given,"
     " likes_received,"
     " coalesce((extract(epoch FROM last_login_at) * 1000)::bigint, 0),"
     " source_seq, position) FROM rm_users{g}"},
    {"rm_logins",
     "SELECT concat_ws('|', user_id, position,"
     " (extract(epoch FROM at) * 1000)::bigint, success::int, client_ip,"
     " user_agent) FROM rm_logins{g}"},
    {"rm_shouts",
     "SELECT concat_ws('|', shout_id, author_id, text,"
     " (extract(epoch FROM created_at) * 1000)::bigint, like_count,"
     " reply_count, reply_to_shout_id, deleted::int, position)"
     " FROM rm_shouts{g}"},
    {"rm_followers", "SELECT concat_ws('|', author_id, follower_id, position)"
                     " FROM rm_followers{g}"},
    {"rm_authors",
     "SELECT concat_ws('|', author_id, follower_count) FROM rm_authors{g}"},
    {"rm_author_shouts",
     "SELECT concat_ws('|', author_id, shout_id, fanned_out::int,"
     " deleted::int) FROM rm_author_shouts{g}"},
    {"rm_home",
     "SELECT concat_ws('|', owner_id, shout_id, author_id) FROM rm_home{g}"},
  };
  pqxx::connection conn{db.url()};
  pqxx::read_transaction tx{conn};
  std::map<std::string, rows> out;
  for (auto& [name, sql] : queries) {
    auto& r = out[name];
    for (const auto& row : tx.exec(projection::expand_ddl(sql, suffix)))
      r.push_back(row[0].as<std::string>());
    std::sort(r.begin(), r.end());
  }
  return out;
}

/// Compares two row sets, reporting the first differences.
::testing::AssertionResult same_rows(const std::string& table, const rows& want,
                                     const rows& got) {
  if (want == got)
    return ::testing::AssertionSuccess();
  rows missing, extra;
  std::set_difference(want.begin(), want.end(), got.begin(), got.end(),
                      std::back_inserter(missing));
  std::set_difference(got.begin(), got.end(), want.begin(), want.end(),
                      std::back_inserter(extra));
  auto r = ::testing::AssertionFailure();
  r << table << ": expected " << want.size() << " rows, got " << got.size()
    << "; " << missing.size() << " missing, " << extra.size() << " extra";
  for (std::size_t i = 0; i < std::min<std::size_t>(missing.size(), 5); ++i)
    r << "\n  missing: " << missing[i];
  for (std::size_t i = 0; i < std::min<std::size_t>(extra.size(), 5); ++i)
    r << "\n  extra:   " << extra[i];
  return r;
}

void expect_read_models_equal(const std::map<std::string, rows>& want,
                              const std::map<std::string, rows>& got) {
  ASSERT_EQ(want.size(), got.size());
  for (auto& [table, r] : want)
    EXPECT_TRUE(same_rows(table, r, got.at(table)));
}

/// Whole rows (every column, `t::text`) of one generation's tables.
std::map<std::string, rows>
generation_rows(const test_database& db, const std::vector<std::string>& bases,
                int32_t generation) {
  pqxx::connection conn{db.url()};
  pqxx::read_transaction tx{conn};
  std::map<std::string, rows> out;
  for (auto& base : bases) {
    auto& r = out[base];
    for (const auto& row : tx.exec("SELECT t::text FROM " + base + "_g"
                                   + std::to_string(generation) + " t"))
      r.push_back(row[0].as<std::string>());
    std::sort(r.begin(), r.end());
  }
  return out;
}

const std::map<std::string, std::vector<std::string>> tables_of = {
  {"users", {"rm_users", "rm_logins"}},
  {"shouts", {"rm_shouts"}},
  {"timelines", {"rm_followers", "rm_authors", "rm_author_shouts", "rm_home"}},
};

// -- the node -----------------------------------------------------------------

projection::cursor log_end(const test_database& db) {
  pqxx::connection conn{db.url()};
  pqxx::read_transaction tx{conn};
  auto r = tx.exec("SELECT tx_id::text AS tx, global_position FROM events"
                   " ORDER BY tx_id DESC, global_position DESC LIMIT 1");
  if (r.empty())
    return {};
  return {std::stoull(r[0][0].as<std::string>()), r[0][1].as<int64_t>()};
}

/// Waits through the projection manager until every live read model has
/// applied the whole log.
::testing::AssertionResult await_read_models(test_node& n,
                                             const test_database& db) {
  auto end = log_end(db);
  caf::scoped_actor self{n.get().system()};
  auto ok = ::testing::AssertionSuccess();
  self
    ->request(n.get().hub(), 60s, await_atom::value,
              std::vector<std::string>{"users", "shouts", "timelines"}, end)
    .receive([](bool) {},
             [&](caf::error& err) {
               ok = ::testing::AssertionFailure()
                    << "read models did not reach position " << end.position
                    << ": " << n.get().system().render(err);
             });
  return ok;
}

v1::ProjectionStatus projection_status(test_node& n) {
  auto stub = n.admin_stub();
  v1::ProjectionStatus out;
  auto ctx = context_with_deadline(10s);
  auto s = stub->GetProjectionStatus(ctx.get(), {}, &out);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return out;
}

int32_t rebuild(test_node& n, const std::string& projection,
                int64_t until_position = 0) {
  auto stub = n.admin_stub();
  v1::RebuildProjectionRequest req;
  req.set_projection(projection);
  req.set_until_position(until_position);
  v1::RebuildProjectionResponse resp;
  auto ctx = context_with_deadline(30s);
  auto s = stub->RebuildProjection(ctx.get(), req, &resp);
  EXPECT_TRUE(s.ok()) << projection << ": " << s.error_message();
  return resp.generation();
}

/// Every index of a generation's tables, as its definition with the
/// generation's suffix written "{g}", sorted: what two generations of one
/// projection must agree on.
rows index_definitions(const test_database& db,
                       const std::vector<std::string>& bases,
                       int32_t generation) {
  auto suffix = projection::generation_suffix(generation);
  pqxx::connection conn{db.url()};
  pqxx::read_transaction tx{conn};
  rows out;
  for (auto& base : bases)
    for (const auto& row :
         tx.exec_params("SELECT indexdef FROM pg_indexes WHERE tablename = $1",
                        base + suffix)) {
      auto def = row[0].as<std::string>();
      for (auto at = def.find(suffix); at != std::string::npos;
           at = def.find(suffix, at))
        def.replace(at, suffix.size(), "{g}");
      out.push_back(def);
    }
  std::sort(out.begin(), out.end());
  return out;
}

int32_t live_generation(const test_database& db, const std::string& name) {
  return db.scalar<int32_t>(
    "SELECT generation FROM projection_generations WHERE projection = '" + name
    + "' AND state = 'live'");
}

double continuity_violations(test_node& n) {
  return metric_value(n, "shoutflow_projection_continuity_violations_total");
}

/// Every page of a user's home timeline, through the QueryService.
std::vector<std::string> timeline_of(test_node& n, const std::string& user,
                                     int32_t page_size) {
  auto stub = n.query_stub();
  std::vector<std::string> out;
  std::string token;
  for (int page = 0; page < 1000; ++page) {
    v1::GetTimelineRequest req;
    req.set_user_id(user);
    req.set_page_size(page_size);
    req.set_page_token(token);
    v1::TimelinePage resp;
    auto ctx = context_with_deadline(10s);
    auto s = stub->GetTimeline(ctx.get(), req, &resp);
    if (!s.ok()) {
      ADD_FAILURE() << user << ": " << s.error_message();
      return out;
    }
    for (auto& shout : resp.shouts())
      out.push_back(shout.shout_id());
    token = resp.next_page_token();
    if (token.empty())
      return out;
  }
  ADD_FAILURE() << "timeline of " << user << " does not end";
  return out;
}

// -- the workload -------------------------------------------------------------

struct workload_stats {
  std::atomic<int64_t> sent{0}, applied{0}, rejected{0}, unavailable{0};
};

/// `commands` random commands of every kind from `clients` concurrent
/// clients over `users` registered users.
void run_workload(test_node& n, const std::vector<std::string>& users,
                  int clients, int commands, uint32_t seed,
                  workload_stats& stats, const std::string& tag) {
  std::mutex mu;
  std::vector<std::pair<std::string, std::string>> shouts; // id, author
  // Follows and likes made so far (who, target), for unfollows and unlikes
  // that are not no-ops.
  std::vector<std::pair<std::string, std::string>> follows, likes;
  auto remember = [&](auto& list, const std::string& who,
                      const std::string& what) {
    std::lock_guard<std::mutex> lock{mu};
    list.emplace_back(who, what);
  };
  auto recall = [&](auto& list, std::mt19937& rng) {
    std::lock_guard<std::mutex> lock{mu};
    return list.empty() ? std::pair<std::string, std::string>{}
                        : list[rng() % list.size()];
  };
  std::vector<std::thread> threads;
  std::atomic<int> next{0};
  for (int t = 0; t < clients; ++t)
    threads.emplace_back([&, t] {
      std::mt19937 rng{seed + static_cast<uint32_t>(t)};
      auto pick = [&] { return users[rng() % users.size()]; };
      for (int i = next++; i < commands; i = next++) {
        auto cid = tag + "-" + std::to_string(i);
        auto who = pick();
        std::pair<std::string, std::string> known;
        {
          std::lock_guard<std::mutex> lock{mu};
          if (!shouts.empty())
            known = shouts[rng() % shouts.size()];
        }
        v1::UserCommand c;
        auto roll = rng() % 100;
        if (roll < 20 || known.first.empty()) {
          c = post_shout(cid, who, "shout " + cid);
          if (!known.first.empty() && rng() % 3 == 0)
            c.mutable_post_shout()->set_reply_to_shout_id(known.first);
        } else if (roll < 25) {
          auto* d = c.mutable_delete_shout();
          d->set_command_id(cid);
          d->set_user_id(known.second);
          d->set_shout_id(known.first);
        } else if (roll < 45) {
          auto other = pick();
          if (other == who)
            continue;
          c = follow(cid, who, other);
        } else if (roll < 53) {
          auto pair = recall(follows, rng);
          if (pair.first.empty())
            continue;
          auto* u = c.mutable_unfollow();
          u->set_command_id(cid);
          u->set_user_id(pair.first);
          u->set_target_user_id(pair.second);
        } else if (roll < 73) {
          auto* l = c.mutable_like_shout();
          l->set_command_id(cid);
          l->set_user_id(who);
          l->set_shout_id(known.first);
        } else if (roll < 80) {
          auto pair = recall(likes, rng);
          if (pair.first.empty())
            continue;
          auto* u = c.mutable_unlike_shout();
          u->set_command_id(cid);
          u->set_user_id(pair.first);
          u->set_shout_id(pair.second);
        } else if (roll < 88) {
          auto* p = c.mutable_update_profile();
          p->set_command_id(cid);
          p->set_user_id(who);
          switch (rng() % 3) {
            case 0:
              p->set_display_name("Name " + cid);
              break;
            case 1:
              p->set_bio("bio of " + who + " at " + cid);
              break;
            default:
              p->set_avatar_hash("avatar" + std::to_string(rng() % 1000));
          }
        } else {
          auto* l = c.mutable_login();
          l->set_command_id(cid);
          l->set_user_id(who);
          l->set_password(roll < 94 ? "correct horse" : "wrong horse");
          l->set_client_ip("10.0.0." + std::to_string(rng() % 250));
          l->set_user_agent("agent/" + std::to_string(t));
        }
        ++stats.sent;
        auto r = n.send(c, 30s);
        if (r.has_result() || r.has_login()) {
          ++stats.applied;
          if (r.has_result() && !r.result().shout_id().empty())
            remember(shouts, r.result().shout_id(), who);
          if (c.has_follow())
            remember(follows, who, c.follow().target_user_id());
          if (c.has_like_shout())
            remember(likes, who, c.like_shout().shout_id());
        } else if (r.rejection().code() == v1::REJECTION_CODE_UNAVAILABLE
                   || r.rejection().code()
                        == v1::REJECTION_CODE_DEADLINE_EXCEEDED) {
          ++stats.unavailable;
        } else {
          ++stats.rejected;
        }
      }
    });
  for (auto& t : threads)
    t.join();
}

std::vector<std::string> register_users(test_node& n, int count,
                                        const std::string& prefix) {
  std::vector<std::string> ids;
  for (int i = 0; i < count; ++i)
    ids.push_back(prefix + std::to_string(i));
  std::vector<std::thread> threads;
  std::atomic<std::size_t> next{0};
  std::atomic<int> failed{0};
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&] {
      for (auto i = next++; i < ids.size(); i = next++) {
        auto r = n.send(register_user("reg-" + ids[i], ids[i], ids[i]), 30s);
        if (!r.has_result())
          ++failed;
      }
    });
  for (auto& t : threads)
    t.join();
  EXPECT_EQ(failed.load(), 0);
  return ids;
}

/// Waits until `generation` of every named projection has been swapped in
/// (the bookkeeping says live, the views point at it) and the generation it
/// replaced is gone (tables dropped).
::testing::AssertionResult await_swapped(const test_database& db,
                                         const std::vector<std::string>& names,
                                         int32_t generation) {
  auto done = [&] {
    for (auto& name : names)
      if (db.scalar<int64_t>("SELECT count(*) FROM projection_generations"
                             " WHERE projection = '"
                             + name + "' AND state = 'live' AND generation = "
                             + std::to_string(generation))
          != 1)
        return false;
    for (auto& name : names)
      for (auto& base : tables_of.at(name))
        if (db.scalar<int64_t>("SELECT count(*) FROM pg_tables"
                               " WHERE tablename = '"
                               + base + "_g" + std::to_string(generation - 1)
                               + "'")
            != 0)
          return false;
    return true;
  };
  if (eventually(done, 60s))
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "generation " << generation << " was not swapped in";
}

} // namespace

// Thousands of commands of every kind from many concurrent clients; once
// the read models have caught up, every row of every read model equals the
// pure replay of the log. Then every projection is rebuilt from zero while
// the node serves; the new generation's rows equal the old generation's,
// column for column; and the new generation keeps applying new commands.
// (On a fresh server the xid counter crosses 10,000 during this test: it
// is what found the reader's text-ordered transaction ids.)
TEST(projection_consistency, concurrent_workload_and_rebuild_from_zero) {
  test_database db;
  test_node n{db.url(), [](node::node_config& c) { with_read_side(c); }};
  auto started = std::chrono::steady_clock::now();
  auto users = register_users(n, 200, "u");
  workload_stats stats;
  constexpr int commands = 10000;
  run_workload(n, users, 16, commands, 1, stats, "w");
  auto secs
    = std::chrono::duration<double>(std::chrono::steady_clock::now() - started)
        .count();
  std::cout << "[ workload ] " << stats.sent << " commands in " << secs
            << " s: " << stats.applied << " applied, " << stats.rejected
            << " rejected, " << stats.unavailable << " unavailable; "
            << db.scalar<int64_t>("SELECT count(*) FROM events") << " events\n";
  // Unavailable or rejected commands are fine: the expected read models
  // come from the events that were committed, whatever the replies said.
  EXPECT_GT(db.scalar<int64_t>("SELECT count(*) FROM events"), commands / 2);
  for (auto* type :
       {"UserRegistered", "ProfileUpdated", "UserFollowed", "UserUnfollowed",
        "ShoutPosted", "ShoutDeleted", "ShoutLiked", "ShoutUnliked",
        "UserLoggedIn", "LoginFailed"})
    EXPECT_GT(db.scalar<int64_t>(
                std::string{"SELECT count(*) FROM events WHERE event_type = '"}
                + type + "'"),
              0)
      << "the workload produced no " << type;

  ASSERT_TRUE(await_read_models(n, db));
  auto want = expected_rows(replay(db, 10000));
  expect_read_models_equal(want, actual_rows(db, ""));
  EXPECT_EQ(continuity_violations(n), 0);
  EXPECT_EQ(db.scalar<int64_t>("SELECT count(*) FROM projection_dead_letters"),
            0);

  // Rebuild every projection from zero; compare with the old generation.
  std::map<std::string, std::map<std::string, rows>> before;
  for (auto& [name, bases] : tables_of) {
    ASSERT_EQ(live_generation(db, name), 1);
    before[name] = generation_rows(db, bases, 1);
  }
  for (auto& [name, bases] : tables_of)
    EXPECT_EQ(rebuild(n, name), 2) << name;
  ASSERT_TRUE(await_swapped(db, {"users", "shouts", "timelines"}, 2));
  for (auto& [name, bases] : tables_of) {
    EXPECT_EQ(live_generation(db, name), 2);
    auto after = generation_rows(db, bases, 2);
    for (auto& base : bases)
      EXPECT_TRUE(
        same_rows(base + "_g2 vs _g1", before[name][base], after[base]));
  }

  // The rebuilt generation is live: it applies what comes next.
  workload_stats more;
  run_workload(n, users, 8, 500, 99, more, "after");
  ASSERT_TRUE(await_read_models(n, db));
  expect_read_models_equal(expected_rows(replay(db, 10000)),
                           actual_rows(db, ""));
  EXPECT_EQ(continuity_violations(n), 0);
}

namespace {

/// Commands to a test node that must succeed, with fresh command ids.
struct scenario_commands {
  test_node& n;
  int next = 0;

  std::string id() {
    return "k" + std::to_string(++next);
  }
  v1::CommandResult ok(const v1::UserCommand& c) {
    auto r = n.send(c);
    EXPECT_TRUE(r.has_result()) << c.DebugString() << r.DebugString();
    return r.has_result() ? r.result() : v1::CommandResult{};
  }
  std::string post(const std::string& who, const std::string& reply_to = "") {
    auto c = post_shout(id(), who, "from " + who);
    c.mutable_post_shout()->set_reply_to_shout_id(reply_to);
    return ok(c).shout_id();
  }
  void follows(const std::string& who, const std::string& target) {
    ok(follow(id(), who, target));
  }
  void unfollows(const std::string& who, const std::string& target) {
    v1::UserCommand c;
    auto* u = c.mutable_unfollow();
    u->set_command_id(id());
    u->set_user_id(who);
    u->set_target_user_id(target);
    ok(c);
  }
  void deletes(const std::string& who, const std::string& shout) {
    v1::UserCommand c;
    auto* d = c.mutable_delete_shout();
    d->set_command_id(id());
    d->set_user_id(who);
    d->set_shout_id(shout);
    ok(c);
  }
};

/// Authors on both sides of the celebrity threshold (3): bob (1 follower),
/// carol (2, then 1), alice (6), and xavier, who crosses it up and down
/// between posts; followers follow and unfollow along the way; shouts,
/// replies and deletions on every side. Then every user's GetTimeline (all
/// pages) equals pure fan-out.
void celebrity_scenario(int64_t cap, bool compare_tables) {
  test_database db;
  test_node n{db.url(), [cap](node::node_config& c) {
                with_read_side(c);
                c.celebrity_threshold = 3;
                c.timeline_cap = cap;
              }};
  std::vector<std::string> users = {"alice", "bob", "carol", "xavier"};
  for (int i = 1; i <= 7; ++i)
    users.push_back("f" + std::to_string(i));
  scenario_commands cmd{n};
  for (auto& u : users)
    cmd.ok(register_user(cmd.id(), u, u));

  cmd.follows("f1", "bob");
  cmd.follows("f2", "carol");
  cmd.follows("f3", "carol");
  for (auto* f : {"f1", "f2", "f3", "f4", "f5", "f6"})
    cmd.follows(f, "alice");
  cmd.follows("f1", "xavier");
  cmd.follows("f2", "xavier");
  auto x1 = cmd.post("xavier"); // 2 followers: fanned out
  auto x2 = cmd.post("xavier");
  auto a1 = cmd.post("alice"); // 6 followers: merged at read time
  auto a2 = cmd.post("alice");
  cmd.post("bob");
  auto c1 = cmd.post("carol");
  cmd.post("carol");
  cmd.follows("f3", "xavier"); // 3: xavier is a celebrity now
  auto x3 = cmd.post("xavier");
  cmd.follows("f4", "xavier");
  cmd.unfollows("f1", "xavier");
  cmd.unfollows("f2", "xavier"); // 2: below the threshold again
  auto x4 = cmd.post("xavier");
  cmd.deletes("xavier", x2);
  cmd.deletes("alice", a1);
  cmd.follows("f5", "xavier"); // 3 again
  cmd.post("xavier");
  cmd.unfollows("f6", "alice");
  cmd.follows("f7", "alice");
  cmd.post("f1", x3);
  cmd.post("bob", a2);
  cmd.post("f4", x4);
  for (int i = 1; i <= 7; ++i)
    cmd.post("f" + std::to_string(i));
  for (int i = 0; i < 6; ++i)
    cmd.post("alice");
  cmd.follows("f1", "xavier");
  cmd.post("carol", c1);
  cmd.unfollows("f3", "carol");
  for (int i = 0; i < 3; ++i)
    cmd.post("bob");
  cmd.deletes("carol", c1);
  cmd.post("f2");

  ASSERT_TRUE(await_read_models(n, db));
  auto m = replay(db, 3);
  // The scenario does exercise both sides of the threshold.
  int fanned = 0, merged = 0;
  for (auto& [k, f] : m.fanned_out)
    (f ? fanned : merged) += 1;
  EXPECT_GT(fanned, 0);
  EXPECT_GT(merged, 0);
  std::size_t longest = 0;
  for (auto& u : users) {
    auto want = m.timeline(u, cap);
    longest = std::max(longest, m.timeline(u, 1000000).size());
    EXPECT_EQ(timeline_of(n, u, 4), want) << "timeline of " << u;
  }
  if (cap < 800) {
    EXPECT_GT(static_cast<int64_t>(longest), cap)
      << "no timeline is long enough to be capped";
  }
  if (compare_tables)
    expect_read_models_equal(expected_rows(m), actual_rows(db, ""));

  // A rebuild applies the whole log as one batch: posts run together while
  // the follows, unfollows and deletions of their authors (crossing the
  // threshold both ways) must still come between them.
  ASSERT_EQ(rebuild(n, "timelines"), 2);
  ASSERT_TRUE(await_swapped(db, {"timelines"}, 2));
  for (auto& u : users)
    EXPECT_EQ(timeline_of(n, u, 4), m.timeline(u, cap))
      << "timeline of " << u << " after the rebuild";
  if (compare_tables)
    expect_read_models_equal(expected_rows(m), actual_rows(db, ""));
}

} // namespace

TEST(projection_consistency, timelines_equal_pure_fan_out_across_threshold) {
  celebrity_scenario(800, true);
}

TEST(projection_consistency, timelines_equal_pure_fan_out_under_the_cap) {
  celebrity_scenario(10, false);
}

// A timelines rebuild while commands keep coming: the build replays while
// events are appended, fills its homes where it is held, and the
// generation swapped in applies the rest live. Once everything is applied
// it equals a pure replay of the log (G3).
TEST(projection_consistency, timelines_rebuilt_under_writes_equal_pure_replay) {
  test_database db;
  test_node n{db.url(), [](node::node_config& c) { with_read_side(c); }};
  auto users = register_users(n, 60, "r");
  workload_stats stats;
  run_workload(n, users, 8, 1500, 5, stats, "before");
  ASSERT_TRUE(await_read_models(n, db));

  std::atomic<bool> stop{false};
  std::atomic<int> rounds{0};
  std::thread writer([&] {
    for (uint32_t round = 0; !stop; ++round) {
      run_workload(n, users, 4, 100, 100 + round, stats,
                   "during" + std::to_string(round));
      ++rounds;
    }
  });
  struct join_on_exit {
    std::atomic<bool>& stop;
    std::thread& t;
    ~join_on_exit() {
      stop = true;
      if (t.joinable())
        t.join();
    }
  } joined{stop, writer};

  auto events = [&] {
    return db.scalar<int64_t>("SELECT count(*) FROM events");
  };
  ASSERT_TRUE(eventually([&] { return rounds >= 1; }));
  auto at_request = events();
  EXPECT_EQ(rebuild(n, "timelines"), 2);
  ASSERT_TRUE(await_swapped(db, {"timelines"}, 2));
  // Writes went on through the build, and go on after its swap.
  EXPECT_GT(events(), at_request);
  int at_swap = rounds;
  ASSERT_TRUE(eventually([&] { return rounds >= at_swap + 2; }, 60s));
  stop = true;
  writer.join();
  ASSERT_TRUE(await_read_models(n, db));
  expect_read_models_equal(expected_rows(replay(db, 10000)),
                           actual_rows(db, ""));
  EXPECT_EQ(continuity_violations(n), 0);
}

// A rebuild leaves rm_home to its end and derives it from the follow graph
// and the authors' shouts with their positions (timelines_projection,
// completion_sql). The follow backfill is what that derivation must get
// right: the newest `cap` shouts at the follow, counting deletions made
// before it and not those made after. Live application is the reference:
// the rebuilt generation's rows equal the live one's.
TEST(projection_consistency, rebuilt_homes_equal_live_across_the_backfill) {
  test_database db;
  test_node n{db.url(), [](node::node_config& c) {
                with_read_side(c);
                c.timeline_cap = 3;
              }};
  scenario_commands cmd{n};
  for (auto* u : {"x", "f", "g", "h"})
    cmd.ok(register_user(cmd.id(), u, u));
  cmd.follows("h", "x"); // every post fans out to h, past the cap
  std::vector<std::string> s{""};
  for (int i = 1; i <= 5; ++i)
    s.push_back(cmd.post("x"));
  cmd.deletes("x", s[5]);     // before f's follow: the window reaches s2
  cmd.follows("f", "x");      // backfill s4, s3, s2
  cmd.deletes("x", s[3]);     // after it: leaves f's home, nothing refills
  s.push_back(cmd.post("x")); // s6 fans out to f
  cmd.unfollows("f", "x");
  s.push_back(cmd.post("x")); // s7 reaches h only
  cmd.follows("f", "x");      // backfill s7, s6, s4
  cmd.deletes("x", s[4]);
  cmd.follows("g", "x"); // backfill s7, s6, s2
  ASSERT_TRUE(await_read_models(n, db));

  auto home = [&](const std::string& owner) {
    std::vector<std::string> out;
    pqxx::connection conn{db.url()};
    pqxx::read_transaction tx{conn};
    for (const auto& row :
         tx.exec_params("SELECT shout_id FROM rm_home_g1 WHERE owner_id = $1"
                        " ORDER BY shout_id DESC",
                        owner))
      out.push_back(row[0].as<std::string>());
    return out;
  };
  using list = std::vector<std::string>;
  // The scenario is what it says, live.
  ASSERT_EQ(home("f"), (list{s[7], s[6]}));
  ASSERT_EQ(home("g"), (list{s[7], s[6], s[2]}));
  ASSERT_EQ(home("h"), (list{s[7], s[6], s[2], s[1]}));
  ASSERT_EQ(home("x"), (list{s[7], s[6], s[2], s[1]}));

  const auto& bases = tables_of.at("timelines");
  auto live = generation_rows(db, bases, 1);
  ASSERT_EQ(rebuild(n, "timelines"), 2);
  ASSERT_TRUE(await_swapped(db, {"timelines"}, 2));
  auto rebuilt = generation_rows(db, bases, 2);
  for (auto& base : bases)
    EXPECT_TRUE(same_rows(base + " g2 vs g1", live[base], rebuilt[base]));
}

// A point-in-time build up to position P holds exactly what the events up
// to P imply, beside the live generation, which is neither swapped nor
// changed.
TEST(projection_consistency, point_in_time_build_reflects_events_up_to_p) {
  test_database db;
  test_node n{db.url(), [](node::node_config& c) { with_read_side(c); }};
  auto users = register_users(n, 40, "p");
  workload_stats stats;
  run_workload(n, users, 8, 1500, 7, stats, "p");
  ASSERT_TRUE(await_read_models(n, db));

  auto head = db.scalar<int64_t>("SELECT max(global_position) FROM events");
  auto p = head / 2;
  auto at_p = replay(db, 10000, p);
  auto full = replay(db, 10000);
  ASSERT_LT(at_p.shouts.size(), full.shouts.size());
  ASSERT_LT(at_p.logins.size(), full.logins.size());

  std::map<std::string, std::map<std::string, rows>> live_before;
  for (auto& [name, bases] : tables_of)
    live_before[name] = generation_rows(db, bases, 1);
  for (auto& [name, bases] : tables_of)
    EXPECT_EQ(rebuild(n, name, p), 2) << name;
  ASSERT_TRUE(eventually(
    [&] {
      return db.scalar<int64_t>("SELECT count(*) FROM projection_generations"
                                " WHERE generation = 2 AND state = 'stopped'")
             == 3;
    },
    60s))
    << "the point-in-time builds did not finish";

  auto want = expected_rows(at_p);
  auto got = actual_rows(db, "_g2");
  expect_read_models_equal(want, got);
  EXPECT_EQ(db.scalar<int64_t>("SELECT count(*) FROM projection_generations"
                               " WHERE until_position = "
                               + std::to_string(p)),
            3);

  // Complete for inspection: every index a live generation has.
  for (auto& [name, bases] : tables_of)
    EXPECT_TRUE(same_rows(name + " indexes, g2 vs g1",
                          index_definitions(db, bases, 1),
                          index_definitions(db, bases, 2)));

  // The live generation: still generation 1, unchanged, still the views.
  for (auto& [name, bases] : tables_of) {
    EXPECT_EQ(live_generation(db, name), 1) << name;
    auto now = generation_rows(db, bases, 1);
    for (auto& base : bases)
      EXPECT_TRUE(same_rows(base + "_g1", live_before[name][base], now[base]));
  }
  expect_read_models_equal(expected_rows(full), actual_rows(db, ""));
  auto status = projection_status(n);
  for (auto& s : status.projections()) {
    EXPECT_EQ(s.generation(), 1) << s.projection();
    EXPECT_EQ(s.state(), "live") << s.projection();
  }
}

// Once a rebuilt generation has been swapped in, the AdminService reports it
// as the live one (operators and scripts wait for exactly that).
TEST(projection_consistency, swapped_in_generation_is_reported_live) {
  test_database db;
  test_node n{db.url(), [](node::node_config& c) { with_read_side(c); }};
  auto users = register_users(n, 5, "s");
  for (auto& u : users)
    ASSERT_TRUE(n.send(post_shout("post-" + u, u, "hi")).has_result());
  ASSERT_TRUE(await_read_models(n, db));
  ASSERT_EQ(rebuild(n, "users"), 2);
  ASSERT_TRUE(await_swapped(db, {"users"}, 2));
  auto status = projection_status(n);
  int users_entries = 0;
  for (auto& p : status.projections()) {
    if (p.projection() != "users")
      continue;
    ++users_entries;
    EXPECT_EQ(p.generation(), 2);
    EXPECT_EQ(p.state(), "live")
      << "generation 2 is live (views swapped, generation 1 dropped) but "
         "the status calls it '"
      << p.state() << "'";
  }
  EXPECT_EQ(users_entries, 1);
}

// A rebuild applies its rows without the indexes only queries read (a
// B-tree or GIN insert per row version) and builds them once it has caught
// up, before it is promoted: the generation swapped in has every index the
// one it replaces had, and the planner's statistics of its rows.
TEST(projection_consistency,
     swapped_in_generation_has_every_index_and_statistics) {
  test_database db;
  test_node n{db.url(), [](node::node_config& c) { with_read_side(c); }};
  auto users = register_users(n, 30, "x");
  workload_stats stats;
  run_workload(n, users, 8, 600, 11, stats, "x");
  ASSERT_TRUE(await_read_models(n, db));
  std::map<std::string, rows> before;
  for (auto& [name, bases] : tables_of) {
    before[name] = index_definitions(db, bases, 1);
    ASSERT_FALSE(before[name].empty()) << name;
  }
  for (auto& [name, bases] : tables_of)
    EXPECT_EQ(rebuild(n, name), 2) << name;
  ASSERT_TRUE(await_swapped(db, {"users", "shouts", "timelines"}, 2));
  for (auto& [name, bases] : tables_of) {
    EXPECT_TRUE(same_rows(name + " indexes, g2 vs g1", before[name],
                          index_definitions(db, bases, 2)));
    for (auto& base : bases) {
      auto table = base + "_g2";
      if (db.scalar<int64_t>("SELECT count(*) FROM " + table) == 0)
        continue;
      EXPECT_GT(
        db.scalar<int64_t>("SELECT count(*) FROM pg_stats WHERE tablename = '"
                           + table + "'"),
        0)
        << table << " was swapped in without statistics";
    }
  }
}

// Once a rebuild is swapped in, this node's live partitions run the new
// generation at once — not when their next batch finds the retired one
// fenced: on an idle node that batch never comes, and the first write after
// a rebuild would wait for the fence and a restart.
TEST(projection_consistency,
     live_partitions_move_to_the_swapped_in_generation_at_once) {
  test_database db;
  test_node n{db.url(), [](node::node_config& c) { with_read_side(c); }};
  register_users(n, 3, "m");
  ASSERT_TRUE(await_read_models(n, db));
  ASSERT_EQ(rebuild(n, "users"), 2);
  ASSERT_TRUE(await_swapped(db, {"users"}, 2));
  // No event is written from here on.
  std::string seen;
  auto live_on_new = [&] {
    caf::scoped_actor self{n.get().system()};
    std::vector<projection::reader_status> status;
    self->request(n.get().projections(), 5s, status_atom::value)
      .receive([&](std::vector<projection::reader_status>& s) { status = s; },
               [&](caf::error&) {});
    seen.clear();
    bool any = false, all_new = true;
    for (auto& s : status)
      if (s.projection == "users" && s.state == "live") {
        seen += " g" + std::to_string(s.generation);
        any = true;
        all_new = all_new && s.generation == 2;
      }
    return any && all_new;
  };
  EXPECT_TRUE(wait_until(live_on_new, 5s))
    << "the live users partitions still run:" << seen;
}
