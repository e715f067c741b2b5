#include "services/query/read_queries.hpp"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/time_util.h>

#include <cctype>
#include <cstdint>
#include <unordered_map>

#include "actors/entity/effect.hpp"
#include "actors/journal/pg_row.hpp"
#include "actors/journal/pg_session.hpp"
#include "actors/user/user_validation.hpp"

namespace shoutflow::services {

namespace {

using entity::make_rejection;
using google::protobuf::util::TimeUtil;

v1::Rejection invalid(const std::string& field, const std::string& why) {
  return make_rejection(v1::REJECTION_CODE_INVALID_ARGUMENT, field,
                        field + ": " + why);
}

v1::Rejection not_found(const std::string& field, const std::string& id) {
  return make_rejection(v1::REJECTION_CODE_NOT_FOUND, field,
                        field + ": no such "
                          + (field == "shout_id" ? "shout" : "user") + " '" + id
                          + "'");
}

// -- rows -> views ------------------------------------------------------------

constexpr const char* user_cols = R"sql(
  u.user_id, u.handle, u.display_name, u.avatar_hash, u.bio,
  coalesce((extract(epoch FROM u.created_at) * 1000)::bigint, 0),
  u.shout_count, u.follower_count, u.following_count, u.likes_given,
  u.likes_received,
  coalesce((extract(epoch FROM u.last_login_at) * 1000)::bigint, 0))sql";

constexpr const char* shout_cols = R"sql(
  s.shout_id, s.author_id, coalesce(u.handle, ''),
  coalesce(u.display_name, ''), coalesce(u.avatar_hash, ''), s.text,
  (extract(epoch FROM s.created_at) * 1000)::bigint, s.like_count,
  s.reply_count, s.reply_to_shout_id, s.deleted)sql";

void set_time(google::protobuf::Timestamp* t, int64_t ms) {
  *t = TimeUtil::MillisecondsToTimestamp(ms);
}

void to_user(journal::row_reader& c, v1::UserView* out) {
  c.text(out->mutable_user_id());
  c.text(out->mutable_handle());
  c.text(out->mutable_display_name());
  c.text(out->mutable_avatar_hash());
  c.text(out->mutable_bio());
  if (auto ms = c.int64(); ms > 0)
    set_time(out->mutable_created_at(), ms);
  out->set_shout_count(c.int64());
  out->set_follower_count(c.int64());
  out->set_following_count(c.int64());
  out->set_likes_given(c.int64());
  out->set_likes_received(c.int64());
  if (auto ms = c.int64(); ms > 0)
    set_time(out->mutable_last_login_at(), ms);
}

void to_user(const pqxx::row& r, v1::UserView* out) {
  journal::row_reader c{r};
  to_user(c, out);
}

/// `shout_cols`, from the reader's column on.
void to_shout(journal::row_reader& c, v1::ShoutView* out) {
  c.text(out->mutable_shout_id());
  c.text(out->mutable_author_id());
  c.text(out->mutable_author_handle());
  c.text(out->mutable_author_display_name());
  c.text(out->mutable_author_avatar_hash());
  c.text(out->mutable_text());
  set_time(out->mutable_created_at(), c.int64());
  out->set_like_count(c.int64());
  out->set_reply_count(c.int64());
  c.text(out->mutable_reply_to_shout_id());
  auto deleted = c.boolean();
  // A deleted shout keeps its place (and counts), never its text.
  if (deleted)
    out->clear_text();
  out->set_deleted(deleted);
}

void to_shout(const pqxx::row& r, v1::ShoutView* out) {
  journal::row_reader c{r};
  to_shout(c, out);
}

// -- request fields (every query request has some of these) -------------------

std::string str_field(const google::protobuf::Message& m, const char* name) {
  auto* f = m.GetDescriptor()->FindFieldByName(name);
  return f == nullptr ? std::string{} : m.GetReflection()->GetString(m, f);
}

