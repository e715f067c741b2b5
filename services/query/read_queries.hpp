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

#include <memory>
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

/// The QueryService method `name` (nullptr if there is none).
const google::protobuf::MethodDescriptor* query_method(const std::string& name);

/// A new, empty message of `method`'s request (`input`) or response type.
std::unique_ptr<google::protobuf::Message>
new_query_message(const google::protobuf::MethodDescriptor& method, bool input);

/// The read models a method reads (what `min_position` waits for).
std::vector<std::string> projections_read_by(const std::string& method);

/// The request's min_position (0 when it has none).
int64_t min_position_of(const google::protobuf::Message& request);

/// Prepares the statements below on a new connection.
void prepare_queries(pqxx::connection_base& conn);

/// Runs `method` on `request`, filling `response`: one statement (and, for
/// an empty page, one more to tell NOT_FOUND from empty), so any transaction
/// kind gives it a single snapshot.
query_rejection run_query(pqxx::transaction_base& tx, const std::string& method,
                          const google::protobuf::Message& request,
                          google::protobuf::Message& response,
                          const query_limits& limits);

/// Reads that one statement can answer for many requests at once (GetUser
/// and GetShout by key, GetTimeline a page per request): the query pool
/// coalesces those waiting together.
bool is_batched_read(const std::string& method);

/// Answers `requests` (all of `method`, a batched read) with one statement
/// (and, for empty pages, one more each to tell NOT_FOUND from empty),
/// filling `responses` (same order); one outcome per request.
std::vector<query_rejection>
run_batched_reads(pqxx::transaction_base& tx, const std::string& method,
                  const std::vector<const google::protobuf::Message*>& requests,
                  const std::vector<google::protobuf::Message*>& responses,
                  const query_limits& limits);

std::string encode_page_token(const std::string& key);
/// Nothing for a malformed token.
std::optional<std::string> decode_page_token(const std::string& token);

} // namespace shoutflow::services
