#include "actors/projection/lag_probe.hpp"

#include <caf/all.hpp>

#include <map>
#include <memory>
#include <utility>

#include "actors/common/atoms.hpp"
#include "actors/common/log.hpp"
#include "actors/journal/pg_session.hpp"
#include "actors/projection/log_reader.hpp"

namespace shoutflow::projection {

namespace {

constexpr const char* component = "projection";

constexpr const char* partitions_sql = R"sql(
SELECT o.projection, o.partition, o.position, h.head,
       (SELECT extract(epoch FROM clock_timestamp() - e.recorded_at)::float8
          FROM events e
         WHERE (e.tx_id, e.global_position) > (o.tx_id, o.position)
         ORDER BY e.tx_id, e.global_position
         LIMIT 1)
  FROM leases l
  JOIN projection_generations g
    ON l.resource = 'projection/' || g.projection AND g.state = 'live'
  JOIN projection_offsets o
    ON o.projection = g.projection AND o.generation = g.generation
   AND o.partition = l.part
 CROSS JOIN (SELECT coalesce(max(global_position), 0) AS head FROM events) h
 WHERE l.owner_node = $1 AND l.owner_incarnation = $2
   AND l.expires_at > clock_timestamp()
)sql";

// Not EXISTS: see log_fetch_sql in log_reader.cpp on generic plans.
std::string behind_sql() {
  return "SELECT 1 FROM events WHERE tx_id >= " + gap_safe_horizon_sql()
         + " ORDER BY tx_id LIMIT 1";
}

// The read side's own transactions do not hold the horizon back.
std::string blocker_sql() {
  return std::string{R"sql(
SELECT pid, extract(epoch FROM clock_timestamp() - xact_start)::float8
  FROM pg_stat_activity
 WHERE backend_xid IS NOT NULL AND xact_start IS NOT NULL
   AND application_name IS DISTINCT FROM ')sql"}
         + journal::read_side_application + R"sql('
 ORDER BY age(backend_xid) DESC
 LIMIT 1
)sql";
}

void prepare(pqxx::connection& c) {
  c.prepare("partitions", partitions_sql);
  c.prepare("behind", behind_sql());
  c.prepare("blocker", blocker_sql());
}

struct partition_series {
  prometheus::Gauge* offset = nullptr;
  prometheus::Gauge* lag_events = nullptr;
  prometheus::Gauge* lag_seconds = nullptr;
};

using partition_key = std::pair<std::string, int32_t>;

struct sample {
  struct row {
    partition_key key;
    int64_t position = 0;
    int64_t lag_events = 0;
    double lag_seconds = 0;
  };
  std::vector<row> rows;
  bool behind = false;
  int64_t blocker_pid = 0;
  double blocker_age = 0;
};

struct probe_state {
  lag_probe_config cfg;
  projection_metrics* metrics = nullptr;
  std::unique_ptr<journal::pg_session> session;
  std::map<partition_key, partition_series> series;
  bool failing = false;
  static inline const char* name = "lag-probe";
};

using pointer = caf::stateful_actor<probe_state>*;

journal::db_result read_sample(pointer self, sample& out) {
  auto& st = self->state;
  return st.session->run([&](pqxx::connection& conn) {
    out = sample{};
    pqxx::read_transaction tx{conn};
    for (const auto& r :
         tx.exec_prepared("partitions", st.cfg.node_id, st.cfg.incarnation)) {
      sample::row row;
      row.key = {r[0].as<std::string>(), r[1].as<int32_t>()};
      row.position = r[2].as<int64_t>();
      // Nothing after the offset: caught up, whatever the positions say.
      if (!r[4].is_null()) {
        row.lag_seconds = std::max(r[4].as<double>(), 0.0);
        row.lag_events = std::max<int64_t>(r[3].as<int64_t>() - row.position,
                                           1);
      }
      out.rows.push_back(std::move(row));
    }
    out.behind = !tx.exec_prepared("behind").empty();
    if (!out.behind)
      return;
    auto b = tx.exec_prepared("blocker");
    if (!b.empty()) {
      out.blocker_pid = b[0][0].as<int64_t>();
      out.blocker_age = b[0][1].is_null() ? 0.0 : b[0][1].as<double>();
    }
  });
}

/// Series follow the leases: new partitions get theirs, lost ones go.
void publish(pointer self, const sample& s) {
  auto& st = self->state;
  auto& m = *st.metrics;
  std::map<partition_key, partition_series> now;
  for (auto& row : s.rows) {
    auto it = st.series.find(row.key);
    partition_series ps;
    if (it != st.series.end()) {
      ps = it->second;
      st.series.erase(it);
    } else {
      prometheus::Labels labels{{"projection", row.key.first},
                                {"partition", std::to_string(row.key.second)}};
      ps = {&m.offset.Add(labels), &m.lag_events.Add(labels),
            &m.lag_seconds.Add(labels)};
    }
    ps.offset->Set(static_cast<double>(row.position));
    ps.lag_events->Set(static_cast<double>(row.lag_events));
    ps.lag_seconds->Set(row.lag_seconds);
    now.emplace(row.key, ps);
  }
  for (auto& [key, ps] : st.series) {
    m.offset.Remove(ps.offset);
    m.lag_events.Remove(ps.lag_events);
    m.lag_seconds.Remove(ps.lag_seconds);
  }
  st.series = std::move(now);
  if (s.behind)
    m.horizon_stalls.Increment();
  m.horizon_blocker_pid.Set(static_cast<double>(s.blocker_pid));
  m.horizon_blocker_age.Set(s.blocker_age);
}

caf::behavior probe(pointer self, lag_probe_config cfg,
                    projection_metrics* metrics) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.metrics = metrics;
  st.session = std::make_unique<journal::pg_session>(st.cfg.db_url, "lag-probe",
                                                     prepare);
  self->send(self, tick_atom::value);
  return {
    [=](tick_atom) {
      auto& st = self->state;
      sample s;
      auto r = read_sample(self, s);
      if (r) {
        publish(self, s);
        st.failing = false;
      } else if (!st.failing) {
        // Keep the last values: a scrape during an outage shows where the
        // partitions were, and the journal's own metrics show the outage.
        st.failing = true;
        log_warn(component, "lag probe: " + r.detail);
      }
      self->delayed_send(self, st.cfg.interval, tick_atom::value);
    },
  };
}

} // namespace

caf::actor spawn_lag_probe(caf::actor_system& sys, lag_probe_config cfg,
                           projection_metrics* metrics) {
  return sys.spawn<caf::detached>(probe, std::move(cfg), metrics);
}

} // namespace shoutflow::projection