int64_t int_field(const google::protobuf::Message& m, const char* name) {
  auto* f = m.GetDescriptor()->FindFieldByName(name);
  if (f == nullptr)
    return 0;
  if (f->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_INT32)
    return m.GetReflection()->GetInt32(m, f);
  return m.GetReflection()->GetInt64(m, f);
}

bool has_field(const google::protobuf::Message& m, const char* name) {
  return m.GetDescriptor()->FindFieldByName(name) != nullptr;
}

int32_t page_size(const google::protobuf::Message& m, const char* field,
                  const query_limits& limits) {
  auto n = static_cast<int32_t>(int_field(m, field));
  return n == 0 ? limits.default_page_size : n;
}

bool user_exists(pqxx::transaction_base& tx, const std::string& id) {
  return !tx.exec_prepared("q_user_exists", id).empty();
}

/// Search words: runs of letters, digits, '_' and any non-ASCII character
/// (the database's 'simple' configuration lowercases those), each a prefix
/// match, all required. ASCII punctuation separates words, so nothing of
/// the tsquery syntax gets through.
std::string search_expression(const std::string& query) {
  std::string out, word;
  auto flush = [&] {
    if (word.empty())
      return;
    if (!out.empty())
      out += " & ";
    out += word + ":*";
    word.clear();
  };
  for (auto c : query) {
    auto b = static_cast<unsigned char>(c);
    if (b >= 0x80)
      word += c;
    else if (std::isalnum(b) || c == '_')
      word += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    else
      flush();
  }
  flush();
  return out;
}

constexpr char b64[]
  = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

// -- the statements -----------------------------------------------------------
// Prepared once per connection (prepare_queries): a read is one round trip
// with a cached plan. Each read is a single statement, so it sees one
// snapshot without a transaction around it; the existence check that tells
// NOT_FOUND from an empty page runs only when the page is empty.

std::string select_users(const char* where) {
  return std::string{"SELECT "} + user_cols + " FROM rm_users u WHERE " + where;
}

std::string select_shouts(const char* where) {
  return std::string{"SELECT "} + shout_cols
         + " FROM rm_shouts s LEFT JOIN rm_users u ON u.user_id = s.author_id"
           " WHERE "
         + where;
}

/// Followers (`followers` true) or followed users of $1, the most recent
/// follows first, after the key ($2, $3) unless $2 is 0.
std::string select_follows(bool followers) {
  std::string mine = followers ? "author_id" : "follower_id";
  std::string theirs = followers ? "follower_id" : "author_id";
  return std::string{"SELECT "} + user_cols + ", f.position FROM rm_followers f"
         + " JOIN rm_users u ON u.user_id = f." + theirs + " WHERE f." + mine
         + " = $1 AND ($2 = 0 OR (f.position, f." + theirs + ") < ($2, $3))"
         + " ORDER BY f.position DESC, f." + theirs + " DESC LIMIT $4";
}

