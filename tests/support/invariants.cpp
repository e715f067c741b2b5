#include "tests/support/invariants.hpp"

#include <grpcpp/grpcpp.h>
#include <pqxx/pqxx>

#include <algorithm>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "shoutflow/v1/admin.grpc.pb.h"
#include "shoutflow/v1/entity.pb.h"
#include "shoutflow/v1/events.pb.h"
#include "shoutflow/v1/queries.grpc.pb.h"
#include "tests/support/commands.hpp"

namespace shoutflow::testing {

namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using steady = std::chrono::steady_clock;

/// At most this many violations of one check are listed one by one.
constexpr std::size_t max_listed = 25;

/// Collects the violations of one check, listing the first `max_listed`
/// and counting the rest.
class sink {
public:
  void add(std::string what) {
    if (list_.size() < max_listed)
      list_.push_back(std::move(what));
    else
      ++more_;
  }

  violations take() {
    if (more_ > 0)
      list_.push_back("... and " + std::to_string(more_) + " more");
    return std::move(list_);
  }

private:
  violations list_;
  std::size_t more_ = 0;
};

std::string join(const std::vector<int64_t>& xs, std::size_t limit = 10) {
  std::string out;
  for (std::size_t i = 0; i < xs.size() && i < limit; ++i)
    out += (i == 0 ? "" : ", ") + std::to_string(xs[i]);
  if (xs.size() > limit)
    out += ", ... (" + std::to_string(xs.size()) + " in all)";
  return out;
}

std::string status_text(const grpc::Status& s) {
  return status_code_name(s.error_code()) + " " + s.error_message();
}

std::unique_ptr<grpc::ClientContext> context_within(milliseconds timeout) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + timeout);
  return ctx;
}

/// The event types a command of `method` may append.
std::vector<std::string> event_types_of(const std::string& method) {
  static const std::map<std::string, std::vector<std::string>> types = {
    {"RegisterUser", {"UserRegistered"}},
    {"UpdateProfile", {"ProfileUpdated"}},
    {"Follow", {"UserFollowed"}},
    {"Unfollow", {"UserUnfollowed"}},
    {"PostShout", {"ShoutPosted"}},
    {"DeleteShout", {"ShoutDeleted"}},
    {"LikeShout", {"ShoutLiked"}},
    {"UnlikeShout", {"ShoutUnliked"}},
    {"Login", {"UserLoggedIn", "LoginFailed"}},
  };
  auto it = types.find(method);
  return it == types.end() ? std::vector<std::string>{} : it->second;
}

/// Commands that may be accepted without appending (repeats, unchanged
/// profiles): recorded in noop_commands instead.
bool may_be_noop(const std::string& method) {
  return method == "UpdateProfile" || method == "Follow" || method == "Unfollow"
         || method == "LikeShout" || method == "UnlikeShout";
}

struct event_row {
  int64_t position = 0;
  std::string stream;
  int64_t seq_nr = 0;
  std::string type;
  std::string payload;
  std::optional<std::string> command_id;
  std::string node;
  std::optional<int64_t> lease_epoch;
};

struct noop_row {
  std::string stream;
  std::string command_id;
  std::string reply;
};

std::string describe(const event_row& e) {
  return e.stream + " seq " + std::to_string(e.seq_nr) + " at "
         + std::to_string(e.position) + " (" + e.type + ")";
}

std::string describe(const command_record& r) {
  return r.method + " " + r.command_id + " of " + r.user_id;
}

bool same_result(const v1::CommandResult& a, const v1::CommandResult& b) {
  return a.seq_nr() == b.seq_nr() && a.global_position() == b.global_position()
         && a.shout_id() == b.shout_id();
}

std::string result_text(const v1::CommandResult& r) {
  return "seq " + std::to_string(r.seq_nr()) + ", position "
         + std::to_string(r.global_position())
         + (r.shout_id().empty() ? "" : ", shout " + r.shout_id())
         + (r.duplicate() ? ", duplicate" : "");
}

/// Runs `f(i)` for i in [0, n) on `threads` threads.
template <class F>
void parallel_for(std::size_t n, int threads, F f) {
  std::atomic<std::size_t> next{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      for (auto i = next++; i < n; i = next++)
        f(i, t);
    });
  for (auto& p : pool)
    p.join();
}

} // namespace

