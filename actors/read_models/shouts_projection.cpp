#include "actors/read_models/shouts_projection.hpp"

#include <algorithm>
#include <unordered_map>

#include "actors/journal/pg_copy.hpp"
#include "actors/journal/pg_session.hpp"
#include "actors/read_models/decoding.hpp"

namespace shoutflow::read_models {

namespace {

using journal::bool_array;
using journal::int_array;
using journal::text_array;
using projection::change;
using projection::exec_prepared_sql;
using projection::expand_ddl;
using projection::keyed_event;
using projection::raw_event;

constexpr const char* shouts_ddl = R"sql(
CREATE TABLE rm_shouts{g} (
  shout_id          text PRIMARY KEY,
  author_id         text        NOT NULL,
  text              text        NOT NULL,
  created_at        timestamptz NOT NULL,
  like_count        bigint      NOT NULL,
  reply_count       bigint      NOT NULL,
  reply_to_shout_id text        NOT NULL,
  deleted           boolean     NOT NULL,
  position          bigint      NOT NULL
);
)sql";

constexpr const char* load_sql = R"sql(
SELECT shout_id, author_id, text,
       (extract(epoch FROM created_at) * 1000)::bigint, like_count,
       reply_count, reply_to_shout_id, deleted, position
  FROM rm_shouts{g} WHERE shout_id = ANY($1::text[])
)sql";

// New documents are inserted, existing ones upserted: a new shout's row
// cannot exist (see apply), and an INSERT without ON CONFLICT skips the
// speculative insertion. A duplicate would mean a corrupt log; the batch's
// poison path isolates it as a dead letter.
const std::string insert_sql = R"sql(
INSERT INTO rm_shouts{g} (shout_id, author_id, text, created_at, like_count,
                          reply_count, reply_to_shout_id, deleted, position)
SELECT id, a, t, 'epoch'::timestamptz + c * interval '1 millisecond', l, r,
       p, d, ps
  FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[],
              $5::bigint[], $6::bigint[], $7::text[], $8::boolean[],
              $9::bigint[]) AS u(id, a, t, c, l, r, p, d, ps)
)sql";

const std::string upsert_sql = insert_sql + R"sql(
ON CONFLICT (shout_id) DO UPDATE SET
  author_id = excluded.author_id, text = excluded.text,
  created_at = excluded.created_at, like_count = excluded.like_count,
  reply_count = excluded.reply_count,
  reply_to_shout_id = excluded.reply_to_shout_id, deleted = excluded.deleted,
  position = excluded.position
)sql";

struct shout_doc {
  bool exists = false;
  /// Its row was loaded: it is updated, not inserted.
  bool stored = false;
  std::string author_id, text, reply_to;
  int64_t created_at_ms = 0, like_count = 0, reply_count = 0, position = 0;
  bool deleted = false;
};

/// A batch creating at least this many documents sends them by COPY
/// (actors/journal/pg_copy.hpp): a rebuild's batches create thousands, a
/// live batch a few, for which the prepared statement's one round trip is
/// cheaper.
constexpr std::size_t copy_from = 64;

using doc_ref = std::pair<const std::string, shout_doc>;

void copy_new(pqxx::transaction_base& tx, const std::string& suffix,
              const std::vector<const doc_ref*>& rows) {
  journal::copy_writer copy{tx,
                            "rm_shouts" + suffix,
                            {"shout_id", "author_id", "text", "created_at",
                             "like_count", "reply_count", "reply_to_shout_id",
                             "deleted", "position"}};
  for (auto* row : rows) {
    auto& [id, d] = *row;
    copy.text(id)
      .text(d.author_id)
      .text(d.text)
      .timestamp_ms(d.created_at_ms)
      .integer(d.like_count)
      .integer(d.reply_count)
      .text(d.reply_to)
      .boolean(d.deleted)
      .integer(d.position)
      .end_row();
  }
  copy.complete();
}

/// The batch's documents (every one was changed by an event of the batch),
/// by shout id.
using doc_map = std::unordered_map<std::string, shout_doc>;

/// Writes the documents that were (or were not) loaded, in key order: the
/// ids are time-ordered, so a rebuild appends to the primary key's B-tree.
void store(pqxx::transaction_base& tx, const std::string& suffix,
           const std::string& sql, const doc_map& docs, bool stored) {
  std::vector<const doc_ref*> rows;
  for (auto& entry : docs)
    if (entry.second.stored == stored)
      rows.push_back(&entry);
  if (rows.empty())
    return;
  std::sort(rows.begin(), rows.end(), [](const doc_ref* a, const doc_ref* b) {
    return a->first < b->first;
  });
  if (!stored && rows.size() >= copy_from)
    return copy_new(tx, suffix, rows);
  std::vector<std::string> ids, authors, texts, parents;
  std::vector<int64_t> created, likes, replies, positions;
  std::vector<bool> deleted;
  for (auto* row : rows) {
    auto& [id, d] = *row;
    ids.push_back(id);
    authors.push_back(d.author_id);
    texts.push_back(d.text);
    created.push_back(d.created_at_ms);
    likes.push_back(d.like_count);
    replies.push_back(d.reply_count);
    parents.push_back(d.reply_to);
    deleted.push_back(d.deleted);
    positions.push_back(d.position);
  }
  exec_prepared_sql(tx, expand_ddl(sql, suffix), text_array(ids),
                    text_array(authors), text_array(texts), int_array(created),
                    int_array(likes), int_array(replies), text_array(parents),
                    bool_array(deleted), int_array(positions));
}

} // namespace

