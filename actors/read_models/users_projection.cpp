#include "actors/read_models/users_projection.hpp"

#include <map>
#include <set>

#include "actors/common/log.hpp"
#include "actors/journal/pg_session.hpp"
#include "actors/read_models/decoding.hpp"

namespace shoutflow::read_models {

namespace {

using journal::int_array;
using journal::text_array;
using projection::change;
using projection::exec_prepared_sql;
using projection::expand_ddl;
using projection::keyed_event;
using projection::raw_event;

constexpr const char* users_ddl = R"sql(
CREATE TABLE rm_users{g} (
  user_id         text PRIMARY KEY,
  handle          text NOT NULL,
  display_name    text NOT NULL,
  avatar_hash     text NOT NULL,
  bio             text NOT NULL,
  created_at      timestamptz,
  shout_count     bigint NOT NULL,
  follower_count  bigint NOT NULL,
  following_count bigint NOT NULL,
  likes_given     bigint NOT NULL,
  likes_received  bigint NOT NULL,
  last_login_at   timestamptz,
  -- seq_nr of the last event of this user's own stream applied
  source_seq      bigint NOT NULL,
  -- global position of the last event that changed this document
  position        bigint NOT NULL,
  search          tsvector GENERATED ALWAYS AS (
    to_tsvector('simple', handle || ' ' || display_name || ' ' || bio)) STORED
);
CREATE TABLE rm_logins{g} (
  user_id    text        NOT NULL,
  position   bigint      NOT NULL,
  at         timestamptz NOT NULL,
  success    boolean     NOT NULL,
  client_ip  text        NOT NULL,
  user_agent text        NOT NULL,
  PRIMARY KEY (user_id, position)
);
)sql";

// Milliseconds <-> timestamptz exactly (no floating point on the way).
constexpr const char* load_sql = R"sql(
SELECT user_id, handle, display_name, avatar_hash, bio,
       coalesce((extract(epoch FROM created_at) * 1000)::bigint, 0),
       shout_count, follower_count, following_count, likes_given,
       likes_received,
       coalesce((extract(epoch FROM last_login_at) * 1000)::bigint, 0),
       source_seq, position
  FROM rm_users{g} WHERE user_id = ANY($1::text[])
)sql";

constexpr const char* store_sql = R"sql(
INSERT INTO rm_users{g} AS r (user_id, handle, display_name, avatar_hash, bio,
  created_at, shout_count, follower_count, following_count, likes_given,
  likes_received, last_login_at, source_seq, position)
SELECT id, h, d, a, b,
       CASE WHEN c = 0 THEN NULL
            ELSE 'epoch'::timestamptz + c * interval '1 millisecond' END,
       sc, fr, fg, lg, lr,
       CASE WHEN ll = 0 THEN NULL
            ELSE 'epoch'::timestamptz + ll * interval '1 millisecond' END,
       sq, ps
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
              $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[],
              $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[],
              $14::bigint[])
    AS u(id, h, d, a, b, c, sc, fr, fg, lg, lr, ll, sq, ps)
ON CONFLICT (user_id) DO UPDATE SET
  handle = excluded.handle, display_name = excluded.display_name,
  avatar_hash = excluded.avatar_hash, bio = excluded.bio,
  created_at = excluded.created_at, shout_count = excluded.shout_count,
  follower_count = excluded.follower_count,
  following_count = excluded.following_count,
  likes_given = excluded.likes_given, likes_received = excluded.likes_received,
  last_login_at = excluded.last_login_at, source_seq = excluded.source_seq,
  position = excluded.position
)sql";

constexpr const char* logins_sql = R"sql(
INSERT INTO rm_logins{g} (user_id, position, at, success, client_ip,
                          user_agent)
SELECT id, ps, 'epoch'::timestamptz + at * interval '1 millisecond', ok, ip, ua
  FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::boolean[],
              $5::text[], $6::text[]) AS u(id, ps, at, ok, ip, ua)
ON CONFLICT DO NOTHING
)sql";