uint64_t fnv1a64(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (auto c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  return h;
}

// -- G1, G2 -------------------------------------------------------------------

violations check_journal(const std::string& db_url,
                         const std::vector<command_record>& records,
                         const journal_check_options& options) {
  sink g1;
  sink g2;
  std::vector<event_row> events;
  std::vector<noop_row> noops;
  int64_t shards = 256;
  // (shard, epoch) -> owner node of the shard lease of that epoch.
  std::map<std::pair<int64_t, int64_t>, int64_t> lease_owners;
  bool have_leases = false;
  try {
    pqxx::connection conn{db_url};
    pqxx::read_transaction tx{conn};
    for (const auto& row :
         tx.exec("SELECT global_position, persistence_id, seq_nr, event_type,"
                 "       payload, command_id, coalesce(node_id, ''),"
                 "       lease_epoch"
                 "  FROM events ORDER BY persistence_id, seq_nr,"
                 "           global_position")) {
      event_row e;
      e.position = row[0].as<int64_t>();
      e.stream = row[1].as<std::string>();
      e.seq_nr = row[2].as<int64_t>();
      e.type = row[3].as<std::string>();
      e.payload = pqxx::binarystring{row[4]}.str();
      if (!row[5].is_null())
        e.command_id = row[5].as<std::string>();
      e.node = row[6].as<std::string>();
      if (!row[7].is_null())
        e.lease_epoch = row[7].as<int64_t>();
      events.push_back(std::move(e));
    }
    for (const auto& row : tx.exec("SELECT persistence_id, command_id, reply"
                                   "  FROM noop_commands"))
      noops.push_back({row[0].as<std::string>(), row[1].as<std::string>(),
                       pqxx::binarystring{row[2]}.str()});
    auto setting = tx.exec("SELECT value FROM cluster_settings"
                           " WHERE name = 'shards'");
    if (!setting.empty())
      shards = std::stoll(setting[0][0].as<std::string>());
    for (const auto& row :
         tx.exec("SELECT part, epoch, owner_node FROM lease_history"
                 " WHERE resource = 'shard'")) {
      lease_owners[{row[0].as<int64_t>(), row[1].as<int64_t>()}]
        = row[2].as<int64_t>();
      have_leases = true;
    }
  } catch (const std::exception& e) {
    return {std::string{"journal: cannot read the database: "} + e.what()};
  }

  // -- G2: one contiguous history per stream, written under held leases.
  if (options.require_lease_epoch) {
    std::size_t missing = 0;
    const event_row* first = nullptr;
    for (auto& e : events)
      if (!e.lease_epoch && missing++ == 0)
        first = &e;
    if (missing > 0)
      g2.add("G2: " + std::to_string(missing)
             + " events carry no lease_epoch, e.g. " + describe(*first));
  }
  for (std::size_t i = 0; i < events.size();) {
    auto& stream = events[i].stream;
    std::size_t end = i;
    while (end < events.size() && events[end].stream == stream)
      ++end;
    int64_t expected = 1;
    bool reported_seq = false;
    bool reported_order = false;
    bool reported_epoch = false;
    std::optional<int64_t> last_epoch;
    std::map<int64_t, std::set<std::string>> writers; // epoch -> nodes
    std::size_t ungranted = 0;
    std::size_t foreign = 0;
    std::string first_ungranted;
    std::string first_foreign;
    auto user = stream.rfind("user|", 0) == 0 ? stream.substr(5) : stream;
    auto shard = static_cast<int64_t>(
      fnv1a64(user) % static_cast<uint64_t>(std::max<int64_t>(shards, 1)));
    for (auto k = i; k < end; ++k) {
      auto& e = events[k];
      if (e.seq_nr != expected && !reported_seq) {
        g2.add(
          "G2: " + stream + ": seq_nr " + std::to_string(e.seq_nr) + " where "
          + std::to_string(expected) + " belongs ("
          + (e.seq_nr < expected ? "a second event with that seq_nr" : "a gap")
          + "; " + std::to_string(end - i) + " events in the stream)");
        reported_seq = true;
      }
      expected = e.seq_nr + 1;
      if (k > i && e.position <= events[k - 1].position && !reported_order) {
        g2.add("G2: " + stream + ": seq_nr " + std::to_string(e.seq_nr)
               + " is at position " + std::to_string(e.position)
               + ", not after seq_nr " + std::to_string(events[k - 1].seq_nr)
               + " at " + std::to_string(events[k - 1].position));
        reported_order = true;
      }
      if (!e.lease_epoch)
        continue;
      auto epoch = *e.lease_epoch;
      writers[epoch].insert(e.node);
      if (last_epoch && epoch < *last_epoch && !reported_epoch) {
        g2.add("G2: " + describe(e) + " has lease_epoch "
               + std::to_string(epoch) + " after " + std::to_string(*last_epoch)
               + ": the epoch went back");
        reported_epoch = true;
      }
      last_epoch = std::max(epoch, last_epoch.value_or(epoch));
      auto held = lease_owners.find({shard, epoch});
      if (held == lease_owners.end()) {
        if (ungranted++ == 0)
          first_ungranted = describe(e) + " written by '" + e.node
                            + "' under epoch " + std::to_string(epoch)
                            + " of shard " + std::to_string(shard);
      } else if (e.node != "node-" + std::to_string(held->second)) {
        if (foreign++ == 0)
          first_foreign = describe(e) + " written by '" + e.node
                          + "' under epoch " + std::to_string(epoch)
                          + " of shard " + std::to_string(shard)
                          + ", which lease_history gave to node-"
                          + std::to_string(held->second);
      }
    }
    // One line per stream and kind: a wrong lease taints whole runs.
    if (ungranted > 0)
      g2.add("G2: " + first_ungranted + ", which lease_history never granted"
             + (have_leases ? "" : " (lease_history is empty)") + " ("
             + std::to_string(ungranted) + " such events in " + stream + ")");
    if (foreign > 0)
      g2.add("G2: " + first_foreign + " (" + std::to_string(foreign)
             + " such events in " + stream + ")");
    for (auto& [epoch, nodes] : writers)
      if (nodes.size() > 1) {
        std::string names;
        for (auto& n : nodes)
          names += (names.empty() ? "" : ", ") + n;
        g2.add("G2: " + stream + ": two writers under epoch "
               + std::to_string(epoch) + ": " + names);
      }
    i = end;
  }

  // -- G1: every command as its outcome says.
  std::map<std::string, std::vector<const event_row*>> by_command;
  std::vector<const event_row*> without_command;
  for (auto& e : events) {
    if (e.command_id)
      by_command[*e.command_id].push_back(&e);
    else
      without_command.push_back(&e);
  }
  std::map<std::string, std::vector<const noop_row*>> noop_by_command;
  for (auto& n : noops)
    noop_by_command[n.command_id].push_back(&n);
  std::set<std::string> sent;
  for (auto& r : records) {
    sent.insert(r.command_id);
    auto evs_it = by_command.find(r.command_id);
    std::vector<const event_row*> evs;
    if (evs_it != by_command.end())
      evs = evs_it->second;
    std::vector<const noop_row*> nops;
    if (auto it = noop_by_command.find(r.command_id);
        it != noop_by_command.end())
      nops = it->second;
    auto stream = "user|" + r.user_id;
    if (evs.size() > 1) {
      std::string where;
      for (auto* e : evs)
        where += (where.empty() ? "" : "; ") + describe(*e);
      g1.add("G1: " + describe(r) + " appended " + std::to_string(evs.size())
             + " events (a command appends one): " + where);
    }
    for (auto* e : evs)
      if (e->stream != stream)
        g1.add("G1: " + describe(r) + ": its event is in " + e->stream
               + ", not " + stream);
    for (auto* n : nops)
      if (n->stream != stream)
        g1.add("G1: " + describe(r) + ": its no-op is recorded for " + n->stream
               + ", not " + stream);
    if (!evs.empty() && !nops.empty())
      g1.add("G1: " + describe(r)
             + " is in the journal both as an event and as a no-op");
    switch (r.outcome) {
      case command_outcome::acknowledged: {
        if (!r.result.user_id().empty() && r.result.user_id() != r.user_id)
          g1.add("G1: " + describe(r) + " was acknowledged for user "
                 + r.result.user_id());
        if (evs.empty() && nops.empty()) {
          g1.add("G1: acknowledged " + describe(r) + " ("
                 + result_text(r.result) + ") is not in the journal");
          break;
        }
        if (!evs.empty()) {
          auto& last = *evs.back();
          if (last.seq_nr != r.result.seq_nr()
              || last.position != r.result.global_position())
            g1.add("G1: acknowledged " + describe(r) + " ("
                   + result_text(r.result) + ") is stored as "
                   + describe(last));
          auto allowed = event_types_of(r.method);
          if (std::find(allowed.begin(), allowed.end(), last.type)
              == allowed.end())
            g1.add("G1: " + describe(r) + " appended a " + last.type);
          if (r.method == "Login"
              && (last.type == "UserLoggedIn") != r.login_success)
            g1.add("G1: " + describe(r) + " answered success = "
                   + (r.login_success ? "true" : "false") + " but appended "
                   + last.type);
          if (r.method == "PostShout") {
            v1::ShoutPosted posted;
            if (!posted.ParseFromString(last.payload))
              g1.add("G1: " + describe(r) + ": its ShoutPosted at "
                     + std::to_string(last.position) + " does not decode");
            else if (posted.shout_id() != r.result.shout_id())
              g1.add("G1: " + describe(r) + " was acknowledged with shout "
                     + r.result.shout_id() + ", the journal has "
                     + posted.shout_id());
          }
        } else {
          if (!may_be_noop(r.method))
            g1.add("G1: acknowledged " + describe(r)
                   + " appended nothing (only a no-op may)");
          v1::EntityReply reply;
          if (!reply.ParseFromString(nops.front()->reply)) {
            g1.add("G1: the no-op reply of " + describe(r)
                   + " does not decode");
            break;
          }
          auto stored = reply.has_login() ? reply.login().result()
                                          : reply.result();
          if (!same_result(stored, r.result))
            g1.add("G1: acknowledged no-op " + describe(r) + " ("
                   + result_text(r.result) + ") is recorded as "
                   + result_text(stored));
        }
        break;
      }
      case command_outcome::rejected:
        if (!evs.empty() || !nops.empty())
          g1.add("G1: " + describe(r) + " was rejected ("
                 + status_code_name(r.code) + " " + r.message
                 + ") but the journal holds it");
        break;
      case command_outcome::failed:
      case command_outcome::pending:
        break; // either way; resolve_in_doubt finds out
    }
  }
  for (auto& [command_id, evs] : by_command)
    if (sent.count(command_id) == 0)
      g1.add("G1: phantom: " + describe(*evs.front()) + " names command "
             + command_id + ", which no client sent");
  for (auto& [command_id, nops] : noop_by_command)
    if (sent.count(command_id) == 0)
      g1.add("G1: phantom no-op " + command_id + " for " + nops.front()->stream
             + ", which no client sent");
  for (auto* e : without_command)
    g1.add("G1: " + describe(*e) + " has no command_id");

  auto out = g1.take();
  for (auto& v : g2.take())
    out.push_back(std::move(v));
  return out;
}

// -- G4 -----------------------------------------------------------------------

violations check_resend(command_client& client,
                        const std::vector<command_record>& records,
                        uint64_t seed, int threads) {
  std::vector<const command_record*> acked;
  for (auto& r : records)
    if (r.outcome == command_outcome::acknowledged)
      acked.push_back(&r);
  std::mutex mtx;
  sink out;
  auto add = [&](std::string what) {
    std::lock_guard<std::mutex> guard{mtx};
    out.add(std::move(what));
  };
  std::vector<std::mt19937_64> rngs;
  for (int t = 0; t < threads; ++t)
    rngs.emplace_back(seed * 31 + static_cast<uint64_t>(t));
  parallel_for(acked.size(), threads, [&](std::size_t i, int t) {
    auto& first = *acked[i];
    auto again = client.execute(first, rngs[static_cast<std::size_t>(t)],
                                false);
    if (again.outcome != command_outcome::acknowledged) {
      add("G4: resending acknowledged " + describe(first) + " gave "
          + to_string(again.outcome) + " " + status_code_name(again.code) + " "
          + again.message);
      return;
    }
    if (!again.result.duplicate())
      add("G4: resending acknowledged " + describe(first)
          + " was not answered as a duplicate: " + result_text(again.result)
          + " (first: " + result_text(first.result) + ")");
    if (!same_result(again.result, first.result))
      add("G4: resending " + describe(first) + " answered "
          + result_text(again.result) + ", the first answer was "
          + result_text(first.result));
    if (first.method == "Login" && again.login_success != first.login_success)
      add("G4: resending " + describe(first) + " changed the login's success");
  });
  return out.take();
}

violations resolve_in_doubt(command_client& client,
                            std::vector<command_record>& records,
                            uint64_t seed) {
  sink out;
  std::mt19937_64 rng{seed * 131};
  for (auto& r : records) {
    if (r.outcome != command_outcome::failed)
      continue;
    auto again = client.execute(r, rng, false);
    if (again.outcome == command_outcome::failed) {
      out.add("G4: " + describe(r) + " still has no outcome after the load: "
              + status_code_name(again.code) + " " + again.message);
      continue;
    }
    r = again;
  }
  return out.take();
}

violations unexpected_rejections(const std::vector<command_record>& records) {
  sink out;
  for (auto& r : records) {
    if (r.outcome != command_outcome::rejected)
      continue;
    switch (r.code) {
      case grpc::StatusCode::NOT_FOUND:
      case grpc::StatusCode::ALREADY_EXISTS:
      case grpc::StatusCode::FAILED_PRECONDITION:
      case grpc::StatusCode::PERMISSION_DENIED:
        continue;
      default:
        out.add("G5: " + describe(r) + " was refused with "
                + status_code_name(r.code) + " " + r.message);
    }
  }
  return out.take();
}

// -- G3 -----------------------------------------------------------------------

const std::vector<std::string>* tables_of_projection(const std::string& name) {
  static const std::map<std::string, std::vector<std::string>> tables = {
    {"users", {"rm_users", "rm_logins"}},
    {"shouts", {"rm_shouts"}},
    {"timelines",
     {"rm_followers", "rm_authors", "rm_author_shouts", "rm_home"}},
  };
  auto it = tables.find(name);
  return it == tables.end() ? nullptr : &it->second;
}

namespace {

/// A target from `source`, or empty.
std::string any_target(const target_source& source, std::mt19937_64& rng) {
  auto targets = source();
  if (targets.empty())
    return {};
  return targets[rng() % targets.size()];
}

/// Rows of `a` missing from `b` (whole rows as text, multiset difference).
std::pair<int64_t, std::vector<std::string>>
rows_missing(pqxx::transaction_base& tx, const std::string& a,
             const std::string& b) {
  auto diff = "(SELECT t::text FROM " + a + " t EXCEPT ALL SELECT t::text FROM "
              + b + " t)";
  auto count = tx.exec1("SELECT count(*) FROM " + diff + " d")[0].as<int64_t>();
  std::vector<std::string> sample;
  if (count > 0)
    for (const auto& row : tx.exec("SELECT * FROM " + diff + " d LIMIT 3"))
      sample.push_back(row[0].as<std::string>());
  return {count, sample};
}

} // namespace

violations check_projections(const projection_check_options& options) {
  sink out;
  // Which node answers does not matter; a fixed seed keeps runs alike.
  std::mt19937_64 rng{42};
  auto deadline = steady::now() + options.timeout;
  auto head_of = [&] {
    pqxx::connection conn{options.db_url};
    pqxx::read_transaction tx{conn};
    auto r = tx.exec("SELECT global_position, substr(persistence_id, 6)"
                     "  FROM events ORDER BY global_position DESC LIMIT 1");
    if (r.empty())
      return std::pair<int64_t, std::string>{0, ""};
    return std::pair<int64_t, std::string>{r[0][0].as<int64_t>(),
                                           r[0][1].as<std::string>()};
  };
  std::pair<int64_t, std::string> head;
  try {
    head = head_of();
  } catch (const std::exception& e) {
    return {std::string{"G3: cannot read the journal: "} + e.what()};
  }
  if (head.first == 0)
    return {};

  // Caught up: a read that waits for every read model (GetTimeline reads
  // timelines, shouts and users) up to the head.
  grpc::Status last{grpc::StatusCode::UNAVAILABLE, "no query node"};
  bool caught_up = false;
  while (!caught_up && steady::now() < deadline) {
    auto target = any_target(options.query_targets, rng);
    if (!target.empty()) {
      auto stub = v1::QueryService::NewStub(channel_to(target));
      v1::GetTimelineRequest req;
      req.set_user_id(head.second);
      req.set_page_size(1);
      req.set_min_position(head.first);
      v1::TimelinePage page;
      auto ctx = context_within(seconds(10));
      last = stub->GetTimeline(ctx.get(), req, &page);
      caught_up = last.ok();
    }
    if (!caught_up)
      std::this_thread::sleep_for(milliseconds(100));
  }
  if (!caught_up)
    return {"G3: the read models did not reach the journal's head "
            + std::to_string(head.first) + " within "
            + std::to_string(options.timeout.count())
            + " ms: " + status_text(last)};

  std::vector<std::pair<std::string, int32_t>> live;
  try {
    pqxx::connection conn{options.db_url};
    pqxx::read_transaction tx{conn};
    for (const auto& row :
         tx.exec("SELECT projection, generation FROM projection_generations"
                 " WHERE state = 'live' ORDER BY projection"))
      live.emplace_back(row[0].as<std::string>(), row[1].as<int32_t>());
    for (const auto& row :
         tx.exec("SELECT projection, generation, key, global_position, error"
                 "  FROM projection_dead_letters ORDER BY id LIMIT 5"))
      out.add("G3: dead letter in " + row[0].as<std::string>() + " g"
              + row[1].as<std::string>() + ", key " + row[2].as<std::string>()
              + " at " + row[3].as<std::string>() + ": "
              + row[4].as<std::string>());
  } catch (const std::exception& e) {
    out.add(std::string{"G3: cannot read projection_generations: "} + e.what());
    return out.take();
  }
  if (live.empty())
    out.add("G3: no live projection generation");

  // Point-in-time builds up to the head, all at once.
  std::vector<std::pair<std::string, int32_t>> built; // name -> generation
  for (auto& [name, generation] : live) {
    if (tables_of_projection(name) == nullptr) {
      out.add("G3: live projection '" + name
              + "' is unknown to the checker: add its tables to "
                "tables_of_projection");
      continue;
    }
    bool started = false;
    while (!started && steady::now() < deadline) {
      auto target = any_target(options.admin_targets, rng);
      if (!target.empty()) {
        auto stub = v1::AdminService::NewStub(channel_to(target));
        v1::RebuildProjectionRequest req;
        req.set_projection(name);
        req.set_until_position(head.first);
        v1::RebuildProjectionResponse resp;
        auto ctx = context_within(seconds(30));
        last = stub->RebuildProjection(ctx.get(), req, &resp);
        if (last.ok()) {
          built.emplace_back(name, resp.generation());
          started = true;
          break;
        }
        if (!transport_failure(last))
          break;
      }
      std::this_thread::sleep_for(milliseconds(100));
    }
    if (!started)
      out.add("G3: RebuildProjection(" + name + ", until_position "
              + std::to_string(head.first) + ") failed: " + status_text(last));
  }
  for (auto& [name, generation] : built) {
    std::string state;
    for (;;) {
      try {
        pqxx::connection conn{options.db_url};
        pqxx::read_transaction tx{conn};
        auto r = tx.exec_params("SELECT state FROM projection_generations"
                                " WHERE projection = $1 AND generation = $2",
                                name, generation);
        state = r.empty() ? "(no row)" : r[0][0].as<std::string>();
      } catch (const std::exception& e) {
        state = std::string{"(unreadable: "} + e.what() + ")";
      }
      if (state == "stopped" || steady::now() > deadline)
        break;
      std::this_thread::sleep_for(milliseconds(50));
    }
    if (state != "stopped")
      out.add("G3: the point-in-time build of " + name + " (generation "
              + std::to_string(generation) + ") is '" + state
              + "', not 'stopped', after "
              + std::to_string(options.timeout.count()) + " ms");
  }

  // Live generation vs. the build, table by table, both ways.
  try {
    pqxx::connection conn{options.db_url};
    pqxx::read_transaction tx{conn};
    for (auto& [name, generation] : built) {
      auto live_it = std::find_if(live.begin(), live.end(),
                                  [&](auto& l) { return l.first == name; });
      auto live_suffix = "_g" + std::to_string(live_it->second);
      auto built_suffix = "_g" + std::to_string(generation);
      for (auto& base : *tables_of_projection(name)) {
        auto a = base + live_suffix;
        auto b = base + built_suffix;
        auto exists = tx.exec1("SELECT to_regclass(" + tx.quote(a)
                               + ") IS NOT NULL AND to_regclass(" + tx.quote(b)
                               + ") IS NOT NULL")[0]
                        .as<bool>();
        if (!exists) {
          out.add("G3: " + a + " or " + b + " does not exist");
          continue;
        }
        auto [extra, extra_rows] = rows_missing(tx, a, b);
        auto [missing, missing_rows] = rows_missing(tx, b, a);
        if (extra == 0 && missing == 0)
          continue;
        std::string what = "G3: " + a + " (live) differs from " + b
                           + " (rebuilt up to " + std::to_string(head.first)
                           + "): " + std::to_string(extra) + " rows only live, "
                           + std::to_string(missing) + " only rebuilt";
        for (auto& r : extra_rows)
          what += "\n    live only:    " + r;
        for (auto& r : missing_rows)
          what += "\n    rebuilt only: " + r;
        out.add(what);
      }
    }
  } catch (const std::exception& e) {
    out.add(std::string{"G3: comparing generations failed: "} + e.what());
  }
  try {
    auto after = head_of();
    if (after.first != head.first)
      out.add("G3: the journal grew from " + std::to_string(head.first) + " to "
              + std::to_string(after.first) + " while the load was stopped");
  } catch (const std::exception& e) {
    out.add(std::string{"G3: cannot read the journal: "} + e.what());
  }
  return out.take();
}

// -- Watch --------------------------------------------------------------------

violations check_watch_segments(const std::string& user_id,
                                const std::vector<watch_segment>& segments,
                                const std::vector<subject_event>& journal,
                                const std::vector<int64_t>& acknowledged,
                                bool single_segment) {
  sink out;
  auto w = "Watch(" + user_id + "): ";
  if (journal.empty())
    return {w + "the watched user has no events"};
  std::map<int64_t, int64_t> index_of_position;
  std::map<std::string, int64_t> index_of_command;
  for (std::size_t k = 0; k < journal.size(); ++k) {
    index_of_position[journal[k].position] = static_cast<int64_t>(k);
    index_of_command[journal[k].command_id] = static_cast<int64_t>(k);
  }
  // bio "" is the registration (no update sets it), "watch <id>" is the
  // update with that command_id.
  auto index_of_bio = [&](const std::string& bio) -> int64_t {
    if (bio.empty())
      return 0;
    const std::string prefix = "watch ";
    if (bio.rfind(prefix, 0) != 0)
      return -1;
    auto it = index_of_command.find(bio.substr(prefix.size()));
    return it == index_of_command.end() ? -1 : it->second;
  };
  auto last_index = static_cast<int64_t>(journal.size()) - 1;
  if (segments.empty())
    return {w + "no stream was opened"};
  if (single_segment && segments.size() != 1) {
    std::string ends;
    for (auto& s : segments)
      ends += "\n    " + s.target + ": " + s.end_status;
    out.add(w + "the stream ended and was reopened "
            + std::to_string(segments.size() - 1) + " times" + ends);
  }
  std::set<int64_t> delivered;
  for (std::size_t k = 0; k < segments.size(); ++k) {
    auto& s = segments[k];
    auto seg = w + "stream " + std::to_string(k) + " (" + s.target + "): ";
    if (single_segment && s.ended_early)
      out.add(
        seg + "ended before the test stopped it, after "
        + std::to_string(s.changes.size()) + " changes"
        + (s.changes.empty()
             ? std::string{}
             : " (last at " + std::to_string(s.changes.back().position) + ")")
        + ": " + s.end_status);
    if (!s.has_initial) {
      out.add(seg + "no initial document");
      continue;
    }
    if (s.initial_user_id != user_id)
      out.add(seg + "the initial document is of user '" + s.initial_user_id
              + "'");
    auto initial = index_of_bio(s.initial_bio);
    if (initial < 0)
      out.add(seg + "the initial document's bio '" + s.initial_bio
              + "' is no state the journal knows");
    int64_t previous_index = -1;
    int64_t previous_position = 0;
    for (std::size_t j = 0; j < s.changes.size(); ++j) {
      auto& c = s.changes[j];
      auto at = seg + "change " + std::to_string(j) + " at "
                + std::to_string(c.position) + ": ";
      if (!c.is_user || c.user_id != user_id) {
        out.add(at + "not a document of the watched user");
        continue;
      }
      if (c.position <= 0) {
        out.add(at + "no log position");
        continue;
      }
      if (c.position == previous_position) {
        out.add(at + "delivered twice");
        continue;
      }
      if (c.position < previous_position) {
        out.add(at + "after position " + std::to_string(previous_position)
                + ": out of order");
        continue;
      }
      previous_position = c.position;
      delivered.insert(c.position);
      auto it = index_of_position.find(c.position);
      if (it == index_of_position.end()) {
        out.add(at + "not a position of the watched user's events");
        continue;
      }
      auto index = it->second;
      auto from = j == 0 ? initial : previous_index;
      if (from >= 0 && index > from + 1) {
        std::vector<int64_t> missed;
        for (auto m = from + 1; m < index; ++m)
          missed.push_back(journal[static_cast<std::size_t>(m)].position);
        out.add(at + "positions " + join(missed) + " were never delivered");
      }
      auto document = index_of_bio(c.bio);
      if (document < index)
        out.add(at + "carries an older document (bio '" + c.bio + "')");
      previous_index = index;
    }
    bool last_segment = k + 1 == segments.size();
    if (last_segment && !s.ended_early) {
      auto covered = std::max(previous_index, initial);
      if (covered < last_index) {
        std::vector<int64_t> missed;
        for (auto m = covered + 1; m <= last_index; ++m)
          missed.push_back(journal[static_cast<std::size_t>(m)].position);
        out.add(seg + "stopped short: positions " + join(missed)
                + " were never delivered");
      }
    }
  }
  // (A stream that ended early is reported as such, not position by
  // position.)
  if (single_segment && segments.size() == 1 && segments[0].has_initial
      && !segments[0].ended_early) {
    auto initial = index_of_bio(segments[0].initial_bio);
    for (auto p : acknowledged) {
      auto it = index_of_position.find(p);
      if (it == index_of_position.end())
        out.add(w + "acknowledged position " + std::to_string(p)
                + " is not in the watched user's stream");
      else if (it->second > initial && delivered.count(p) == 0)
        out.add(w + "acknowledged position " + std::to_string(p)
                + " was never delivered");
    }
  }
  return out.take();
}

watch_probe::watch_probe(command_client& client, target_source query_targets,
                         watch_options options)
  : client_(client),
    targets_(std::move(query_targets)),
    options_(std::move(options)) {
}

watch_probe::~watch_probe() {
  stop_writing_ = true;
  if (writer_.joinable())
    writer_.join();
  stop_reading_ = true;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (open_call_)
      open_call_->TryCancel();
  }
  if (reader_.joinable())
    reader_.join();
}

