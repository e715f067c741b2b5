#pragma once

// The QueryService's reads: SQL over the read-model views (rm_users,
// rm_shouts, rm_home, ...; see actors/read_models/) and the mapping of rows to
// v1 views. Pure database code: called on query-worker threads, never on
// the CAF scheduler; outcomes are values (a rejection names the field).
//
// Page tokens are opaque to clients: base64url of the last item's sort key
// (a shout id, or "position:user_id" for follow lists). The next page
// continues strictly after it, so pages stay stable while new items arrive.

#include <pqxx/pqxx>

#include <optional>
#include <string>
#include <vector>

#include "shoutflow/v1/entity.pb.h"
#include "shoutflow/v1/queries.pb.h"

namespace shoutflow::services {

struct query_limits {
  int32_t default_page_size = 20;
  int32_t max_page_size = 100;
  /// Entries a home timeline shows at most.
  int64_t timeline_cap = 800;
};

using query_rejection = std::optional<v1::Rejection>;

/// Validates a request before any waiting or reading; `method` is the RPC
/// name, `request` the parsed request.
query_rejection validate_query(const std::string& method,
                               const google::protobuf::Message& request,
                               const query_limits& limits);

/// The read models a method reads (what `min_position` waits for).
std::vector<std::string> projections_read_by(const std::string& method);

/// The request's min_position (0 when it has none).
int64_t min_position_of(const google::protobuf::Message& request);

/// Runs `method` on `request`, filling `response`.
query_rejection run_query(pqxx::transaction_base& tx, const std::string& method,
                          const google::protobuf::Message& request,
                          google::protobuf::Message& response,
                          const query_limits& limits);

std::string encode_page_token(const std::string& key);
/// Nothing for a malformed token.
std::optional<std::string> decode_page_token(const std::string& token);

} // namespace shoutflow::services
