#include "actors/read_models/timelines_projection.hpp"

#include <algorithm>
#include <tuple>
#include <unordered_map>

#include "actors/journal/pg_session.hpp"
#include "actors/read_models/decoding.hpp"

namespace shoutflow::read_models {

namespace {

using projection::change;
using projection::exec_prepared_sql;
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
-- The shouts GetTimeline merges at read time (celebrities'), found without
-- reading every shout of every followed author.
CREATE INDEX rm_author_shouts{g}_merged ON rm_author_shouts{g} (author_id, shout_id)
  WHERE NOT fanned_out AND NOT deleted;
-- Fan-out inserts dominate the projection's cost, and each index of rm_home
-- costs one more B-tree insert per row: an (owner_id, author_id) index for
-- unfollow made them 1.5x slower, a (shout_id) index for deletes cost 8 %
-- (docs/read-side.md). Unfollow and delete find the rows through the
-- primary key instead.
CREATE TABLE rm_home{g} (
  owner_id  text NOT NULL,
  shout_id  text NOT NULL,
  author_id text NOT NULL,
  PRIMARY KEY (owner_id, shout_id)
);
)sql";

// Where an author's shouts are: in the author's own home and, if fanned
// out, in the homes of the author's current followers, nowhere else. Posts
// and follows add them there only; an unfollow takes all of the author's
// shouts out of the follower's home, a delete the shout out of every home.
// So the fan-out, the follow backfill and a post's row in the author's
// shouts insert without ON CONFLICT (a third of an insert's cost): a new
// shout is in no home yet and not among its author's, a new follower has
// none of the author's, and no user follows itself. A duplicate would mean
// a corrupt log; the batch's poison path isolates it as a dead letter.
// The posts' rows go in sorted by key (bytewise: the order only groups
// them), so consecutive inserts land on the same B-tree leaf: a batch's
// fan-out reaches every follower's home, in log order a random walk over
// an index far larger than shared_buffers. And a delete finds its rows by probing those homes'
// primary keys, without an index on shout_id.

// Few statements (data-modifying CTEs): the projection's cost is round trips
// and per-statement overhead. An unfollow or delete is one statement; the
// posts and the follows of a batch are one statement each per run (see
// apply). Replayed one statement per follow, a log with many follows
// rebuilt at 0.2x its write floor (the issue 14 quick bench).

// A follow or unfollow answers one row per change of the follower's
// timeline, tagged: 'feed' once if the follow was new (or the unfollow
// removed one), 'home' per fanned-out shout that entered (left) the home
// table, 'merged' per shout of the author that GetTimeline merges at read
// time (not fanned out) and that therefore entered (left) the timeline too.
// Both take the newest `cap` shouts, as the timeline shows no more.

/// The follow graph's writes of a run of follows: $1 authors, $2
/// followers, $3 positions; the WITH is left open.
constexpr const char* follows_graph = R"sql(
WITH f AS (
  SELECT author_id, follower_id, min(position) AS position, min(ord) AS ord
    FROM unnest($1::text[], $2::text[], $3::bigint[]) WITH ORDINALITY
           AS f(author_id, follower_id, position, ord)
   GROUP BY author_id, follower_id
), added AS (
  INSERT INTO rm_followers{g} (author_id, follower_id, position)
  SELECT author_id, follower_id, position FROM f
  ON CONFLICT DO NOTHING
  RETURNING author_id, follower_id
), counted AS (
  INSERT INTO rm_authors{g} AS a (author_id, follower_count)
  SELECT author_id, count(*) FROM added GROUP BY author_id
  ON CONFLICT (author_id)
    DO UPDATE SET follower_count = a.follower_count + excluded.follower_count
))sql";

/// follows_graph and the backfill of the new followers' homes ($4 cap)
/// → the rows above, each with the follow's 1-based place in the run. A
/// pair repeated in the run counts once (its first place).
const std::string follows_sql = std::string{follows_graph} + R"sql(, homes AS (
  INSERT INTO rm_home{g} (owner_id, shout_id, author_id)
  SELECT n.follower_id, s.shout_id, n.author_id
    FROM added n CROSS JOIN LATERAL (
      SELECT shout_id FROM rm_author_shouts{g}
       WHERE author_id = n.author_id AND fanned_out AND NOT deleted
       ORDER BY shout_id DESC LIMIT $4) s
  RETURNING owner_id, shout_id, author_id
), new AS (
  SELECT f.ord, f.author_id, f.follower_id
    FROM f JOIN added USING (author_id, follower_id)
)
SELECT ord, 'feed', NULL::text FROM new
UNION ALL SELECT n.ord, 'home', h.shout_id
  FROM homes h JOIN new n
    ON n.author_id = h.author_id AND n.follower_id = h.owner_id