::testing::AssertionResult watch_probe::start() {
  std::mt19937_64 rng{options_.seed * 17};
  auto reg = register_user_request("watch-register-" + options_.user_id,
                                   options_.user_id, options_.handle,
                                   "Watched");
  auto r = client_.execute(
    command_client::make("RegisterUser", options_.user_id, reg), rng);
  if (r.outcome != command_outcome::acknowledged)
    return ::testing::AssertionFailure()
           << "registering the watched user: " << to_string(r.outcome) << " "
           << status_code_name(r.code) << " " << r.message;
  // The document must exist before the stream opens: the first message is
  // then the registration, never a change that beats it.
  auto until = steady::now() + seconds(30);
  grpc::Status last{grpc::StatusCode::UNAVAILABLE, "no query node"};
  for (;;) {
    auto targets = targets_();
    bool all = !targets.empty();
    for (auto& t : targets) {
      auto stub = v1::QueryService::NewStub(channel_to(t));
      v1::GetUserRequest req;
      req.set_user_id(options_.user_id);
      req.set_min_position(r.result.global_position());
      v1::UserView view;
      auto ctx = context_within(seconds(5));
      last = stub->GetUser(ctx.get(), req, &view);
      all = all && last.ok();
    }
    if (all)
      break;
    if (steady::now() > until)
      return ::testing::AssertionFailure()
             << "the watched user's document did not appear: "
             << status_text(last);
    std::this_thread::sleep_for(milliseconds(50));
  }
  reader_ = std::thread{[this] { read_loop(); }};
  until = steady::now() + seconds(20);
  for (;;) {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (!segments_.empty() && segments_.front().has_initial)
        break;
      if (!segments_.empty() && segments_.front().ended)
        return ::testing::AssertionFailure()
               << "the Watch stream ended at once: "
               << segments_.front().end_status;
    }
    if (steady::now() > until)
      return ::testing::AssertionFailure()
             << "no initial document from the Watch stream within 20 s";
    std::this_thread::sleep_for(milliseconds(10));
  }
  writer_ = std::thread{[this] { write_loop(); }};
  return ::testing::AssertionSuccess();
}

