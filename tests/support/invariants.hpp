#pragma once

// The invariant checker of the cluster scenarios: run after the load has
// stopped, over the database and the gRPC API. Each check returns
// human-readable violations, each naming its guarantee (empty = fine), so
// that a test asserts them and prints what broke.
//
//   G1/G4 (journal)  every acknowledged command is in `events` exactly once
//                    (stream 'user|<user_id>', its command_id) with the
//                    acknowledged seq_nr and global_position of its last
//                    event (and the acknowledged shout_id), or — for an
//                    accepted no-op — in `noop_commands` with that reply; a
//                    rejected command left nothing; no event or no-op names
//                    a command_id nobody sent. The checker assumes that a
//                    command appends at most one event (true of every user
//                    command): two events of one command_id are a double
//                    apply.
//   G2 (journal)     per stream, seq_nr is exactly 1..n and global_position
//                    grows with it; every event with a lease_epoch was
//                    written by the node that lease_history says held that
//                    epoch of the user's shard (FNV-1a 64 of the user id
//                    modulo the `shards` setting); per user, lease_epoch
//                    never decreases; one writer per (user, epoch).
//   G4 (resend)      resending each acknowledged command with its
//                    command_id answers duplicate = true and the first
//                    result. Commands that failed for good (outcome
//                    unknown) are resent too, until each has an outcome;
//                    then the journal check runs again over the outcomes.
//   G3 (projections) once the read models have reached the journal's head
//                    (a QueryService read with min_position = head), every
//                    live projection is rebuilt point-in-time up to the
//                    head (AdminService RebuildProjection, until_position)
//                    and each table of the live generation equals the
//                    built generation's, row for row (EXCEPT ALL both ways
//                    over whole rows); no dead letters.
//   Watch            a QueryService Watch of one user whom only the test
//                    changes (a steady UpdateProfile with bio "watch
//                    <command_id>") delivers, after its initial document,
//                    exactly the user's later log positions: strictly
//                    increasing, no duplicates, no gaps, up to the last
//                    one, each with a document at least that new.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "tests/support/cluster_harness.hpp"
#include "tests/support/test_db.hpp"

namespace grpc {
class ClientContext;
} // namespace grpc

namespace shoutflow::testing {

using violations = std::vector<std::string>;

/// FNV-1a 64, restated from the contract (not taken from the product) so
/// that a change of the product's hash shows up as a G2 violation.
uint64_t fnv1a64(std::string_view s);

// -- G1, G2: the journal ------------------------------------------------------

struct journal_check_options {
  /// Every event must carry a lease_epoch (a cluster node always writes
  /// under a shard lease).
  bool require_lease_epoch = false;
};

violations check_journal(const std::string& db_url,
                         const std::vector<command_record>& records,
                         const journal_check_options& options = {});

// -- G4: resending ------------------------------------------------------------

/// Resends every acknowledged command (same bytes) through `client`.
violations check_resend(command_client& client,
                        const std::vector<command_record>& records,
                        uint64_t seed, int threads = 4);

/// Resends every command that failed for good until it has an outcome and
/// replaces its record's outcome with it; a command still without one is
/// a violation.
violations resolve_in_doubt(command_client& client,
                            std::vector<command_record>& records,
                            uint64_t seed);

/// Rejections no correct node gives this load (anything but NOT_FOUND,
/// ALREADY_EXISTS, FAILED_PRECONDITION, PERMISSION_DENIED): G5.
violations unexpected_rejections(const std::vector<command_record>& records);

// -- G3: projections ----------------------------------------------------------

struct projection_check_options {
  std::string db_url;
  target_source query_targets;
  target_source admin_targets;
  /// For catching up, and again for the point-in-time builds.
  std::chrono::milliseconds timeout{std::chrono::seconds(120)};
};

/// The tables of each projection (projection_consistency_test's map):
/// a projection the checker does not know is itself a violation, so a new
/// read model cannot slip past the comparison.
const std::vector<std::string>* tables_of_projection(const std::string& name);

violations check_projections(const projection_check_options& options);

// -- Watch --------------------------------------------------------------------

struct watch_change {
  int64_t position = 0;
  std::string user_id;
  std::string bio;
  /// The message carried a user document.
  bool is_user = false;
};

/// One Watch stream from its open to its end.
struct watch_segment {
  std::string target;
  /// The first message: the current document (position 0).
  bool has_initial = false;
  std::string initial_user_id;
  std::string initial_bio;
  std::vector<watch_change> changes;
  bool ended = false;
  /// Ended before the probe was stopped (the node went away, or an error).
  bool ended_early = false;
  std::string end_status;
};

/// One event of the watched user's stream.
struct subject_event {
  int64_t seq_nr = 0;
  int64_t position = 0;
  std::string command_id;
};

/// The Watch checks as a pure function: `journal` is the watched user's
/// stream (registration first), `acknowledged` the positions the test's
/// own commands for that user were acknowledged at. With `single_segment`
/// the stream must have lived from start to stop and delivered exactly the
/// journal's positions after its initial document.
violations check_watch_segments(const std::string& user_id,
                                const std::vector<watch_segment>& segments,
                                const std::vector<subject_event>& journal,
                                const std::vector<int64_t>& acknowledged,
                                bool single_segment);

struct watch_options {
  std::string db_url;
  std::string user_id = "watched";
  std::string handle = "watched";
  /// Between two of the test's UpdateProfile commands.
  std::chrono::milliseconds interval{100};
  /// Reopen the stream on another query node when it ends (every node is
  /// restarted in the scenario); off: the stream must live until stop().
  bool follow_restarts = false;
  uint64_t seed = 1;
};

/// Watches one user that only the test changes. start(): registers the
/// user through `client` (so the command is recorded with the load),
/// waits until the read model has it, opens the stream, waits for the
/// initial document, then sends an UpdateProfile every `interval`.
/// stop(): stops the updates, waits until the stream has delivered the
/// user's last log position, cancels it.
class watch_probe {
public:
  watch_probe(command_client& client, target_source query_targets,
              watch_options options);
  ~watch_probe();

