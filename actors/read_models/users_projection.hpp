#pragma once

// The "users" projection: one document per user (profile, counts of shouts,
// followers, following, likes given and received, last login), the login
// history, and the full-text search vector. Keyed by user id.
//
// Every event of a user's stream has that user among its keys, so the
// partition owning a user sees the whole stream in order: it checks the
// stream's seq_nr continuity (`source_seq`) and reports a violation loudly
// (log + metric), catching bugs a cursor alone cannot.
//
// Tables (one generation): rm_users{g}, rm_logins{g}.

#include <prometheus/counter.h>

#include "actors/projection/projection.hpp"

namespace shoutflow::read_models {

class users_projection final : public projection::read_model {
public:
  /// `continuity_violations` may be null.
  explicit users_projection(prometheus::Counter* continuity_violations);

  std::string name() const override {
    return "users";
  }
  std::vector<std::string> tables() const override;
  std::string ddl() const override;
  std::string query_indexes() const override;
  /// Documents are loaded and stored by id.
  bool finds_rows_by_key() const override {
    return true;
  }
  std::vector<std::string> keys(const projection::raw_event& e) const override;
  void apply(pqxx::transaction_base& tx, const std::string& suffix,
             const std::vector<projection::keyed_event>& events,
             std::vector<projection::change>* changes) const override;

private:
  prometheus::Counter* violations_;
};

} // namespace shoutflow::read_models