void watch_probe::write_loop() {
  std::mt19937_64 rng{options_.seed * 19};
  for (int64_t n = 0; !stop_writing_; ++n) {
    auto cid = "watch-" + options_.user_id + "-" + std::to_string(n);
    auto req = command_request<v1::UpdateProfileRequest>(cid, options_.user_id);
    req.set_bio("watch " + cid);
    auto r = client_.execute(
      command_client::make("UpdateProfile", options_.user_id, req), rng);
    if (r.outcome == command_outcome::acknowledged)
      ++acknowledged_;
    std::this_thread::sleep_for(options_.interval);
  }
}

void watch_probe::read_loop() {
  std::mt19937_64 rng{options_.seed * 23};
  v1::WatchRequest req;
  req.add_user_ids(options_.user_id);
  while (!stop_reading_) {
    auto targets = targets_();
    if (targets.empty()) {
      std::this_thread::sleep_for(milliseconds(50));
      continue;
    }
    auto target = targets[rng() % targets.size()];
    auto ctx = std::make_shared<grpc::ClientContext>();
    std::size_t index = 0;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (stop_reading_)
        break;
      open_call_ = ctx;
      segments_.push_back({});
      segments_.back().target = target;
      index = segments_.size() - 1;
    }
    auto stub = v1::QueryService::NewStub(channel_to(target));
    auto reader = stub->Watch(ctx.get(), req);
    v1::DocumentChange change;
    while (reader->Read(&change)) {
      std::lock_guard<std::mutex> guard{mtx_};
      auto& s = segments_[index];
      if (!s.has_initial && change.global_position() == 0
          && s.changes.empty()) {
        s.has_initial = true;
        s.initial_user_id = change.user().user_id();
        s.initial_bio = change.user().bio();
        continue;
      }
      watch_change c;
      c.position = change.global_position();
      c.is_user = change.has_user();
      c.user_id = change.user().user_id();
      c.bio = change.user().bio();
      s.changes.push_back(std::move(c));
    }
    auto status = reader->Finish();
    {
      std::lock_guard<std::mutex> guard{mtx_};
      auto& s = segments_[index];
      s.ended = true;
      s.ended_early = !stop_reading_;
      s.end_status = status_text(status);
      open_call_.reset();
    }
    if (!options_.follow_restarts)
      break;
    if (!stop_reading_)
      std::this_thread::sleep_for(milliseconds(100));
  }
}