const std::vector<std::pair<const char*, std::string>>& statements() {
  static const std::vector<std::pair<const char*, std::string>> all{
    {"q_user_exists", "SELECT 1 FROM rm_users WHERE user_id = $1"},
    {"q_users", select_users("u.user_id = ANY($1::text[])")},
    {"q_shouts", select_shouts("s.shout_id = ANY($1::text[])")},
    // The pages of many GetTimelines at once: a row is a shout of the page
    // of request i (1-based, the first column); $1 the owners, $2 the page
    // keys ('' for a first page), $3 the page sizes, $4 the cap.
    //
    // A page is its owner's fanned-out entries plus the not-fanned-out
    // shouts of followed authors above the celebrity threshold, the newest
    // $4 of them; the page is the size newest after the key. The two sets
    // are disjoint (a home holds fanned-out shouts and its owner's own; an
    // owner does not follow itself), and each is taken newest first with
    // its own limit, so PostgreSQL merges two ordered streams and stops once
    // the page is full: a first page reads about a page of home entries
    // instead of the whole (untrimmed) home. On the bench log that took one
    // GetTimeline from ~4-8 ms to ~0.5 ms. Each followed author contributes
    // at most its newest $4 merged shouts (LATERAL): a follower of three
    // authors with 50,000 such shouts each read all 150,000 before (87 ms),
    // 2,400 now (2.6 ms). One statement for the waiting requests saves each
    // one's round trip and executor start-up: pgbench of 8 pages a statement
    // gave 1.4x the pages per second of one a statement (5 Dec).
    {"q_timelines", std::string{R"sql(
SELECT r.i, t.*
  FROM unnest($1::text[], $2::text[], $3::int[])
         WITH ORDINALITY AS r(owner_id, after, size, i)
 CROSS JOIN LATERAL (
  SELECT )sql"} + shout_cols
                      + R"sql(
    FROM (
      SELECT shout_id FROM (
        (SELECT shout_id FROM rm_home WHERE owner_id = r.owner_id
          ORDER BY shout_id DESC LIMIT $4)
        UNION ALL
        (SELECT m.shout_id FROM rm_followers f
           CROSS JOIN LATERAL (
             SELECT s.shout_id FROM rm_author_shouts s
              WHERE s.author_id = f.author_id AND NOT s.fanned_out
                AND NOT s.deleted
              ORDER BY s.shout_id DESC LIMIT $4) m
          WHERE f.follower_id = r.owner_id
          ORDER BY m.shout_id DESC LIMIT $4)
      ) e ORDER BY shout_id DESC LIMIT $4
    ) c JOIN rm_shouts s ON s.shout_id = c.shout_id
    LEFT JOIN rm_users u ON u.user_id = s.author_id
   WHERE NOT s.deleted AND (r.after = '' OR s.shout_id < r.after)
   ORDER BY s.shout_id DESC LIMIT r.size) t
 ORDER BY r.i, t.shout_id DESC)sql"},
    {"q_user_shouts", select_shouts("s.author_id = $1 AND NOT s.deleted"
                                    " AND ($2 = '' OR s.shout_id < $2)"
                                    " ORDER BY s.shout_id DESC LIMIT $3")},
    {"q_followers", select_follows(true)},
    {"q_following", select_follows(false)},
    {"q_logins", "SELECT (extract(epoch FROM at) * 1000)::bigint, success,"
                 "       client_ip, user_agent"
                 "  FROM rm_logins WHERE user_id = $1"
                 " ORDER BY position DESC LIMIT $2"},
    {"q_search", std::string{"SELECT "} + user_cols
                   + " FROM rm_users u, to_tsquery('simple', $1) q"
                     " WHERE u.search @@ q"
                     " ORDER BY ts_rank(u.search, q) DESC, u.user_id LIMIT $2"},
  };
  return all;
}

// -- the queries --------------------------------------------------------------

/// An empty page of `user_id`'s: NOT_FOUND if there is no such user.
query_rejection empty_page(pqxx::transaction_base& tx, std::size_t rows,
                           const std::string& user_id) {
  if (rows == 0 && !user_exists(tx, user_id))
    return not_found("user_id", user_id);
  return std::nullopt;
}

void shout_page(const pqxx::result& rows, int32_t size, v1::TimelinePage& out) {
  for (const auto& row : rows)
    to_shout(row, out.add_shouts());
  if (static_cast<int32_t>(rows.size()) == size)
    out.set_next_page_token(
      encode_page_token(out.shouts(out.shouts_size() - 1).shout_id()));
}