struct user_doc {
  bool exists = false;
  std::string handle, display_name, avatar_hash, bio;
  int64_t created_at_ms = 0;
  int64_t shout_count = 0, follower_count = 0, following_count = 0;
  int64_t likes_given = 0, likes_received = 0;
  int64_t last_login_ms = 0;
  int64_t source_seq = 0, position = 0;
};

struct login_row {
  std::string user_id;
  int64_t position, at_ms;
  bool success;
  std::string client_ip, user_agent;
};

} // namespace

users_projection::users_projection(prometheus::Counter* violations)
  : violations_(violations) {
}

std::vector<std::string> users_projection::tables() const {
  return {"rm_users", "rm_logins"};
}

std::string users_projection::ddl() const {
  return users_ddl;
}

std::string users_projection::query_indexes() const {
  // SearchUsers only. A GIN insert per row version is the dearest write of
  // a users batch, and a replay rewrites each document many times.
  return "CREATE INDEX IF NOT EXISTS rm_users{g}_search"
         " ON rm_users{g} USING gin (search);";
}

std::vector<std::string> users_projection::keys(const raw_event& raw) const {
  auto e = decode_or_throw(raw);
  auto owner = projection::stream_owner(raw.persistence_id);
  auto pair = [&](const std::string& other) {
    return other == owner ? std::vector<std::string>{owner}
                          : std::vector<std::string>{owner, other};
  };
  switch (e.event_case()) {
    case v1::UserEvent::kUserFollowed:
      return pair(e.user_followed().target_user_id());
    case v1::UserEvent::kUserUnfollowed:
      return pair(e.user_unfollowed().target_user_id());
    case v1::UserEvent::kShoutLiked:
      return pair(e.shout_liked().author_id());
    case v1::UserEvent::kShoutUnliked:
      return pair(e.shout_unliked().author_id());
    default:
      return {owner};
  }
}