std::vector<subject_event> watch_probe::subject_journal() const {
  std::vector<subject_event> out;
  pqxx::connection conn{options_.db_url};
  pqxx::read_transaction tx{conn};
  for (const auto& row :
       tx.exec_params("SELECT seq_nr, global_position,"
                      "       coalesce(command_id, '')"
                      "  FROM events WHERE persistence_id = $1"
                      " ORDER BY seq_nr",
                      "user|" + options_.user_id))
    out.push_back(
      {row[0].as<int64_t>(), row[1].as<int64_t>(), row[2].as<std::string>()});
  return out;
}

bool watch_probe::delivered_up_to(const subject_event& last) const {
  std::lock_guard<std::mutex> guard{mtx_};
  if (segments_.empty())
    return false;
  auto& s = segments_.back();
  if (s.ended)
    return false;

  if (s.has_initial && s.initial_bio == "watch " + last.command_id)
    return true;
  for (auto& c : s.changes)
    if (c.position >= last.position)
      return true;
  return false;
}

::testing::AssertionResult watch_probe::stop(milliseconds within) {
  stop_writing_ = true;
  if (writer_.joinable())
    writer_.join();
  auto result = ::testing::AssertionSuccess();
  if (reader_.joinable()) {
    std::vector<subject_event> journal;
    try {
      journal = subject_journal();
    } catch (const std::exception& e) {
      result = ::testing::AssertionFailure()
               << "cannot read the watched stream: " << e.what();
    }
    if (!journal.empty()) {
      auto until = steady::now() + within;
      while (!delivered_up_to(journal.back())) {
        if (!options_.follow_restarts && stream_over()) {
          result = ::testing::AssertionFailure()
                   << "the Watch stream ended before position "
                   << journal.back().position << " arrived";
          break;
        }
        if (steady::now() > until) {
          result = ::testing::AssertionFailure()
                   << "the Watch stream did not deliver position "
                   << journal.back().position << " within " << within.count()
                   << " ms";
          break;
        }
        std::this_thread::sleep_for(milliseconds(10));
      }
    }
    stop_reading_ = true;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (open_call_)
        open_call_->TryCancel();
    }
    reader_.join();
  }
  return result;
}