/// The pages of `requests` (GetTimelineRequests) in one statement.
std::vector<query_rejection>
get_timelines(pqxx::transaction_base& tx,
              const std::vector<const google::protobuf::Message*>& requests,
              const std::vector<google::protobuf::Message*>& responses,
              const query_limits& limits) {
  std::vector<std::string> owners, afters;
  std::vector<int64_t> sizes;
  for (const auto* m : requests) {
    auto& r = dynamic_cast<const v1::GetTimelineRequest&>(*m);
    owners.push_back(r.user_id());
    afters.push_back(decode_page_token(r.page_token()).value_or(""));
    sizes.push_back(page_size(r, "page_size", limits));
  }
  auto rows = tx.exec_prepared("q_timelines", journal::text_array(owners),
                               journal::text_array(afters),
                               journal::int_array(sizes), limits.timeline_cap);
  // A page is the rows of its request, in the statement's order.
  std::vector<std::size_t> counts(requests.size());
  for (const auto& row : rows) {
    journal::row_reader c{row};
    auto i = static_cast<std::size_t>(c.int64() - 1);
    auto& page = dynamic_cast<v1::TimelinePage&>(*responses.at(i));
    to_shout(c, page.add_shouts());
    ++counts[i];
  }
  std::vector<query_rejection> out(requests.size());
  for (std::size_t i = 0; i < requests.size(); ++i) {
    auto& page = dynamic_cast<v1::TimelinePage&>(*responses[i]);
    if (static_cast<int64_t>(counts[i]) == sizes[i])
      page.set_next_page_token(
        encode_page_token(page.shouts(page.shouts_size() - 1).shout_id()));
    out[i] = empty_page(tx, counts[i], owners[i]);
  }
  return out;
}

query_rejection
get_user_shouts(pqxx::transaction_base& tx, const v1::GetUserShoutsRequest& r,
                v1::TimelinePage& out, const query_limits& limits) {
  auto after = decode_page_token(r.page_token()).value_or("");
  auto size = page_size(r, "page_size", limits);
  auto rows = tx.exec_prepared("q_user_shouts", r.user_id(), after, size);
  shout_page(rows, size, out);
  return empty_page(tx, rows.size(), r.user_id());
}

query_rejection list_follows(pqxx::transaction_base& tx,
                             const std::string& user_id, int32_t size,
                             const std::string& token, bool followers,
                             v1::UserPage& out) {
  int64_t after_pos = 0;
  std::string after_id;
  if (auto key = decode_page_token(token); key && !key->empty()) {
    auto colon = key->find(':');
    after_pos = std::stoll(key->substr(0, colon));
    after_id = key->substr(colon + 1);
  }
  auto rows = tx.exec_prepared(followers ? "q_followers" : "q_following",
                               user_id, after_pos, after_id, size);
  for (const auto& row : rows)
    to_user(row, out.add_users());
  if (static_cast<int32_t>(rows.size()) == size) {
    auto& last = rows[rows.size() - 1];
    out.set_next_page_token(encode_page_token(last[12].as<std::string>() + ":"
                                              + last[0].as<std::string>()));
  }
  return empty_page(tx, rows.size(), user_id);
}

query_rejection get_login_history(pqxx::transaction_base& tx,
                                  const v1::GetLoginHistoryRequest& r,
                                  v1::LoginHistory& out,
                                  const query_limits& limits) {
  auto rows = tx.exec_prepared("q_logins", r.user_id(),
                               page_size(r, "limit", limits));
  for (const auto& row : rows) {
    auto* e = out.add_entries();
    set_time(e->mutable_at(), row[0].as<int64_t>());
    e->set_success(row[1].as<bool>());
    e->set_client_ip(row[2].as<std::string>());
    e->set_user_agent(row[3].as<std::string>());
  }
  return empty_page(tx, rows.size(), r.user_id());
}

query_rejection search_users(pqxx::transaction_base& tx,
                             const v1::SearchUsersRequest& r, v1::UserPage& out,
                             const query_limits& limits) {
  for (const auto& row :
       tx.exec_prepared("q_search", search_expression(r.query()),
                        page_size(r, "limit", limits)))
    to_user(row, out.add_users());
  return std::nullopt;
}

} // namespace

