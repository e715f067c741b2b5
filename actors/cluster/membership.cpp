#include "actors/cluster/membership.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "actors/cluster/assignment.hpp"
#include "actors/common/log.hpp"

namespace shoutflow::cluster {

namespace {

constexpr const char* component = "cluster";

// Serializes joins: the settings check and the node-id takeover.
constexpr int64_t join_lock = 0x73666a6f696e; // "sfjoin"

constexpr const char* sql_heartbeat
  = "UPDATE cluster_members"
    "   SET heartbeat_at = clock_timestamp(),"
    "       state = CASE WHEN $3 THEN 'leaving' ELSE state END"
    " WHERE node_id = $1 AND incarnation = $2 AND state <> 'down'"
    " RETURNING state";

constexpr const char* sql_declare_down
  = "UPDATE cluster_members SET state = 'down', down_at = clock_timestamp()"
    " WHERE state <> 'down'"
    "   AND heartbeat_at < clock_timestamp() - $1 * interval '1 millisecond'"
    " RETURNING node_id";

constexpr const char* sql_forget_down
  = "DELETE FROM cluster_members"
    " WHERE state = 'down' AND down_at < clock_timestamp() - interval '1 "
    "minute'";

constexpr const char* sql_members
  = "SELECT node_id, incarnation, host, caf_port, command_port, query_port,"
    "       admin_port, metrics_port, array_to_string(roles, ','), state,"
    "       (extract(epoch FROM clock_timestamp() - heartbeat_at) * 1000)"
    "         ::bigint"
    "  FROM cluster_members ORDER BY node_id";

constexpr const char* sql_renew
  = "UPDATE leases SET expires_at = clock_timestamp()"
    "                               + $3 * interval '1 millisecond'"
    " WHERE owner_node = $1 AND owner_incarnation = $2"
    "   AND expires_at > clock_timestamp()"
    " RETURNING resource, part, epoch";

// Free or expired leases assigned to this node; rows locked by a writer's
// FOR KEY SHARE (an in-flight batch of the previous owner) are skipped and
// taken in a later round, after that batch has committed or rolled back.
constexpr const char* sql_acquire
  = "UPDATE leases l"
    "   SET owner_node = $1, owner_incarnation = $2, epoch = l.epoch + 1,"
    "       expires_at = clock_timestamp() + $3 * interval '1 millisecond'"
    "  FROM (SELECT resource, part, owner_node, owner_incarnation,"
    "               expires_at FROM leases"
    "         WHERE (resource, part) IN"
    "               (SELECT * FROM unnest($4::text[], $5::int[]))"
    "           AND (owner_node IS NULL OR expires_at <= clock_timestamp())"
    "         ORDER BY resource, part"
    "           FOR UPDATE SKIP LOCKED) f"
    " WHERE l.resource = f.resource AND l.part = f.part"
    " RETURNING l.resource, l.part, l.epoch,"
    // A fail-over: the previous owner neither released the lease nor had
    // its leases expired by a restart of its node (expires_at -infinity):
    // seconds since its last renewal (its expiry minus the TTL).
    "   CASE WHEN f.owner_node IS NOT NULL"
    "         AND f.owner_incarnation IS DISTINCT FROM $2"
    "         AND f.expires_at > '-infinity'"
    "        THEN extract(epoch FROM clock_timestamp() - f.expires_at)::float8"
    "             + $3::float8 / 1000.0 END";

constexpr const char* sql_history
  = "INSERT INTO lease_history (resource, part, epoch, owner_node,"
    "                           owner_incarnation)"
    " SELECT r, p, e, $4, $5"
    "   FROM unnest($1::text[], $2::int[], $3::bigint[]) AS q(r, p, e)"
    " ON CONFLICT DO NOTHING";

constexpr const char* sql_up
  = "UPDATE cluster_members SET state = 'up'"
    " WHERE node_id = $1 AND incarnation = $2 AND state = 'joining'";

constexpr const char* sql_leases
  = "SELECT resource, part, coalesce(owner_node, -1), epoch,"
    "       expires_at > clock_timestamp()"
    "  FROM leases ORDER BY resource, part";

constexpr const char* sql_release
  = "UPDATE leases"
    "   SET owner_node = NULL, owner_incarnation = NULL,"
    "       expires_at = '-infinity'"
    " WHERE resource = $1 AND part = $2 AND epoch = $3"
    "   AND owner_node = $4 AND owner_incarnation = $5";

// A lease this node stopped serving because its renewal was overdue (the
// keeper, check_validity): freed at that epoch, whatever a late renewal
// did, so that it is only taken again at a new epoch. The revoked holder
// may still be finishing a transaction under the old one; its FOR KEY
// SHARE on the row makes the next acquisition (FOR UPDATE SKIP LOCKED)
// wait until that transaction has ended.
constexpr const char* sql_give_back
  = "WITH r AS ("
    "  UPDATE leases l"
    "     SET owner_node = NULL, owner_incarnation = NULL,"
    "         expires_at = '-infinity'"
    "    FROM unnest($1::text[], $2::int[], $3::bigint[]) AS q(r, p, e)"
    "   WHERE l.resource = q.r AND l.part = q.p AND l.epoch = q.e"
    "     AND l.owner_node = $4 AND l.owner_incarnation = $5"
    "  RETURNING l.resource, l.part, l.epoch)"
    " UPDATE lease_history h SET released_at = clock_timestamp()"
    "   FROM r"
    "  WHERE h.resource = r.resource AND h.part = r.part"
    "    AND h.epoch = r.epoch";

constexpr const char* sql_released
  = "UPDATE lease_history SET released_at = clock_timestamp()"
    " WHERE resource = $1 AND part = $2 AND epoch = $3";

void prepare(pqxx::connection& c) {
  c.prepare("heartbeat", sql_heartbeat);
  c.prepare("declare_down", sql_declare_down);
  c.prepare("forget_down", sql_forget_down);
  c.prepare("members", sql_members);
  c.prepare("renew", sql_renew);
  c.prepare("acquire", sql_acquire);
  c.prepare("history", sql_history);
  c.prepare("up", sql_up);
  c.prepare("leases", sql_leases);
  c.prepare("release", sql_release);
  c.prepare("released", sql_released);
  c.prepare("give_back", sql_give_back);
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in{s};
  std::string item;
  while (std::getline(in, item, ','))
    if (!item.empty())
      out.push_back(item);
  return out;
}

std::vector<member> read_members(pqxx::transaction_base& tx,
                                 const pqxx::result& rows) {
  (void) tx;
  std::vector<member> out;
  for (const auto& r : rows) {
    member m;
    m.node_id = r[0].as<int32_t>();
    m.incarnation = r[1].as<std::string>();
    m.host = r[2].as<std::string>();
    m.caf_port = r[3].as<int32_t>();
    m.command_port = r[4].as<int32_t>();
    m.query_port = r[5].as<int32_t>();
    m.admin_port = r[6].as<int32_t>();
    m.metrics_port = r[7].as<int32_t>();
    m.roles = split(r[8].as<std::string>());
    m.state = member_state_from(r[9].as<std::string>());
    m.heartbeat_age_ms = r[10].as<int64_t>();
    out.push_back(std::move(m));
  }
  return out;
}

std::vector<lease> read_leases(const pqxx::result& rows) {
  std::vector<lease> out;
  out.reserve(rows.size());
  for (const auto& r : rows)
    out.push_back({r[0].as<std::string>(), r[1].as<int32_t>(),
                   r[2].as<int32_t>(), r[3].as<int64_t>(), r[4].as<bool>()});
  return out;
}

std::vector<lease_grant> read_grants(const pqxx::result& rows) {
  std::vector<lease_grant> out;
  for (const auto& r : rows)
    out.push_back(
      {r[0].as<std::string>(), r[1].as<int32_t>(), r[2].as<int64_t>()});
  return out;
}

/// Runs `statement` (parameters: resources, parts, epochs, node id,
/// incarnation) for `grants` of node `me`.
void exec_for_grants(pqxx::work& tx, const char* statement,
                     const std::vector<lease_grant>& grants, const member& me) {
  std::vector<std::string> rs;
  std::vector<int64_t> ps, es;
  for (auto& g : grants) {
    rs.push_back(g.resource);
    ps.push_back(g.part);
    es.push_back(g.epoch);
  }
  tx.exec_prepared(statement, journal::text_array(rs), journal::int_array(ps),
                   journal::int_array(es), me.node_id, me.incarnation);
}

using lease_key = std::pair<std::string, int32_t>;

} // namespace

const char* to_string(member_state s) {
  switch (s) {
    case member_state::joining:
      return "joining";
    case member_state::up:
      return "up";
    case member_state::leaving:
      return "leaving";
    case member_state::down:
      return "down";
  }
  return "down";
}

member_state member_state_from(const std::string& s) {
  if (s == "joining")
    return member_state::joining;
  if (s == "up")
    return member_state::up;
  if (s == "leaving")
    return member_state::leaving;
  return member_state::down;
}

bool member::has_role(const std::string& role) const {
  return std::find(roles.begin(), roles.end(), role) != roles.end();
}

int32_t cluster_view::owner_of(const std::string& resource,
                               int32_t part) const {
  for (auto& l : leases)
    if (l.part == part && l.resource == resource)
      return l.valid ? l.owner_node : -1;
  return -1;
}

const member* cluster_view::find(int32_t node_id) const {
  for (auto& m : members)
    if (m.node_id == node_id)
      return &m;
  return nullptr;
}

membership_table::membership_table(membership_config cfg)
  : cfg_(std::move(cfg)), session_(cfg_.db_url, "cluster-membership", prepare) {
}

void membership_table::join(std::chrono::milliseconds wait) {
  auto& me = cfg_.self;
  auto deadline = std::chrono::steady_clock::now() + wait;
  for (;;) {
    std::string blocker;
    try {
      pqxx::connection conn{cfg_.db_url};
      pqxx::work tx{conn};
      tx.exec("SELECT pg_advisory_xact_lock(" + std::to_string(join_lock)
              + ")");
      tx.exec_params("INSERT INTO cluster_settings (name, value)"
                     " VALUES ('shards', $1) ON CONFLICT DO NOTHING",
                     std::to_string(cfg_.shards));
      auto shards = tx.exec1("SELECT value FROM cluster_settings"
                             " WHERE name = 'shards'")[0]
                      .as<std::string>();
      if (shards != std::to_string(cfg_.shards))
        throw std::runtime_error(
          "the cluster has " + shards + " shards, this node is configured with "
          + std::to_string(cfg_.shards)
          + " (--shards / SHOUTFLOW_SHARDS): the shard count is fixed for "
            "the cluster's life");
      for (auto& r : cfg_.resources) {
        tx.exec_params("INSERT INTO leases (resource, part)"
                       " SELECT $1, g FROM generate_series(0, $2 - 1) g"
                       " ON CONFLICT DO NOTHING",
                       r.resource, r.parts);
        // Parts beyond the count (a rebuilt projection with fewer
        // partitions, a new cluster with fewer shards) go once free.
        tx.exec_params("DELETE FROM leases WHERE resource = $1 AND part >= $2"
                       "   AND (owner_node IS NULL"
                       "        OR expires_at <= clock_timestamp())",
                       r.resource, r.parts);
      }
      auto rows = tx.exec_params(
        "SELECT incarnation, host, state,"
        "       heartbeat_at > clock_timestamp()"
        "                      - $2 * interval '1 millisecond'"
        "  FROM cluster_members WHERE node_id = $1 FOR UPDATE",
        me.node_id, static_cast<int64_t>(cfg_.lease_ttl.count()));
      if (!rows.empty() && rows[0][2].as<std::string>() != "down"
          && rows[0][3].as<bool>() && rows[0][1].as<std::string>() != me.host)
        blocker = "node id " + std::to_string(me.node_id)
                  + " is in use by a live member at host "
                  + rows[0][1].as<std::string>() + " (incarnation "
                  + rows[0][0].as<std::string>() + ")";
      if (blocker.empty()) {
        // An earlier incarnation of this node id on this host is gone (a
        // restarted process or pod): its leases need not be waited out.
        // Fencing keeps this safe even if it were not.
        tx.exec_params("UPDATE leases SET expires_at = '-infinity'"
                       " WHERE owner_node = $1"
                       "   AND owner_incarnation IS DISTINCT FROM $2",
                       me.node_id, me.incarnation);
        tx.exec_params(
          "INSERT INTO cluster_members (node_id, incarnation, host, caf_port,"
          "  command_port, query_port, admin_port, metrics_port, roles, state)"
          " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text[], 'joining')"
          " ON CONFLICT (node_id) DO UPDATE SET"
          "  incarnation = excluded.incarnation, host = excluded.host,"
          "  caf_port = excluded.caf_port,"
          "  command_port = excluded.command_port,"
          "  query_port = excluded.query_port,"
          "  admin_port = excluded.admin_port,"
          "  metrics_port = excluded.metrics_port, roles = excluded.roles,"
          "  state = 'joining', started_at = clock_timestamp(),"
          "  heartbeat_at = clock_timestamp(), down_at = NULL",
          me.node_id, me.incarnation, me.host, me.caf_port, me.command_port,
          me.query_port, me.admin_port, me.metrics_port,
          journal::text_array(me.roles));
        tx.commit();
        log_info(component, "node " + std::to_string(me.node_id)
                              + " joined as incarnation " + me.incarnation);
        return;
      }
    } catch (const std::runtime_error& e) {
      if (dynamic_cast<const pqxx::failure*>(&e) == nullptr)
        throw;
      blocker = std::string{"the database: "} + e.what();
    }
    if (std::chrono::steady_clock::now() >= deadline)
      throw std::runtime_error("cannot join the cluster: " + blocker);
    log_warn(component, "cannot join yet (" + blocker + "); retrying");
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

journal::db_result
membership_table::round(bool leaving, const std::vector<lease_grant>& give_back,
                        round_result& out) {
  auto& me = cfg_.self;
  auto ttl = static_cast<int64_t>(cfg_.lease_ttl.count());
  return session_.run([&](pqxx::connection& conn) {
    out = round_result{};
    pqxx::work tx{conn};
    auto beat = tx.exec_prepared("heartbeat", me.node_id, me.incarnation,
                                 leaving);
    if (beat.empty()) {
      out.member = false;
      tx.commit();
      return;
    }
    out.state = member_state_from(beat[0][0].as<std::string>());
    for (const auto& r : tx.exec_prepared("declare_down", ttl))
      out.declared_down.push_back(r[0].as<int32_t>());
    tx.exec_prepared("forget_down");
    out.view.self = me.node_id;
    out.view.members = read_members(tx, tx.exec_prepared("members"));
    if (!give_back.empty())
      exec_for_grants(tx, "give_back", give_back, me);
    out.held
      = read_grants(tx.exec_prepared("renew", me.node_id, me.incarnation, ttl));
    std::set<lease_key> held;
    for (auto& g : out.held)
      held.emplace(g.resource, g.part);
    // Who should own what, over the members taking work.
    std::vector<std::string> want_resources;
    std::vector<int64_t> want_parts;
    std::set<lease_key> mine;
    for (auto& spec : cfg_.resources) {
      std::vector<int32_t> candidates;
      for (auto& m : out.view.members)
        if (m.active() && m.has_role(spec.role))
          candidates.push_back(m.node_id);
      auto owners = assign(spec.resource, spec.parts, candidates);
      for (int32_t p = 0; p < spec.parts; ++p) {
        if (owners[static_cast<std::size_t>(p)] != me.node_id)
          continue;
        mine.emplace(spec.resource, p);
        if (held.count({spec.resource, p}) == 0) {
          want_resources.push_back(spec.resource);
          want_parts.push_back(p);
        }
      }
    }
    if (!want_parts.empty()) {
      auto acquired = tx.exec_prepared("acquire", me.node_id, me.incarnation,
                                       ttl, journal::text_array(want_resources),
                                       journal::int_array(want_parts));
      for (const auto& row : acquired)
        if (!row[3].is_null())
          out.failover_seconds.push_back(row[3].as<double>());
      auto got = read_grants(acquired);
      for (auto& g : got) {
        held.emplace(g.resource, g.part);
        out.held.push_back(g);
      }
      if (!got.empty())
        exec_for_grants(tx, "history", got, me);
    }
    for (auto& g : out.held)
      if (mine.count({g.resource, g.part}) == 0)
        out.give_up.push_back(g);
    if (out.state == member_state::joining
        && std::all_of(mine.begin(), mine.end(),
                       [&](const lease_key& k) { return held.count(k) > 0; })) {
      tx.exec_prepared("up", me.node_id, me.incarnation);
      out.state = member_state::up;
      for (auto& m : out.view.members)
        if (m.node_id == me.node_id)
          m.state = member_state::up;
    }
    out.view.leases = read_leases(tx.exec_prepared("leases"));
    tx.commit();
  });
}

journal::db_result membership_table::release(const lease_grant& g) {
  auto& me = cfg_.self;
  return session_.run([&](pqxx::connection& conn) {
    pqxx::work tx{conn};
    tx.exec_prepared("release", g.resource, g.part, g.epoch, me.node_id,
                     me.incarnation);
    tx.exec_prepared("released", g.resource, g.part, g.epoch);
    tx.commit();
  });
}

journal::db_result membership_table::leave() {
  auto& me = cfg_.self;
  return session_.run([&](pqxx::connection& conn) {
    pqxx::work tx{conn};
    tx.exec_params("UPDATE lease_history h SET released_at = clock_timestamp()"
                   "  FROM leases l"
                   " WHERE l.owner_node = $1 AND l.owner_incarnation = $2"
                   "   AND h.resource = l.resource AND h.part = l.part"
                   "   AND h.epoch = l.epoch",
                   me.node_id, me.incarnation);
    tx.exec_params("UPDATE leases"
                   "   SET owner_node = NULL, owner_incarnation = NULL,"
                   "       expires_at = '-infinity'"
                   " WHERE owner_node = $1 AND owner_incarnation = $2",
                   me.node_id, me.incarnation);
    tx.exec_params("DELETE FROM cluster_members"
                   " WHERE node_id = $1 AND incarnation = $2",
                   me.node_id, me.incarnation);
    tx.commit();
  });
}

journal::db_result read_view(pqxx::connection& conn, cluster_view& out) {
  try {
    pqxx::read_transaction tx{conn};
    out.members = read_members(tx, tx.exec(sql_members));
    out.leases = read_leases(tx.exec(sql_leases));
    return {};
  } catch (const std::exception& e) {
    return {journal::db_failure::unavailable, e.what()};
  }
}

} // namespace shoutflow::cluster