bool watch_probe::stream_over() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return !segments_.empty() && segments_.back().ended;
}

std::vector<watch_segment> watch_probe::segments() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return segments_;
}

violations
watch_probe::check(const std::vector<command_record>& records) const {
  std::vector<subject_event> journal;
  try {
    journal = subject_journal();
  } catch (const std::exception& e) {
    return {std::string{"Watch: cannot read the journal: "} + e.what()};
  }
  std::vector<int64_t> acked;
  for (auto& r : records)
    if (r.user_id == options_.user_id && r.method == "UpdateProfile"
        && r.outcome == command_outcome::acknowledged)
      acked.push_back(r.result.global_position());
  return check_watch_segments(options_.user_id, segments(), journal, acked,
                              !options_.follow_restarts);
}

// -- everything ---------------------------------------------------------------

verify_report verify_cluster(const verify_options& options,
                             std::vector<command_record> records,
                             const watch_probe* probe) {
  verify_report report;
  auto started = steady::now();
  command_log resend_log;
  command_client client{options.command_targets, options.retry, &resend_log};
  report.journal = check_journal(options.db_url, records, options.journal);
  if (probe != nullptr)
    report.watch = probe->check(records);
  report.rejections = unexpected_rejections(records);
  report.resend = check_resend(client, records, options.seed);
  std::size_t in_doubt = 0;
  for (auto& r : records)
    in_doubt += r.outcome == command_outcome::failed ? 1 : 0;
  report.in_doubt = resolve_in_doubt(client, records, options.seed);
  std::set<std::string> seen(report.journal.begin(), report.journal.end());
  for (auto& v : check_journal(options.db_url, records, options.journal))
    if (seen.count(v) == 0)
      report.journal_after_resend.push_back(v);
  if (options.projections)
    report.projections
      = check_projections({options.db_url, options.query_targets,
                           options.admin_targets, options.projection_timeout});
  std::ostringstream summary;
  summary
    << records.size() << " commands checked, " << in_doubt
    << " in doubt resolved, in "
    << std::chrono::duration_cast<milliseconds>(steady::now() - started).count()
    << " ms";
  report.summary = summary.str();
  return report;
}

