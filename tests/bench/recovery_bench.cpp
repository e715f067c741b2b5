// recovery_bench: how long a user with 10,000 events takes to recover.
//
// Needs SHOUTFLOW_DB_URL (scripts/bench provides it). Builds, once, in a
// fresh test_database served by an in-process node (test_node; production
// settings: snapshot every 100 events):
//
//   rec-snap  registered through the node; events 2..9901 are ShoutPosted
//             events made by the real domain (user::decide + user::evolve),
//             encoded by the real user_codec and bulk-inserted with the
//             journal's own column layout (plus their shout claims); events
//             9902..10000 are 99 real PostShout commands through the node.
//             The first of those recovers from the journal and its write
//             makes the real entity take a snapshot at 9902, so recovery is
//             snapshot + 98 events: the worst case short of a fresh snapshot.
//   rec-full  registered through the node; events 2..10000 bulk-inserted as
//             above; no snapshot exists, so recovery replays all 10,000.
//
// Benchmarks (times in ms per recovery):
//   cold_recovery/snapshot, cold_recovery/full_replay — the real path. Per
//     iteration (untimed) the region passivates the user and we wait until
//     it has left memory; then (timed) one command is sent through the
//     router: the region spawns the entity, which loads snapshot + tail from
//     PostgreSQL, decodes and folds them, rebuilds its recent command ids and
//     answers the command. The command is a retry of the user's last
//     command id, so it is answered from the recovered state and writes
//     nothing (the history stays at 10,000 events). The entity's own
//     recovery histogram (shoutflow_entity_recovery_seconds: store round
//     trip + fold, without spawn and command) is reported as entity_ms.
//   store_recover/* — just the store's recover request (SQL + transfer).
//   pure_fold/*     — just decoding and folding the rows already in memory.
//
// PostgreSQL's buffers stay warm: "cold" means not in the node's memory.
// A RESULT line per benchmark (median, p90 and max over every timed
// iteration) follows Google Benchmark's own output, for scripts/bench.

#include <benchmark/benchmark.h>
#include <caf/all.hpp>
#include <prometheus/registry.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "actors/common/clock.hpp"
#include "actors/common/id_generator.hpp"
#include "actors/journal/pg_session.hpp"
#include "actors/user/user_codec.hpp"
#include "actors/user/user_domain.hpp"
#include "tests/bench/bench_support.hpp"
#include "tests/support/test_db.hpp"
#include "tests/support/test_node.hpp"