query_rejection validate_query(const std::string& method,
                               const google::protobuf::Message& m,
                               const query_limits& limits) {
  if (has_field(m, "user_id"))
    if (auto bad = user::check_user_id("user_id", str_field(m, "user_id")))
      return bad;
  if (has_field(m, "shout_id"))
    if (auto bad = user::check_shout_id("shout_id", str_field(m, "shout_id")))
      return bad;
  for (auto* field : {"page_size", "limit"})
    if (has_field(m, field)) {
      auto n = int_field(m, field);
      if (n < 0 || n > limits.max_page_size)
        return invalid(
          field, "must be between 1 and " + std::to_string(limits.max_page_size)
                   + " (0: " + std::to_string(limits.default_page_size) + ")");
    }
  if (has_field(m, "min_position") && int_field(m, "min_position") < 0)
    return invalid("min_position", "must not be negative");
  if (has_field(m, "page_token")) {
    auto token = str_field(m, "page_token");
    auto key = decode_page_token(token);
    if (!key)
      return invalid("page_token", "is not a token this service issued");
    bool follows = method == "ListFollowers" || method == "ListFollowing";
    if (!key->empty()) {
      bool ok = true;
      if (follows) {
        auto colon = key->find(':');
        ok = colon != std::string::npos && colon > 0 && colon < 19;
        for (std::size_t i = 0; ok && i < colon; ++i)
          ok = std::isdigit(static_cast<unsigned char>((*key)[i])) != 0;
        ok = ok && !user::check_user_id("x", key->substr(colon + 1));
      } else {
        ok = !user::check_shout_id("x", *key);
      }
      if (!ok)
        return invalid("page_token", "is not a token this service issued");
    }
  }
  if (method == "SearchUsers") {
    auto q = str_field(m, "query");
    if (q.size() > 100)
      return invalid("query", "must be at most 100 bytes");
    if (search_expression(q).empty())
      return invalid("query", "needs at least one word of letters or digits");
  }
  return std::nullopt;
}

const google::protobuf::MethodDescriptor*
query_method(const std::string& name) {
  return v1::UserView::descriptor()
    ->file()
    ->FindServiceByName("QueryService")
    ->FindMethodByName(name);
}

std::unique_ptr<google::protobuf::Message>
new_query_message(const google::protobuf::MethodDescriptor& method,
                  bool input) {
  return std::unique_ptr<google::protobuf::Message>(
    google::protobuf::MessageFactory::generated_factory()
      ->GetPrototype(input ? method.input_type() : method.output_type())
      ->New());
}

std::vector<std::string> projections_read_by(const std::string& method) {
  if (method == "GetUser" || method == "GetLoginHistory"
      || method == "SearchUsers")
    return {"users"};
  if (method == "GetShout" || method == "GetUserShouts")
    return {"shouts", "users"};
  if (method == "GetTimeline")
    return {"timelines", "shouts", "users"};
  if (method == "ListFollowers" || method == "ListFollowing")
    return {"timelines", "users"};
  return {};
}

int64_t min_position_of(const google::protobuf::Message& request) {
  return has_field(request, "min_position") ? int_field(request, "min_position")
                                            : 0;
}

void prepare_queries(pqxx::connection_base& conn) {
  for (const auto& [name, sql] : statements())
    conn.prepare(name, sql);
}

bool is_batched_read(const std::string& method) {
  return method == "GetUser" || method == "GetShout" || method == "GetTimeline";
}