// -- the scenario fixture -----------------------------------------------------

namespace {

std::string lines(const violations& v) {
  std::string out;
  for (auto& x : v)
    out += "\n  " + x;
  return out;
}

} // namespace

void cluster_scenario::SetUp() {
  seed_ = scenario_seed();
  rng_.seed(seed_);
  if (shoutflowd_binary().empty())
    GTEST_FAIL() << "SHOUTFLOWD is not set: run through ctest, or export "
                    "SHOUTFLOWD=<build>/bin/shoutflowd";
}

void cluster_scenario::TearDown() {
  if (watch_)
    watch_.reset();
  if (load_)
    load_->stop();
  if (HasFailure()) {
    std::cerr << "[ seed     ] replay with SHOUTFLOW_SEED=" << seed_ << "\n";
    if (load_)
      std::cerr << "[ load     ] " << load_->log().summary() << "\n";
  }
}

int cluster_scenario::pick(const std::vector<int>& from) {
  return from.at(static_cast<std::size_t>(rng_() % from.size()));
}

void cluster_scenario::start_cluster(
  int nodes, const std::function<void(cluster_options&)>& tweak,
  const std::string& db_url) {
  if (db_url.empty()) {
    db_ = std::make_unique<test_database>();
    db_url_ = db_->url();
  } else {
    db_url_ = db_url;
  }
  cluster_options opts;
  opts.db_url = db_url_;
  if (tweak)
    tweak(opts);
  cluster_ = std::make_unique<cluster_harness>(opts, nodes);
  std::cerr << "[ cluster  ] " << nodes << " nodes, cluster flags "
            << (opts.cluster_flags ? "on" : "off") << ", logs in "
            << cluster_->options().log_dir << "\n";
  for (int i = 0; i < nodes; ++i)
    ASSERT_TRUE(cluster_->start(i));
  for (int i = 0; i < nodes; ++i)
    ASSERT_TRUE(cluster_->wait_ready(i, seconds(60)));
  ASSERT_TRUE(cluster_->wait_cluster_settled(seconds(60)));
}