  watch_probe(const watch_probe&) = delete;
  watch_probe& operator=(const watch_probe&) = delete;

  ::testing::AssertionResult start();
  ::testing::AssertionResult
  stop(std::chrono::milliseconds within = std::chrono::seconds(30));

  /// The Watch checks against the journal and `records` (the acks of the
  /// probe's own commands are among them).
  violations check(const std::vector<command_record>& records) const;

  std::vector<watch_segment> segments() const;
  int64_t updates_acknowledged() const {
    return acknowledged_;
  }
  const std::string& user_id() const {
    return options_.user_id;
  }

private:
  void read_loop();
  void write_loop();
  /// The watched user's stream as the journal holds it now.
  std::vector<subject_event> subject_journal() const;
  bool delivered_up_to(const subject_event& last) const;
  /// The latest stream has ended (and, without follow_restarts, no other
  /// will be opened).
  bool stream_over() const;

  command_client& client_;
  target_source targets_;
  watch_options options_;
  mutable std::mutex mtx_;
  std::vector<watch_segment> segments_;
  std::shared_ptr<grpc::ClientContext> open_call_;
  std::atomic<bool> stop_reading_{false};
  std::atomic<bool> stop_writing_{false};
  std::atomic<int64_t> acknowledged_{0};
  std::thread reader_;
  std::thread writer_;
};

// -- everything ---------------------------------------------------------------

struct verify_options {
  std::string db_url;
  target_source command_targets;
  target_source query_targets;
  target_source admin_targets;
  retry_policy retry;
  uint64_t seed = 1;
  journal_check_options journal;
  bool projections = true;
  std::chrono::milliseconds projection_timeout{std::chrono::seconds(120)};
};

/// Each check's violations, in the order they run.
struct verify_report {
  violations journal;              // G1, G2 over what the load left
  violations watch;                // the Watch probe (if any)
  violations resend;               // G4 for the acknowledged commands
  violations in_doubt;             // resolving the failed-for-good commands
  violations journal_after_resend; // G1, G2 again, new findings only
  violations rejections;           // G5: unexpected status codes
  violations projections;          // G3
  std::string summary;
};

/// Runs every check in order. `probe` may be null.
verify_report verify_cluster(const verify_options& options,
                             std::vector<command_record> records,
                             const watch_probe* probe);

// -- the scenario fixture -----------------------------------------------------

/// Base of the tests in tests/cluster/: a fresh database, a cluster, the
/// load, the Watch probe, and the checker at the end. Prints the seed;
/// on failure the harness prints every node's log.
class cluster_scenario : public ::testing::Test {
protected:
  void SetUp() override;
  void TearDown() override;

  /// Starts `nodes` nodes on a fresh test_database (or `db_url`), waits
  /// until each is ready and the cluster has settled, and registers the
  /// load's users.
  void start_cluster(int nodes,
                     const std::function<void(cluster_options&)>& tweak = {},
                     const std::string& db_url = "");
  void start_load(const std::function<void(load_options&)>& tweak = {});
  /// Watches from node `node` (which the scenario must not kill), or, with
  /// -1, from any node, reopening the stream when its node goes away.
  void start_watch(int node);
  /// Waits until the load has `more` acknowledgements beyond now (five
  /// times as many, and as long, with SHOUTFLOW_SOAK=1).
  void expect_progress(int64_t more, std::chrono::milliseconds within
                                     = std::chrono::seconds(20));
  /// (Re)starts node i and waits until it is ready.
  void restart(int i);
  /// Stops the load and the probe, runs verify_cluster and asserts that
  /// every check holds; asserts no node exited unasked.
  void finish_and_verify();

  /// A random element (seeded: replays with SHOUTFLOW_SEED).
  int pick(const std::vector<int>& from);

  /// The opening of the fault scenarios: `nodes` nodes (cluster flags on
  /// or off), the load, a Watch probe on a random node that the scenario
  /// must spare (with one node: any node, -1), and first progress. Fills
  /// `all` with the node indices and `watch_node`.
  void start_watched_load(int nodes, bool cluster_flags, std::vector<int>* all,
                          int* watch_node);

  uint64_t seed_ = 0;
  std::mt19937_64 rng_;
  std::unique_ptr<test_database> db_;
  std::string db_url_;
  std::unique_ptr<cluster_harness> cluster_;
  std::unique_ptr<load_driver> load_;
  std::unique_ptr<watch_probe> watch_;
};

} // namespace shoutflow::testing
