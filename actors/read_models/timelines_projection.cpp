#include "actors/read_models/timelines_projection.hpp"

#include "actors/read_models/decoding.hpp"

namespace shoutflow::read_models {

namespace {

using projection::change;
using projection::expand_ddl;
using projection::keyed_event;
using projection::raw_event;

constexpr const char* timelines_ddl = R"sql(
CREATE TABLE rm_followers{g} (
  author_id   text   NOT NULL,
  follower_id text   NOT NULL,
  position    bigint NOT NULL,
  PRIMARY KEY (author_id, follower_id)
);
CREATE INDEX rm_followers{g}_by_author
  ON rm_followers{g} (author_id, position DESC, follower_id);
CREATE INDEX rm_followers{g}_by_follower
  ON rm_followers{g} (follower_id, position DESC, author_id);
CREATE TABLE rm_authors{g} (
  author_id      text PRIMARY KEY,
  follower_count bigint NOT NULL
);
CREATE TABLE rm_author_shouts{g} (
  author_id  text    NOT NULL,
  shout_id   text    NOT NULL,
  fanned_out boolean NOT NULL,
  deleted    boolean NOT NULL,
  PRIMARY KEY (author_id, shout_id)
);
CREATE TABLE rm_home{g} (
  owner_id  text NOT NULL,
  shout_id  text NOT NULL,
  author_id text NOT NULL,
  PRIMARY KEY (owner_id, shout_id)
);
CREATE INDEX rm_home{g}_by_author ON rm_home{g} (owner_id, author_id);
CREATE INDEX rm_home{g}_by_shout ON rm_home{g} (shout_id);
)sql";

constexpr const char* follow_sql = R"sql(
INSERT INTO rm_followers{g} (author_id, follower_id, position)
VALUES ($1, $2, $3) ON CONFLICT DO NOTHING
)sql";

constexpr const char* count_sql = R"sql(
INSERT INTO rm_authors{g} AS a (author_id, follower_count) VALUES ($1, $2)
ON CONFLICT (author_id)
  DO UPDATE SET follower_count = a.follower_count + excluded.follower_count
)sql";

constexpr const char* backfill_sql = R"sql(
INSERT INTO rm_home{g} (owner_id, shout_id, author_id)
SELECT $2, shout_id, author_id FROM rm_author_shouts{g}
 WHERE author_id = $1 AND fanned_out AND NOT deleted
 ORDER BY shout_id DESC LIMIT $3
ON CONFLICT DO NOTHING
RETURNING shout_id
)sql";

constexpr const char* unfollow_sql = R"sql(
DELETE FROM rm_followers{g} WHERE author_id = $1 AND follower_id = $2
)sql";

constexpr const char* unfollow_home_sql = R"sql(
DELETE FROM rm_home{g} WHERE owner_id = $2 AND author_id = $1
RETURNING shout_id
)sql";

constexpr const char* followers_count_sql = R"sql(
SELECT follower_count FROM rm_authors{g} WHERE author_id = $1
)sql";

constexpr const char* post_sql = R"sql(
INSERT INTO rm_author_shouts{g} (author_id, shout_id, fanned_out, deleted)
VALUES ($1, $2, $3, false) ON CONFLICT DO NOTHING
)sql";

constexpr const char* fan_out_sql = R"sql(
INSERT INTO rm_home{g} (owner_id, shout_id, author_id)
SELECT follower_id, $2, $1 FROM rm_followers{g} WHERE author_id = $1
UNION ALL SELECT $1, $2, $1
ON CONFLICT DO NOTHING
RETURNING owner_id
)sql";

constexpr const char* own_home_sql = R"sql(
INSERT INTO rm_home{g} (owner_id, shout_id, author_id) VALUES ($1, $2, $1)
ON CONFLICT DO NOTHING
)sql";

constexpr const char* delete_sql = R"sql(
UPDATE rm_author_shouts{g} SET deleted = true
 WHERE author_id = $1 AND shout_id = $2 AND NOT deleted
RETURNING fanned_out
)sql";