std::vector<std::string> shouts_projection::tables() const {
  return {"rm_shouts"};
}

std::string shouts_projection::ddl() const {
  return shouts_ddl;
}

std::string shouts_projection::query_indexes() const {
  // GetUserShouts; `apply` finds shouts by id.
  return "CREATE INDEX IF NOT EXISTS rm_shouts{g}_author"
         " ON rm_shouts{g} (author_id, shout_id DESC);";
}

std::vector<std::string> shouts_projection::keys(const raw_event& raw) const {
  auto e = decode_or_throw(raw);
  auto with_parent = [](const std::string& id, const std::string& parent) {
    return parent.empty() ? std::vector<std::string>{id}
                          : std::vector<std::string>{id, parent};
  };
  switch (e.event_case()) {
    case v1::UserEvent::kShoutPosted:
      return with_parent(e.shout_posted().shout_id(),
                         e.shout_posted().reply_to_shout_id());
    case v1::UserEvent::kShoutDeleted:
      return with_parent(e.shout_deleted().shout_id(),
                         e.shout_deleted().reply_to_shout_id());
    case v1::UserEvent::kShoutLiked:
      return {e.shout_liked().shout_id()};
    case v1::UserEvent::kShoutUnliked:
      return {e.shout_unliked().shout_id()};
    default:
      return {};
  }
}

void shouts_projection::apply(pqxx::transaction_base& tx,
                              const std::string& suffix,
                              const std::vector<keyed_event>& events,
                              std::vector<change>* changes) const {
  // A shout's first event is the post that creates it, applied once (G3):
  // a key whose first event in the batch is that post has no document yet.
  // Loading only the others skips an index probe per new shout — in a
  // rebuild nearly every key — and the probes cost as much as the insert
  // (docs/benchmarks.md, issue 14).
  std::vector<v1::UserEvent> decoded;
  decoded.reserve(events.size());
  doc_map docs;
  docs.reserve(events.size());
  std::vector<std::string> wanted;
  for (auto& k : events) {
    decoded.push_back(decode_or_throw(*k.event));
    auto& e = decoded.back();
    if (docs.try_emplace(k.key).second
        && !(e.has_shout_posted() && e.shout_posted().shout_id() == k.key))
      wanted.push_back(k.key);
  }
  if (!wanted.empty()) {
    std::string id;
    for (const auto& row : exec_prepared_sql(tx, expand_ddl(load_sql, suffix),
                                             text_array(wanted))) {
      journal::row_reader c{row};
      c.text(&id);
      auto& d = docs[id];
      d.exists = d.stored = true;
      c.text(&d.author_id);
      c.text(&d.text);
      d.created_at_ms = c.int64();
      d.like_count = c.int64();
      d.reply_count = c.int64();
      c.text(&d.reply_to);
      d.deleted = c.boolean();
      d.position = c.int64();
    }
  }
  for (std::size_t i = 0; i < events.size(); ++i) {
    auto& k = events[i];
    auto& raw = *k.event;
    auto& e = decoded[i];
    auto& d = docs[k.key];
    bool creates = e.has_shout_posted() && e.shout_posted().shout_id() == k.key;
    if (!d.exists && !creates)
      throw std::runtime_error("no shout document for '" + k.key + "' ("
                               + raw.type + " at position "
                               + std::to_string(raw.at.position) + ")");
    switch (e.event_case()) {
      case v1::UserEvent::kShoutPosted: {
        auto& r = e.shout_posted();
        if (creates) {
          d.exists = true;
          d.author_id = r.author_id();
          d.text = r.text();
          d.reply_to = r.reply_to_shout_id();
          d.created_at_ms = millis(r.posted_at());
        } else {
          d.reply_count += 1; // k.key is the parent
        }
        break;
      }
      case v1::UserEvent::kShoutDeleted:
        if (e.shout_deleted().shout_id() == k.key)
          d.deleted = true;
        else
          d.reply_count -= 1; // a reply of k.key was deleted
        break;
      case v1::UserEvent::kShoutLiked:
        d.like_count += 1;
        break;
      case v1::UserEvent::kShoutUnliked:
        d.like_count -= 1;
        break;
      default:
        break;
    }
    d.position = raw.at.position;
    if (changes != nullptr)
      changes->push_back(
        {change::shout, k.key, {}, raw.at.position, raw.at.tx});
  }
  store(tx, suffix, insert_sql, docs, false);
  store(tx, suffix, upsert_sql, docs, true);
}

} // namespace shoutflow::read_models