std::vector<query_rejection>
run_batched_reads(pqxx::transaction_base& tx, const std::string& method,
                  const std::vector<const google::protobuf::Message*>& requests,
                  const std::vector<google::protobuf::Message*>& responses,
                  const query_limits& limits) {
  if (method == "GetTimeline")
    return get_timelines(tx, requests, responses, limits);
  bool users = method == "GetUser";
  const char* field = users ? "user_id" : "shout_id";
  std::vector<std::string> ids;
  ids.reserve(requests.size());
  for (const auto* r : requests)
    ids.push_back(str_field(*r, field));
  auto rows = tx.exec_prepared(users ? "q_users" : "q_shouts",
                               journal::text_array(ids));
  std::unordered_map<std::string, pqxx::result::size_type> row_of;
  for (pqxx::result::size_type i = 0; i < rows.size(); ++i)
    row_of.emplace(rows[i][0].as<std::string>(), i);
  std::vector<query_rejection> out(requests.size());
  for (std::size_t i = 0; i < requests.size(); ++i) {
    auto it = row_of.find(ids[i]);
    if (it == row_of.end())
      out[i] = not_found(field, ids[i]);
    else if (users)
      to_user(rows[it->second], dynamic_cast<v1::UserView*>(responses[i]));
    else
      to_shout(rows[it->second], dynamic_cast<v1::ShoutView*>(responses[i]));
  }
  return out;
}

query_rejection run_query(pqxx::transaction_base& tx, const std::string& method,
                          const google::protobuf::Message& request,
                          google::protobuf::Message& response,
                          const query_limits& limits) {
  auto& req = request;
  auto& out = response;
  if (is_batched_read(method))
    return run_batched_reads(tx, method, {&req}, {&out}, limits).front();
  if (method == "GetUserShouts")
    return get_user_shouts(tx,
                           dynamic_cast<const v1::GetUserShoutsRequest&>(req),
                           dynamic_cast<v1::TimelinePage&>(out), limits);
  if (method == "ListFollowers") {
    auto& r = dynamic_cast<const v1::ListFollowersRequest&>(req);
    return list_follows(tx, r.user_id(), page_size(r, "page_size", limits),
                        r.page_token(), true, dynamic_cast<v1::UserPage&>(out));
  }
  if (method == "ListFollowing") {
    auto& r = dynamic_cast<const v1::ListFollowingRequest&>(req);
    return list_follows(tx, r.user_id(), page_size(r, "page_size", limits),
                        r.page_token(), false,
                        dynamic_cast<v1::UserPage&>(out));
  }
  if (method == "GetLoginHistory")
    return get_login_history(
      tx, dynamic_cast<const v1::GetLoginHistoryRequest&>(req),
      dynamic_cast<v1::LoginHistory&>(out), limits);
  if (method == "SearchUsers")
    return search_users(tx, dynamic_cast<const v1::SearchUsersRequest&>(req),
                        dynamic_cast<v1::UserPage&>(out), limits);
  return make_rejection(v1::REJECTION_CODE_INVALID_ARGUMENT, "",
                        "unknown query " + method);
}

std::string encode_page_token(const std::string& key) {
  std::string out;
  // Unsigned: the accumulator keeps only its low bits that are still to
  // be written (at most 14), so its high bits may wrap (a signed shift
  // overflowed: undefined behaviour, caught by UBSan).
  uint32_t val = 0;
  int bits = -6;
  for (unsigned char c : key) {
    val = (val << 8) + c;
    bits += 8;
    while (bits >= 0) {
      out.push_back(b64[(val >> bits) & 0x3F]);
      bits -= 6;
    }
  }
  if (bits > -6)
    out.push_back(b64[((val << 8) >> (bits + 8)) & 0x3F]);
  return out;
}

std::optional<std::string> decode_page_token(const std::string& token) {
  if (token.size() > 200)
    return std::nullopt;
  std::string out;
  uint32_t val = 0; // as in encode_page_token
  int bits = -8;
  for (auto c : token) {
    auto* p = std::char_traits<char>::find(b64, 64, c);
    if (p == nullptr)
      return std::nullopt;
    val = (val << 6) + static_cast<uint32_t>(p - b64);
    bits += 6;
    if (bits >= 0) {
      out.push_back(static_cast<char>((val >> bits) & 0xFF));
      bits -= 8;
    }
  }
  return out;
}

} // namespace shoutflow::services