UNION ALL SELECT n.ord, 'merged', m.shout_id
  FROM new n CROSS JOIN LATERAL (
    SELECT shout_id FROM rm_author_shouts{g}
     WHERE author_id = n.author_id AND NOT fanned_out AND NOT deleted
     ORDER BY shout_id DESC LIMIT $4) m
)sql";

/// $1 author, $2 follower, $3 cap.
constexpr const char* unfollow_sql = R"sql(
WITH removed AS (
  DELETE FROM rm_followers{g} WHERE author_id = $1 AND follower_id = $2
  RETURNING author_id
), counted AS (
  INSERT INTO rm_authors{g} AS a (author_id, follower_count)
  SELECT author_id, -1 FROM removed
  ON CONFLICT (author_id)
    DO UPDATE SET follower_count = a.follower_count - 1
), homes AS (
  DELETE FROM rm_home{g} WHERE owner_id = $2 AND author_id = $1
     AND EXISTS (SELECT 1 FROM removed)
     -- Every entry of the author in a follower's home is one of the
     -- author's fanned-out shouts (fan-out and follow backfill take only
     -- those): probe the home's primary key for each instead of scanning
     -- the whole home.
     AND shout_id IN (SELECT shout_id FROM rm_author_shouts{g}
                       WHERE author_id = $1 AND fanned_out)
  RETURNING shout_id
)
SELECT 'feed', NULL::text FROM removed
UNION ALL SELECT 'home', shout_id FROM homes
UNION ALL (SELECT 'merged', shout_id FROM rm_author_shouts{g}
            WHERE author_id = $1 AND NOT fanned_out AND NOT deleted
              AND EXISTS (SELECT 1 FROM removed)
            ORDER BY shout_id DESC LIMIT $3)
)sql";

/// A run of posts: $1 authors, $2 shouts, $3 celebrity threshold → per
/// post (by its 1-based place in the run) whether it was fanned out, and
/// one row per timeline it entered (owner; NULL if none). A post's mode
/// depends only on its author's follower count, which no post changes: the
/// whole run is one statement.
constexpr const char* posts_sql = R"sql(
WITH p AS (
  SELECT p.author_id, p.shout_id, p.ord,
         coalesce(a.follower_count, 0) < $3 AS fan_out
    FROM unnest($1::text[], $2::text[]) WITH ORDINALITY
           AS p(author_id, shout_id, ord)
    LEFT JOIN rm_authors{g} a ON a.author_id = p.author_id
), stored AS (
  INSERT INTO rm_author_shouts{g} (author_id, shout_id, fanned_out, deleted)
  SELECT author_id, shout_id, fan_out, false FROM p
   ORDER BY author_id COLLATE "C", shout_id COLLATE "C"
), homes AS (
  INSERT INTO rm_home{g} (owner_id, shout_id, author_id)
  SELECT * FROM (
    SELECT f.follower_id, p.shout_id, p.author_id
      FROM p JOIN rm_followers{g} f ON f.author_id = p.author_id
     WHERE p.fan_out
    UNION ALL SELECT author_id, shout_id, author_id FROM p) h (o, s, a)
   ORDER BY o COLLATE "C", s COLLATE "C"
  RETURNING owner_id, shout_id
)
SELECT p.ord, p.fan_out, h.owner_id
  FROM p LEFT JOIN homes h ON h.shout_id = p.shout_id
 ORDER BY p.ord
)sql";

// A build before its promotion: nobody publishes its changes, and it
// leaves rm_home to its end (completion_sql): one fill and one index build
// instead of a B-tree insert per fan-out row at a random place of an index
// far larger than shared_buffers (docs/read-side.md). Its statements keep
// the follow graph and the authors' shouts, with where each post and
// deletion is in the log (build_ddl's columns), which is what the fill
// derives the homes from.

/// $1 authors, $2 shouts, $3 celebrity threshold, $4 positions.
constexpr const char* posts_building_sql = R"sql(
WITH p AS (
  SELECT p.author_id, p.shout_id, p.position,
         coalesce(a.follower_count, 0) < $3 AS fan_out
    FROM unnest($1::text[], $2::text[], $4::bigint[])
           AS p(author_id, shout_id, position)
    LEFT JOIN rm_authors{g} a ON a.author_id = p.author_id
)
INSERT INTO rm_author_shouts{g} (author_id, shout_id, fanned_out, deleted,
                                 position)
