#pragma once

// The "shouts" projection: one document per shout (text, author, time, like
// and reply counts, parent, deleted flag). Keyed by shout id; a reply also
// keys its parent (reply count), and so does a reply's deletion. The
// author's current handle, display name and avatar are joined from the users
// read model when a shout is read, so profile changes reach every shout at
// once.
//
// Table (one generation): rm_shouts{g}.

#include "actors/projection/projection.hpp"

namespace shoutflow::read_models {

class shouts_projection final : public projection::read_model {
public:
  std::string name() const override {
    return "shouts";
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
};

} // namespace shoutflow::read_models