void users_projection::apply(pqxx::transaction_base& tx,
                             const std::string& suffix,
                             const std::vector<keyed_event>& events,
                             std::vector<change>* changes) const {
  // Load every document the batch touches, apply in memory, store back.
  std::set<std::string> wanted;
  for (auto& k : events)
    wanted.insert(k.key);
  std::map<std::string, user_doc> docs;
  std::string id;
  for (const auto& row :
       exec_prepared_sql(tx, expand_ddl(load_sql, suffix),
                         text_array({wanted.begin(), wanted.end()}))) {
    journal::row_reader c{row};
    c.text(&id);
    auto& d = docs[id];
    d.exists = true;
    c.text(&d.handle);
    c.text(&d.display_name);
    c.text(&d.avatar_hash);
    c.text(&d.bio);
    d.created_at_ms = c.int64();
    d.shout_count = c.int64();
    d.follower_count = c.int64();
    d.following_count = c.int64();
    d.likes_given = c.int64();
    d.likes_received = c.int64();
    d.last_login_ms = c.int64();
    d.source_seq = c.int64();
    d.position = c.int64();
  }
  std::set<std::string> dirty;
  std::vector<login_row> logins;
  for (auto& k : events) {
    auto& raw = *k.event;
    auto e = decode_or_throw(raw);
    auto& d = docs[k.key];
    if (!d.exists && !e.has_user_registered())
      throw std::runtime_error("no user document for '" + k.key + "' ("
                               + raw.type + " at position "
                               + std::to_string(raw.at.position) + ")");
    if (projection::stream_owner(raw.persistence_id) == k.key) {
      if (raw.seq_nr != d.source_seq + 1) {
        log_error("users-projection",
                  "seq_nr continuity violated for " + raw.persistence_id
                    + ": applied " + std::to_string(d.source_seq) + ", now got "
                    + std::to_string(raw.seq_nr));
        if (violations_ != nullptr)
          violations_->Increment();
      }
      d.source_seq = raw.seq_nr;
    }
    auto delta = [](int64_t& counter, int64_t by) { counter += by; };
    switch (e.event_case()) {
      case v1::UserEvent::kUserRegistered: {
        auto& r = e.user_registered();
        d.exists = true;
        d.handle = r.handle();
        d.display_name = r.display_name();
        d.avatar_hash = r.avatar_hash();
        d.created_at_ms = millis(r.registered_at());
        break;
      }
      case v1::UserEvent::kProfileUpdated: {
        auto& r = e.profile_updated();
        if (r.has_display_name())
          d.display_name = r.display_name();
        if (r.has_avatar_hash())
          d.avatar_hash = r.avatar_hash();
        if (r.has_bio())
          d.bio = r.bio();
        break;
      }
      case v1::UserEvent::kUserFollowed:
        delta(k.key == e.user_followed().user_id() ? d.following_count
                                                   : d.follower_count,
              +1);
        break;
      case v1::UserEvent::kUserUnfollowed:
        delta(k.key == e.user_unfollowed().user_id() ? d.following_count
                                                     : d.follower_count,
              -1);
        break;
      case v1::UserEvent::kShoutPosted:
        delta(d.shout_count, +1);
        break;
      case v1::UserEvent::kShoutDeleted:
        delta(d.shout_count, -1);
        break;
      case v1::UserEvent::kShoutLiked:
        if (k.key == e.shout_liked().user_id())
          delta(d.likes_given, +1);
        if (k.key == e.shout_liked().author_id())
          delta(d.likes_received, +1);
        break;
      case v1::UserEvent::kShoutUnliked:
        if (k.key == e.shout_unliked().user_id())
          delta(d.likes_given, -1);
        if (k.key == e.shout_unliked().author_id())
          delta(d.likes_received, -1);
        break;
      case v1::UserEvent::kUserLoggedIn: {
        auto& r = e.user_logged_in();
        d.last_login_ms = millis(r.logged_in_at());
        logins.push_back({k.key, raw.at.position, d.last_login_ms, true,
                          r.client_ip(), r.user_agent()});
        break;
      }
      case v1::UserEvent::kLoginFailed: {
        auto& r = e.login_failed();
        logins.push_back({k.key, raw.at.position, millis(r.failed_at()), false,
                          r.client_ip(), r.user_agent()});
        break;
      }
      case v1::UserEvent::EVENT_NOT_SET:
        throw std::runtime_error("empty event at position "
                                 + std::to_string(raw.at.position));
    }
    d.position = raw.at.position;
    dirty.insert(k.key);
    if (changes != nullptr)
      changes->push_back({change::user, k.key, {}, raw.at.position, raw.at.tx});
  }
  if (!dirty.empty()) {
    std::vector<std::string> ids, handles, names, avatars, bios;
    std::vector<int64_t> created, shouts, followers, following, given, received,
      last_login, seqs, positions;
    for (auto& id : dirty) {
      auto& d = docs[id];
      ids.push_back(id);
      handles.push_back(d.handle);
      names.push_back(d.display_name);
      avatars.push_back(d.avatar_hash);
      bios.push_back(d.bio);
      created.push_back(d.created_at_ms);
      shouts.push_back(d.shout_count);
      followers.push_back(d.follower_count);
      following.push_back(d.following_count);
      given.push_back(d.likes_given);
      received.push_back(d.likes_received);
      last_login.push_back(d.last_login_ms);
      seqs.push_back(d.source_seq);
      positions.push_back(d.position);
    }
    exec_prepared_sql(tx, expand_ddl(store_sql, suffix), text_array(ids),
                      text_array(handles), text_array(names),
                      text_array(avatars), text_array(bios), int_array(created),
                      int_array(shouts), int_array(followers),
                      int_array(following), int_array(given),
                      int_array(received), int_array(last_login),
                      int_array(seqs), int_array(positions));
  }
  if (!logins.empty()) {
    std::vector<std::string> ids, ips, agents;
    std::vector<int64_t> positions, ats;
    std::vector<bool> oks;
    for (auto& l : logins) {
      ids.push_back(l.user_id);
      positions.push_back(l.position);
      ats.push_back(l.at_ms);
      oks.push_back(l.success);
      ips.push_back(l.client_ip);
      agents.push_back(l.user_agent);
    }
    exec_prepared_sql(tx, expand_ddl(logins_sql, suffix), text_array(ids),
                      int_array(positions), int_array(ats),
                      journal::bool_array(oks), text_array(ips),
                      text_array(agents));
  }
}

} // namespace shoutflow::read_models