namespace {

using namespace shoutflow;
using namespace shoutflow::testing;
using clock_type = std::chrono::steady_clock;

constexpr int64_t history_length = 10000;
constexpr int real_tail = 99;

struct subject {
  std::string user_id;
  /// A command id among the user's most recent: the probe retries it.
  std::string last_command_id;
  std::string last_text;
};

/// Milliseconds of every timed iteration, per benchmark name.
std::map<std::string, std::vector<double>> samples;

std::string shout_text(int64_t seq) {
  return "recovery benchmark shout number " + std::to_string(seq);
}

double ms_since(clock_type::time_point t0) {
  return std::chrono::duration<double, std::milli>(clock_type::now() - t0)
    .count();
}

class environment {
public:
  environment() : node_(db_.url()) {
    for (auto* id : {"rec-snap", "rec-full"}) {
      std::string handle = id;
      std::replace(handle.begin(), handle.end(), '-', '_');
      auto r = node_.send(register_user("reg-" + std::string{id}, id, handle));
      if (!r.has_result())
        throw std::runtime_error("register " + std::string{id} + ": "
                                 + r.DebugString());
    }
    snap_.user_id = "rec-snap";
    full_.user_id = "rec-full";
    auto t0 = clock_type::now();
    bulk_insert(snap_, 2, history_length - real_tail);
    bulk_insert(full_, 2, history_length);
    std::printf("bulk-inserted %lld events in %.0f ms\n",
                static_cast<long long>(2 * history_length - real_tail - 2),
                ms_since(t0));
    // The inserts went behind the live entities' backs: drop them first.
    passivate_all();
    t0 = clock_type::now();
    for (int i = 0; i < real_tail; ++i) {
      auto seq = history_length - real_tail + 1 + i;
      snap_.last_command_id = "real-" + std::to_string(seq);
      snap_.last_text = shout_text(seq);
      auto r = node_.send(
        post_shout(snap_.last_command_id, snap_.user_id, snap_.last_text));
      if (!r.has_result() || r.result().seq_nr() != seq)
        throw std::runtime_error("post_shout " + std::to_string(seq) + ": "
                                 + r.DebugString());
    }
    std::printf("wrote %d events through the node in %.0f ms\n", real_tail,
                ms_since(t0));
    wait_for(
      [&] {
        return db_.scalar<int64_t>("SELECT count(*) FROM snapshots WHERE "
                                   "persistence_id = 'user|rec-snap'")
               == 1;
      },
      "the snapshot of rec-snap");
    auto snap_seq = db_.scalar<int64_t>(
      "SELECT seq_nr FROM snapshots WHERE persistence_id = 'user|rec-snap'");
    auto full_snaps = db_.scalar<int64_t>(
      "SELECT count(*) FROM snapshots WHERE persistence_id = 'user|rec-full'");
    std::printf("rec-snap: snapshot at seq_nr %lld (%lld events after it); "
                "rec-full: %lld snapshots\n",
                static_cast<long long>(snap_seq),
                static_cast<long long>(history_length - snap_seq),
                static_cast<long long>(full_snaps));
    if (full_snaps != 0 || snap_seq <= history_length - real_tail)
      throw std::runtime_error("unexpected snapshots");
    for (auto* s : {&snap_, &full_})
      if (db_.scalar<int64_t>("SELECT max(seq_nr) FROM events WHERE "
                              "persistence_id = 'user|"
                              + s->user_id + "'")
          != history_length)
        throw std::runtime_error(s->user_id + " has the wrong history length");
  }

  const subject& snap() const {
    return snap_;
  }
  const subject& full() const {
    return full_;
  }
  test_node& node() {
    return node_;
  }

  /// Passivates both users and waits until no entity is in memory.
  void passivate_all() {
    for (auto* s : {&snap_, &full_})
      caf::anon_send(node_.get().region(), passivate_atom::value, s->user_id);
    wait_for(
      [&] {
        auto s = region_stats();
        return s.active == 0 && s.passivating == 0;
      },
      "passivation");
  }

  /// (sum of seconds, count) of the entity's recovery histogram.
  std::pair<double, double> recovery_histogram() {
    for (auto& family : node_.get().registry().Collect())
      if (family.name == "shoutflow_entity_recovery_seconds"
          && !family.metric.empty())
        return {family.metric[0].histogram.sample_sum,
                static_cast<double>(family.metric[0].histogram.sample_count)};
    throw std::runtime_error("no shoutflow_entity_recovery_seconds metric");
  }

  journal::recovery_data load(const std::string& user_id) {
    caf::scoped_actor self{node_.get().system()};
    journal::recovery_data out;
    bool ok = false;
    self
      ->request(node_.get().store(), std::chrono::seconds(30),
                recover_atom::value, "user|" + user_id)
      .receive(
        [&](journal::recovery_data& d) {
          out = std::move(d);
          ok = true;
        },
        [&](caf::error&) {});
    if (!ok)
      throw std::runtime_error("store recover failed for " + user_id);
    return out;
  }

private:
  entity::region_stats region_stats() {
    caf::scoped_actor self{node_.get().system()};
    entity::region_stats out;
    self
      ->request(node_.get().region(), std::chrono::seconds(10),
                stats_atom::value)
      .receive([&](entity::region_stats& s) { out = s; },
               [&](caf::error& err) {
                 throw std::runtime_error("region stats: "
                                          + node_.get().system().render(err));
               });
    return out;
  }

