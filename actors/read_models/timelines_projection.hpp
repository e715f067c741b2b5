#pragma once

// The "timelines" projection: the follow graph, each author's shouts, and
// home timelines by fan-out on write. Keyed by the AUTHOR (the followed
// user): a follow F→X, X's posts and X's deletions all change rows of the
// pairs (·, X) only, and all of them are applied by X's partition in log
// order — so "F followed, then X posted, then F unfollowed" can never be
// replayed in another order, however many partitions run.
//
//   * X posts S: S joins X's own home; if X has fewer followers than the
//     celebrity threshold, S is fanned out to every follower's home now,
//     otherwise it is marked not fanned out and merged in at read time.
//   * F follows X: X's latest fanned-out shouts (up to the cap) enter F's
//     home; X's not fanned-out shouts are merged at read time.
//   * F unfollows X / X deletes S: the entries leave the homes.
//
// A home timeline as read is: rows of rm_home{g} for the owner, plus the
// not-fanned-out shouts of the authors the owner follows, newest first,
// without deleted shouts, the newest `cap` only. Whether a shout was fanned
// out is decided once, at its position in the log, so a rebuild decides the
// same, and timelines equal pure fan-out on both sides of the threshold.
//
// Tables (one generation): rm_followers{g}, rm_authors{g},
// rm_author_shouts{g}, rm_home{g}.

#include <cstdint>

#include "actors/projection/projection.hpp"

namespace shoutflow::read_models {

struct timeline_config {
  /// Authors with at least this many followers are not fanned out.
  int64_t celebrity_threshold = 10000;
  /// Entries a home timeline shows at most (also the follow backfill).
  int64_t cap = 800;
};

class timelines_projection final : public projection::read_model {
public:
  explicit timelines_projection(timeline_config cfg) : cfg_(cfg) {
  }

  std::string name() const override {
    return "timelines";
  }
  std::vector<std::string> tables() const override;
  std::string ddl() const override;
  std::string query_indexes() const override;
  std::string build_ddl() const override;
  std::string completion_sql() const override;
  std::vector<std::string> keys(const projection::raw_event& e) const override;
  void apply(pqxx::transaction_base& tx, const std::string& suffix,
             const std::vector<projection::keyed_event>& events,
             std::vector<projection::change>* changes) const override;

  const timeline_config& config() const {
    return cfg_;
  }

private:
  timeline_config cfg_;
};

} // namespace shoutflow::read_models