SELECT author_id, shout_id, fan_out, false, position FROM p
 ORDER BY author_id COLLATE "C", shout_id COLLATE "C"
)sql";

const std::string follows_building_sql = std::string{follows_graph}
                                         + "\nSELECT 1";

/// $1 author, $2 follower.
constexpr const char* unfollow_building_sql = R"sql(
WITH removed AS (
  DELETE FROM rm_followers{g} WHERE author_id = $1 AND follower_id = $2
  RETURNING author_id
)
INSERT INTO rm_authors{g} AS a (author_id, follower_count)
SELECT author_id, -1 FROM removed
ON CONFLICT (author_id)
  DO UPDATE SET follower_count = a.follower_count - 1
)sql";

/// $1 author, $2 shout, $3 the deletion's position.
constexpr const char* delete_building_sql = R"sql(
UPDATE rm_author_shouts{g} SET deleted = true, deleted_at = $3
 WHERE author_id = $1 AND shout_id = $2 AND NOT deleted
)sql";

/// $1 author, $2 shout → one row per timeline the shout left (owner; NULL
/// if none), each with whether it had been fanned out (NULL if it was
/// deleted before or is unknown).
constexpr const char* delete_sql = R"sql(
WITH was AS (
  UPDATE rm_author_shouts{g} SET deleted = true
   WHERE author_id = $1 AND shout_id = $2 AND NOT deleted
  RETURNING fanned_out
), homes AS (
  DELETE FROM rm_home{g}
   WHERE (owner_id, shout_id) IN (
           SELECT $1::text, $2::text
           UNION ALL
           SELECT follower_id, $2 FROM rm_followers{g}
            WHERE author_id = $1 AND (SELECT fanned_out FROM was))
  RETURNING owner_id
)
SELECT (SELECT fanned_out FROM was), homes.owner_id
  FROM (SELECT 1) one LEFT JOIN homes ON true
)sql";

/// The changes of an unfollow's rows: `feed` for the unfollow itself, one
/// `entry` change per shout that left the follower's timeline.
void unfollow_changes(const pqxx::result& rows, const std::string& author,
                      const std::string& follower, const projection::cursor& at,
                      std::vector<change>& changes) {
  std::string what;
  for (const auto& row : rows) {
    journal::row_reader c{row};
    c.text(&what);
    if (what == "feed")
      changes.push_back(
        {change::feed_removed, follower, author, at.position, at.tx});
    else
      changes.push_back(
        {change::timeline_remove, follower, c.text(), at.position, at.tx});
  }
}

} // namespace

std::vector<std::string> timelines_projection::tables() const {
  return {"rm_followers", "rm_authors", "rm_author_shouts", "rm_home"};
}

std::string timelines_projection::ddl() const {
  return timelines_ddl;
}

std::string timelines_projection::query_indexes() const {
  // ListFollowers and ListFollowing (and GetTimeline's merge, through the
  // followed authors). `apply` reaches followers through the primary key.
  // rm_author_shouts' partial index stays in the DDL: unfollows and the
  // published follows read it.
  return R"sql(
CREATE INDEX IF NOT EXISTS rm_followers{g}_by_author
  ON rm_followers{g} (author_id, position DESC, follower_id);
CREATE INDEX IF NOT EXISTS rm_followers{g}_by_follower
  ON rm_followers{g} (follower_id, position DESC, author_id);
)sql";
}

std::string timelines_projection::build_ddl() const {
  // A build before its promotion leaves rm_home alone (apply, `building`)
  // and keeps where each post and deletion is in the log instead, which is
  // what completion_sql derives the homes from.
  return R"sql(
ALTER TABLE rm_author_shouts{g} ADD COLUMN position bigint,
                                ADD COLUMN deleted_at bigint;
ALTER TABLE rm_home{g} DROP CONSTRAINT rm_home{g}_pkey;
)sql";
}