void cluster_scenario::start_load(
  const std::function<void(load_options&)>& tweak) {
  load_options opts;
  opts.seed = seed_;
  if (tweak)
    tweak(opts);
  auto* c = cluster_.get();
  load_ = std::make_unique<load_driver>([c] { return c->command_targets(); },
                                        opts);
  ASSERT_TRUE(load_->register_users());
  load_->start();
}

void cluster_scenario::start_watched_load(int nodes, bool cluster_flags,
                                          std::vector<int>* all,
                                          int* watch_node) {
  ASSERT_NO_FATAL_FAILURE(start_cluster(nodes, [&](cluster_options& o) {
    o.cluster_flags = cluster_flags;
  }));
  ASSERT_NO_FATAL_FAILURE(start_load());
  all->clear();
  for (int i = 0; i < nodes; ++i)
    all->push_back(i);
  *watch_node = nodes > 1 ? pick(*all) : -1;
  ASSERT_NO_FATAL_FAILURE(start_watch(*watch_node));
  ASSERT_NO_FATAL_FAILURE(expect_progress(100));
}

void cluster_scenario::start_watch(int node) {
  ASSERT_TRUE(load_) << "start_load first: the probe records through it";
  watch_options opts;
  opts.db_url = db_url_;
  opts.seed = seed_;
  opts.follow_restarts = node < 0;
  auto* c = cluster_.get();
  target_source targets;
  if (node < 0)
    targets = [c] { return c->query_targets(); };
  else
    targets = [c, node] {
      return std::vector<std::string>{c->query_address(node)};
    };
  watch_ = std::make_unique<watch_probe>(load_->client(), targets, opts);
  ASSERT_TRUE(watch_->start());
}

void cluster_scenario::expect_progress(int64_t more, milliseconds within) {
  // A soak runs each phase's load five times as long.
  if (soak()) {
    more *= 5;
    within *= 5;
  }
  EXPECT_TRUE(
    load_->wait_acknowledged(load_->log().acknowledged(), more, within));
}

void cluster_scenario::restart(int i) {
  ASSERT_TRUE(cluster_->start(i));
  ASSERT_TRUE(cluster_->wait_ready(i, seconds(60)));
}

void cluster_scenario::finish_and_verify() {
  load_->stop();
  if (watch_) {
    EXPECT_TRUE(watch_->stop());
  }
  std::cerr << "[ load     ] " << load_->log().summary() << "\n";
  if (watch_)
    std::cerr << "[ watch    ] " << watch_->updates_acknowledged()
              << " updates of " << watch_->user_id() << ", "
              << watch_->segments().size() << " stream(s)\n";
  auto unexpected = cluster_->unexpected_exits();
  EXPECT_TRUE(unexpected.empty())
    << "nodes exited unasked:" << lines(unexpected);
  ASSERT_FALSE(cluster_->live_nodes().empty()) << "no live node to check with";
  auto* c = cluster_.get();
  verify_options opts;
  opts.db_url = db_url_;
  opts.command_targets = [c] { return c->command_targets(); };
  opts.query_targets = [c] { return c->query_targets(); };
  opts.admin_targets = [c] { return c->admin_targets(); };
  opts.seed = seed_;
  opts.journal.require_lease_epoch = cluster_->options().cluster_flags;
  auto report = verify_cluster(opts, load_->log().records(), watch_.get());
  std::cerr << "[ verify   ] " << report.summary << "\n";
  EXPECT_TRUE(report.journal.empty()) << "G1/G2:" << lines(report.journal);
  EXPECT_TRUE(report.watch.empty()) << "Watch:" << lines(report.watch);
  EXPECT_TRUE(report.rejections.empty()) << "G5:" << lines(report.rejections);
  EXPECT_TRUE(report.resend.empty()) << "G4:" << lines(report.resend);
  EXPECT_TRUE(report.in_doubt.empty()) << "G4:" << lines(report.in_doubt);
  EXPECT_TRUE(report.journal_after_resend.empty())
    << "G1/G2 after the resends:" << lines(report.journal_after_resend);
  EXPECT_TRUE(report.projections.empty()) << "G3:" << lines(report.projections);
}

} // namespace shoutflow::testing