  template <class Pred>
  void wait_for(Pred pred, const std::string& what) {
    auto deadline = clock_type::now() + std::chrono::seconds(30);
    while (!pred()) {
      if (clock_type::now() > deadline)
        throw std::runtime_error("timed out waiting for " + what);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

  /// Appends ShoutPosted events seq_nr first..last to `s` in one
  /// transaction, made by the real domain from the user's current state.
  void bulk_insert(subject& s, int64_t first, int64_t last) {
    auto pid = "user|" + s.user_id;
    pqxx::connection conn{db_.url()};
    pqxx::work tx{conn};
    user::user_state state;
    for (const auto& row :
         tx.exec_params("SELECT event_type, event_version, payload FROM events"
                        " WHERE persistence_id = $1 ORDER BY seq_nr",
                        pid)) {
      auto e = user::decode_event(row[0].as<std::string>(), row[1].as<int>(),
                                  pqxx::binarystring{row[2]}.str());
      if (!e)
        throw std::runtime_error("cannot decode the registration of " + pid);
      state = user::evolve(std::move(state), *e);
    }
    user::user_environment env;
    env.clk = &clock_;
    env.ids = &ids_;
    std::vector<std::string> pids, types, payloads, cids, claim_ns, claim_keys,
      claim_owners;
    std::vector<int64_t> seqs, versions;
    for (auto seq = first; seq <= last; ++seq) {
      auto cid = "bulk-" + std::to_string(seq);
      auto eff = user::decide(
        state, post_shout(cid, s.user_id, shout_text(seq)), {}, env);
      if (eff.rejected() || eff.events.size() != 1)
        throw std::runtime_error("decide did not post a shout");
      auto enc = user::encode_event(eff.events.front());
      state = user::evolve(std::move(state), eff.events.front());
      pids.push_back(pid);
      seqs.push_back(seq);
      types.push_back(enc.type);
      versions.push_back(enc.version);
      payloads.push_back(enc.payload);
      cids.push_back(cid);
      for (auto& c : eff.claims) {
        claim_ns.push_back(c.ns);
        claim_keys.push_back(c.key);
        claim_owners.push_back(c.owner);
      }
      s.last_command_id = cid;
      s.last_text = shout_text(seq);
    }
    // The journal's INSERT (actors/journal/pg_journal.cpp), one statement.
    tx.exec_params(
      "INSERT INTO events (persistence_id, seq_nr, event_type, event_version,"
      "                    payload, command_id, correlation_id, causation_id,"
      "                    node_id)"
      " SELECT u.*, u.cid, u.cid, 'node-0'"
      "   FROM unnest($1::text[], $2::bigint[], $3::text[], $4::int[],"
      "               $5::bytea[], $6::text[]) AS u(pid, seq, typ, ver, pay,"
      "                                              cid)",
      journal::text_array(pids), journal::int_array(seqs),
      journal::text_array(types), journal::int_array(versions),
      journal::bytea_array(payloads), journal::text_array(cids));
    tx.exec_params("INSERT INTO claims (namespace, key, owner_id)"
                   " SELECT * FROM unnest($1::text[], $2::text[], $3::text[])",
                   journal::text_array(claim_ns),
                   journal::text_array(claim_keys),
                   journal::text_array(claim_owners));
    tx.commit();
  }

  test_database db_;
  test_node node_;
  system_clock clock_;
  /// Node id 1: the in-process node generates its shout ids as node 0.
  snowflake_generator ids_{clock_, 1};
  subject snap_;
  subject full_;
};

environment* env = nullptr;

void cold_recovery(benchmark::State& state, const subject* s,
                   const std::string& name) {
  auto& node = env->node();
  auto probe = post_shout(s->last_command_id, s->user_id, s->last_text);
  double entity_seconds = 0;
  double entity_count = 0;
  for (auto _ : state) {
    env->passivate_all();
    auto [sum0, n0] = env->recovery_histogram();
    auto t0 = clock_type::now();
    auto reply = node.send(probe, std::chrono::seconds(30));
    auto ms = ms_since(t0);
    if (!reply.has_result() || !reply.result().duplicate()
        || reply.result().seq_nr() != history_length) {
      state.SkipWithError(("unexpected reply: " + reply.DebugString()).c_str());
      break;
    }
    auto [sum1, n1] = env->recovery_histogram();
    entity_seconds += sum1 - sum0;
    entity_count += n1 - n0;
    state.SetIterationTime(ms / 1000.0);
    samples[name].push_back(ms);
    samples[name + "/entity"].push_back((sum1 - sum0) * 1000.0);
  }
  if (entity_count > 0)
    state.counters["entity_ms"] = entity_seconds / entity_count * 1000.0;
}

void store_recover(benchmark::State& state, const subject* s,
                   const std::string& name) {
  std::size_t rows = 0;
  for (auto _ : state) {
    auto t0 = clock_type::now();
    auto data = env->load(s->user_id);
    auto ms = ms_since(t0);
    rows = data.events.size();
    state.SetIterationTime(ms / 1000.0);
    samples[name].push_back(ms);
  }
  state.counters["events"] = static_cast<double>(rows);
}

void pure_fold(benchmark::State& state, const subject* s,
               const std::string& name) {
  auto data = env->load(s->user_id);
  // The fold of persistent_entity::apply_recovery, without the actor.
  auto fold = [&](user::user_state& st) -> const char* {
    if (data.snapshot.seq_nr > 0) {
      v1::EntitySnapshot snap;
      if (!snap.ParseFromString(data.snapshot.payload))
        return "snapshot does not decode";
      auto decoded = user::decode_state(snap.state());
      if (!decoded)
        return "snapshot state does not decode";
      st = std::move(*decoded);
    }
    for (auto& r : data.events) {
      auto e = user::decode_event(r.type, r.version, r.payload);
      if (!e)
        return "event does not decode";
      st = user::evolve(std::move(st), *e);
    }
    return nullptr;
  };
  for (auto _ : state) {
    auto t0 = clock_type::now();
    user::user_state st;
    if (auto* problem = fold(st)) {
      state.SkipWithError(problem);
      break;
    }
    benchmark::DoNotOptimize(st);
    auto ms = ms_since(t0);
    state.SetIterationTime(ms / 1000.0);
    samples[name].push_back(ms);
  }
  state.counters["events"] = static_cast<double>(data.events.size());
}

/// The q-quantile (nearest rank) of `v`, in ms, through the bench histogram
/// that every benchmark's percentiles come from; 0 for no samples.
double quantile(const std::vector<double>& v, double q) {
  bench::histogram h;
  for (double ms : v)
    h.record(static_cast<int64_t>(ms * 1e6));
  return static_cast<double>(h.percentile(q)) / 1e6;
}

} // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv))
    return 2;
  try {
    env = new environment();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "recovery_bench: setup failed: %s\n", e.what());
    return 1;
  }
  struct spec {
    const char* name;
    void (*fn)(benchmark::State&, const subject*, const std::string&);
    const subject* s;
  };
  std::vector<spec> specs = {
    {"cold_recovery/snapshot", cold_recovery, &env->snap()},
    {"cold_recovery/full_replay", cold_recovery, &env->full()},
    {"store_recover/snapshot", store_recover, &env->snap()},
    {"store_recover/full_replay", store_recover, &env->full()},
    {"pure_fold/snapshot", pure_fold, &env->snap()},
    {"pure_fold/full_replay", pure_fold, &env->full()},
  };
  for (auto& sp : specs) {
    std::string name = sp.name;
    benchmark::RegisterBenchmark(
      sp.name,
      [fn = sp.fn, s = sp.s, name](benchmark::State& st) { fn(st, s, name); })
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  for (auto& [name, v] : samples) {
    auto key = name;
    std::replace(key.begin(), key.end(), '/', '_');
    std::printf("RESULT bench=%s median_ms=%.3f p90_ms=%.3f max_ms=%.3f "
                "samples=%zu\n",
                key.c_str(), quantile(v, 0.5), quantile(v, 0.9),
                quantile(v, 1.0), v.size());
  }
  delete env;
  return 0;
}