std::string timelines_projection::completion_sql() const {
  // The homes live application would have left. A shout of author X is in
  //   * X's own home, unless deleted;
  //   * the home of each follower F whose follow (the row's position, the
  //     follow still standing) came before the post, if the post was
  //     fanned out and is not deleted: the post's fan-out reached F;
  //   * F's home if the post came before that follow and was among X's
  //     newest `cap` fanned-out shouts not deleted at the follow (its
  //     backfill), and has not been deleted since.
  // An earlier follow of F ended with an unfollow, which took all of X's
  // shouts out of F's home; nothing else writes rm_home. The rows go into
  // the table without its key, which is then built in one sort, and the
  // positions go (build_ddl's columns). Done once: a second call finds no
  // positions and changes nothing.
  return R"sql(
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_attribute
                  WHERE attrelid = 'rm_author_shouts{g}'::regclass
                    AND attname = 'deleted_at' AND NOT attisdropped) THEN
    RETURN;
  END IF;
  TRUNCATE rm_home{g};
  INSERT INTO rm_home{g} (owner_id, shout_id, author_id)
  SELECT author_id, shout_id, author_id FROM rm_author_shouts{g}
   WHERE NOT deleted
  UNION ALL
  SELECT f.follower_id, s.shout_id, s.author_id
    FROM rm_followers{g} f
    JOIN rm_author_shouts{g} s ON s.author_id = f.author_id
   WHERE s.fanned_out AND NOT s.deleted AND s.position > f.position
  UNION ALL
  SELECT f.follower_id, b.shout_id, f.author_id
    FROM rm_followers{g} f CROSS JOIN LATERAL (
      SELECT s.shout_id, s.deleted FROM rm_author_shouts{g} s
       WHERE s.author_id = f.author_id AND s.fanned_out
         AND s.position < f.position
         AND (s.deleted_at IS NULL OR s.deleted_at > f.position)
       ORDER BY s.shout_id DESC LIMIT )sql"
         + std::to_string(cfg_.cap) + R"sql() b
   WHERE NOT b.deleted;
  ALTER TABLE rm_home{g} ADD CONSTRAINT rm_home{g}_pkey
    PRIMARY KEY (owner_id, shout_id);
  ALTER TABLE rm_author_shouts{g} DROP COLUMN position,
                                  DROP COLUMN deleted_at;