constexpr const char* delete_home_sql = R"sql(
DELETE FROM rm_home{g} WHERE shout_id = $1 RETURNING owner_id
)sql";

} // namespace

std::vector<std::string> timelines_projection::tables() const {
  return {"rm_followers", "rm_authors", "rm_author_shouts", "rm_home"};
}

std::string timelines_projection::ddl() const {
  return timelines_ddl;
}

std::vector<std::string>
timelines_projection::keys(const raw_event& raw) const {
  auto e = decode_or_throw(raw);
  switch (e.event_case()) {
    case v1::UserEvent::kUserFollowed:
      return {e.user_followed().target_user_id()};
    case v1::UserEvent::kUserUnfollowed:
      return {e.user_unfollowed().target_user_id()};
    case v1::UserEvent::kShoutPosted:
      return {e.shout_posted().author_id()};
    case v1::UserEvent::kShoutDeleted:
      return {e.shout_deleted().author_id()};
    default:
      return {};
  }
}

void timelines_projection::apply(pqxx::transaction_base& tx,
                                 const std::string& g,
                                 const std::vector<keyed_event>& events,
                                 std::vector<change>& changes) const {
  auto sql = [&](const char* text) { return expand_ddl(text, g); };
  for (auto& k : events) {
    auto& raw = *k.event;
    auto pos = raw.at.position;
    auto e = decode_or_throw(raw);
    switch (e.event_case()) {
      case v1::UserEvent::kUserFollowed: {
        auto& author = k.key;
        auto& follower = e.user_followed().user_id();
        auto added = tx.exec_params(sql(follow_sql), author, follower, pos);
        if (added.affected_rows() == 0)
          break;
        tx.exec_params(sql(count_sql), author, 1);
        for (const auto& row :
             tx.exec_params(sql(backfill_sql), author, follower, cfg_.cap))
          changes.push_back({change::timeline_add, follower,
                             row[0].as<std::string>(), pos, raw.at.tx});
        break;
      }
      case v1::UserEvent::kUserUnfollowed: {
        auto& author = k.key;
        auto& follower = e.user_unfollowed().user_id();
        auto removed = tx.exec_params(sql(unfollow_sql), author, follower);
        if (removed.affected_rows() == 0)
          break;
        tx.exec_params(sql(count_sql), author, -1);
        for (const auto& row :
             tx.exec_params(sql(unfollow_home_sql), author, follower))
          changes.push_back({change::timeline_remove, follower,
                             row[0].as<std::string>(), pos, raw.at.tx});
        break;
      }
      case v1::UserEvent::kShoutPosted: {
        auto& author = k.key;
        auto& shout = e.shout_posted().shout_id();
        auto counted = tx.exec_params(sql(followers_count_sql), author);
        auto followers = counted.empty() ? 0 : counted[0][0].as<int64_t>();
        bool fan_out = followers < cfg_.celebrity_threshold;
        tx.exec_params(sql(post_sql), author, shout, fan_out);
        if (fan_out) {
          for (const auto& row : tx.exec_params(sql(fan_out_sql), author, shout))
            changes.push_back({change::timeline_add, row[0].as<std::string>(),
                               shout, pos, raw.at.tx});
        } else {
          tx.exec_params(sql(own_home_sql), author, shout);
          changes.push_back({change::timeline_add, author, shout, pos, raw.at.tx});
          // Followers' timelines merge it at read time; their Watch
          // streams learn of it from the author's feed.
          changes.push_back({change::author_post, author, shout, pos, raw.at.tx});
        }
        break;
      }
      case v1::UserEvent::kShoutDeleted: {
        auto& author = k.key;
        auto& shout = e.shout_deleted().shout_id();
        auto was = tx.exec_params(sql(delete_sql), author, shout);
        if (!was.empty() && !was[0][0].as<bool>())
          changes.push_back({change::author_remove, author, shout, pos,
                             raw.at.tx});
        for (const auto& row : tx.exec_params(sql(delete_home_sql), shout))
          changes.push_back({change::timeline_remove, row[0].as<std::string>(),
                             shout, pos, raw.at.tx});
        break;
      }
      default:
        break;
    }
  }
}

} // namespace shoutflow::read_models