END $$;
)sql";
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
                                 std::vector<change>* wanted) const {
  // Without a caller for the changes, a build before its promotion: it
  // leaves rm_home to completion_sql.
  const bool building = wanted == nullptr;
  std::vector<change> dropped;
  auto& changes = building ? dropped : *wanted;
  // Once per batch, not per event.
  const auto follows = expand_ddl(building ? follows_building_sql : follows_sql,
                                  g);
  const auto unfollow
    = expand_ddl(building ? unfollow_building_sql : unfollow_sql, g);
  const auto posts = expand_ddl(building ? posts_building_sql : posts_sql, g);
  const auto remove = expand_ddl(building ? delete_building_sql : delete_sql,
                                 g);
  const auto first_change = changes.size();

  // Posts and follows wait in a run and are applied together, one
  // statement for the posts and one for the follows. Only events of one
  // key (author) must keep their order, so an author's events in a run are
  // all posts or all follows: the posts statement touches the posting
  // authors' rows and their followers' homes, the follows statement the
  // followed authors' rows and their new followers' homes, never the same
  // row. An event of an author already in the run that is not of the
  // run's kind for it (or an unfollow or delete) applies the run first.
  struct post {
    const raw_event* raw;
    std::string author;
    std::string shout;
  };
  struct follow {
    const raw_event* raw;
    std::string author;
    std::string follower;
  };
  enum class pending { post, follow };
  std::vector<post> run_posts;
  std::vector<follow> run_follows;
  std::unordered_map<std::string, pending> run_authors;
  auto apply_posts = [&] {
    if (run_posts.empty())
      return;
    std::vector<std::string> authors, shouts;
    std::vector<int64_t> positions;
    for (auto& p : run_posts) {
      authors.push_back(p.author);
      shouts.push_back(p.shout);
      positions.push_back(p.raw->at.position);
    }
    if (building) {
      exec_prepared_sql(tx, posts, journal::text_array(authors),
                        journal::text_array(shouts), cfg_.celebrity_threshold,
                        journal::int_array(positions));
      run_posts.clear();
      return;
    }
    std::size_t announced = 0; // posts (1-based) whose author changes are out
    for (const auto& row : exec_prepared_sql(
           tx, posts, journal::text_array(authors), journal::text_array(shouts),
           cfg_.celebrity_threshold)) {
      journal::row_reader c{row};
      auto ord = static_cast<std::size_t>(c.int64());
      auto& p = run_posts[ord - 1];
      auto at = p.raw->at;
      if (c.boolean()) {
        if (!c.is_null())
          changes.push_back(
            {change::timeline_add, c.text(), p.shout, at.position, at.tx});
      } else if (announced < ord) {
        announced = ord;
        changes.push_back(
          {change::timeline_add, p.author, p.shout, at.position, at.tx});
        // Followers' timelines merge it at read time; their Watch streams
        // learn of it from the author's feed.
        changes.push_back(
          {change::author_post, p.author, p.shout, at.position, at.tx});
      }
    }
    run_posts.clear();
  };
  auto apply_follows = [&] {
    if (run_follows.empty())
      return;
    std::vector<std::string> authors, followers;
    std::vector<int64_t> positions;
    for (auto& f : run_follows) {
      authors.push_back(f.author);
      followers.push_back(f.follower);
      positions.push_back(f.raw->at.position);
    }
    if (building) {
      exec_prepared_sql(tx, follows, journal::text_array(authors),
                        journal::text_array(followers),
                        journal::int_array(positions));
      run_follows.clear();
      return;
    }
    for (const auto& row :
         exec_prepared_sql(tx, follows, journal::text_array(authors),
                           journal::text_array(followers),
                           journal::int_array(positions), cfg_.cap)) {
      journal::row_reader c{row};
      auto& f = run_follows[static_cast<std::size_t>(c.int64()) - 1];
      auto at = f.raw->at;
      if (c.text() == "feed")
        changes.push_back(
          {change::feed_added, f.follower, f.author, at.position, at.tx});
      else
        changes.push_back(
          {change::timeline_add, f.follower, c.text(), at.position, at.tx});
    }
    run_follows.clear();
  };
  auto apply_run = [&] {
    apply_posts();
    apply_follows();
    run_authors.clear();
  };
  // Adds an event of `author` of kind `kind` to the run.
  auto join_run = [&](const std::string& author, pending kind) {
    auto it = run_authors.find(author);
    if (it != run_authors.end() && it->second != kind)
      apply_run();
    run_authors[author] = kind;
  };

  for (auto& k : events) {
    auto& raw = *k.event;
    auto pos = raw.at.position;
    auto e = decode_or_throw(raw);
    if (e.event_case() == v1::UserEvent::kShoutPosted) {
      join_run(k.key, pending::post);
      run_posts.push_back({&raw, k.key, e.shout_posted().shout_id()});
      continue;
    }
    if (e.event_case() == v1::UserEvent::kUserFollowed) {
      join_run(k.key, pending::follow);
      run_follows.push_back({&raw, k.key, e.user_followed().user_id()});
      continue;
    }
    if (run_authors.count(k.key) > 0)
      apply_run();
    if (building) {
      if (e.event_case() == v1::UserEvent::kUserUnfollowed)
        exec_prepared_sql(tx, unfollow, k.key, e.user_unfollowed().user_id());
      else if (e.event_case() == v1::UserEvent::kShoutDeleted)
        exec_prepared_sql(tx, remove, k.key, e.shout_deleted().shout_id(), pos);
      continue;
    }
    switch (e.event_case()) {
      case v1::UserEvent::kUserUnfollowed:
        unfollow_changes(exec_prepared_sql(tx, unfollow, k.key,
                                           e.user_unfollowed().user_id(),
                                           cfg_.cap),
                         k.key, e.user_unfollowed().user_id(), raw.at, changes);
        break;
      case v1::UserEvent::kShoutDeleted: {
        auto& author = k.key;
        auto& shout = e.shout_deleted().shout_id();
        auto rows = exec_prepared_sql(tx, remove, author, shout);
        if (!rows[0][0].is_null() && !rows[0][0].as<bool>())
          changes.push_back(
            {change::author_remove, author, shout, pos, raw.at.tx});
        for (const auto& row : rows)
          if (!row[1].is_null())
            changes.push_back({change::timeline_remove,
                               row[1].as<std::string>(), shout, pos,
                               raw.at.tx});
        break;
      }
      default:
        break;
    }
  }
  apply_run();
  // Changes go out in log order, whatever order the statements ran in.
  std::stable_sort(changes.begin() + static_cast<std::ptrdiff_t>(first_change),
                   changes.end(), [](const change& x, const change& y) {
                     return std::tie(x.tx, x.position)
                            < std::tie(y.tx, y.position);
                   });
}

} // namespace shoutflow::read_models
