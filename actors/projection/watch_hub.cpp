#include "actors/projection/watch_hub.hpp"

#include <caf/all.hpp>

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>

#include "actors/common/log.hpp"
#include "actors/journal/journal_actors.hpp"
#include "actors/journal/pg_session.hpp"
#include "actors/projection/read_side_codec.hpp"

namespace shoutflow::projection {

namespace {

constexpr const char* component = "watch-hub";
using clock_type = std::chrono::steady_clock;

// -- the offsets fallback -----------------------------------------------------

/// A live generation's committed offsets, by partition index.
struct live_offsets {
  std::string projection;
  int32_t generation = 0;
  std::vector<cursor> offsets;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, live_offsets& x) {
  return f(x.projection, x.generation, x.offsets);
}

constexpr const char* live_offsets_sql
  = "SELECT g.projection, g.generation, g.partitions,"
    "       coalesce(o.partition, -1), coalesce(o.tx_id, '0')::text,"
    "       coalesce(o.position, 0)"
    "  FROM projection_generations g"
    "  LEFT JOIN projection_offsets o"
    "    ON o.projection = g.projection AND o.generation = g.generation"
    " WHERE g.state = 'live'"
    " ORDER BY 1";

// A live partition's logged batches in (after, upto], in log order
// (migration 0008): what its missed broadcasts carried.
constexpr const char* change_log_sql
  = "SELECT batch FROM projection_change_log"
    " WHERE projection = $1 AND generation = $2 AND partition = $3"
    "   AND (to_tx, to_position) > ($4::text::xid8, $5::bigint)"
    "   AND (to_tx, to_position) <= ($6::text::xid8, $7::bigint)"
    " ORDER BY to_tx, to_position";

using poller_actor = caf::typed_actor<
  caf::replies_to<fetch_atom>::with<std::vector<live_offsets>>,
  // (projection, generation, partition, after, upto) -> serialized
  // ReadSideMessages of the logged batches
  caf::replies_to<fetch_atom, std::string, int32_t, int32_t, cursor,
                  cursor>::with<std::vector<std::string>>>;

struct poller_state {
  std::unique_ptr<journal::pg_session> session;
  static inline const char* name = "offsets-poller";
};

poller_actor::behavior_type
poller(poller_actor::stateful_pointer<poller_state> self, std::string url) {
  self->state.session = std::make_unique<journal::pg_session>(
    url, "watch-hub-offsets", [](pqxx::connection& c) {
      c.prepare("live_offsets", live_offsets_sql);
      c.prepare("change_log", change_log_sql);
    });
  return {
    [=](fetch_atom) -> caf::result<std::vector<live_offsets>> {
      std::vector<live_offsets> out;
      auto r = self->state.session->run([&](pqxx::connection& conn) {
        out.clear();
        pqxx::read_transaction tx{conn};
        for (const auto& row : tx.exec_prepared("live_offsets")) {
          auto name = row[0].as<std::string>();
          if (out.empty() || out.back().projection != name) {
            out.push_back({name, row[1].as<int32_t>(), {}});
            out.back().offsets.resize(
              static_cast<std::size_t>(std::max(row[2].as<int32_t>(), 0)));
          }
          auto p = row[3].as<int32_t>();
          if (p >= 0 && static_cast<std::size_t>(p) < out.back().offsets.size())
            out.back().offsets[static_cast<std::size_t>(p)]
              = {std::stoull(row[4].as<std::string>()), row[5].as<int64_t>()};
        }
      });
      if (!r)
        return journal::make_error(journal::db_errc::unavailable, r.detail);
      return out;
    },
    [=](fetch_atom, const std::string& projection, int32_t generation,
        int32_t partition, const cursor& after,
        const cursor& upto) -> caf::result<std::vector<std::string>> {
      std::vector<std::string> out;
      auto r = self->state.session->run([&](pqxx::connection& conn) {
        out.clear();
        pqxx::read_transaction tx{conn};
        for (const auto& row :
             tx.exec_prepared("change_log", projection, generation, partition,
                              std::to_string(after.tx), after.position,
                              std::to_string(upto.tx), upto.position))
          out.push_back(pqxx::binarystring{row[0]}.str());
      });
      if (!r)
        return journal::make_error(journal::db_errc::unavailable, r.detail);
      return out;
    },
  };
}

// -- tracking a projection ----------------------------------------------------

/// What the hub knows of one generation of a projection.
struct generation_track {
  int32_t generation = 0;
  /// Per partition: how far its batches arrived in sequence.
  std::vector<cursor> received;
  std::vector<bool> seen;
  /// Per partition: where its first batch here started.
  std::vector<cursor> first_after;
  /// Per partition: committed, by its batches or by the database.
  std::vector<cursor> applied;
  /// Per partition: since when the database shows it past `received`.
  std::vector<std::optional<clock_type::time_point>> behind_since;
  /// Per partition: missed batches being read from the change log up to
  /// `fill_to`; the batches arriving meanwhile wait in `stash`.
  std::vector<bool> filling;
  std::vector<cursor> fill_to;
  std::vector<int> fill_failures;
  std::vector<std::deque<v1::ChangeBatch>> stash;
  /// Changes not released yet, in log order.
  std::multimap<cursor, change> pending;

  void resize(std::size_t n) {
    received.resize(n);
    seen.resize(n, false);
    first_after.resize(n);
    applied.resize(n);
    behind_since.resize(n);
    filling.resize(n, false);
    fill_to.resize(n);
    fill_failures.resize(n, 0);
    stash.resize(n);
  }

  /// Everything below it has arrived from every partition.
  cursor release_mark() const {
    if (received.empty())
      return {};
    return *std::min_element(received.begin(), received.end());
  }

  cursor applied_mark() const {
    if (applied.empty())
      return {};
    return *std::min_element(applied.begin(), applied.end());
  }
};

struct projection_track {
  generation_track live;
  /// A rebuilt generation's batches, from its promotion on.
  std::optional<generation_track> next;
  /// After a swap notice: the live generation's final offsets, and its
  /// successor.
  std::optional<std::vector<cursor>> retired_final;
  int32_t successor = 0;
  /// The database shows another live generation than `live`: since when
  /// (a swap notice may still be on its way).
  std::optional<clock_type::time_point> swapped_since;
};

/// (kind, subject) -> subscribers
using topic = std::pair<uint8_t, std::string>;

struct waiter {
  std::vector<std::string> names;
  cursor at;
  caf::typed_response_promise<bool> promise;
};

struct hub_state {
  hub_config cfg;
  poller_actor poller;
  bool polling = false;
  std::map<std::string, projection_track> projections;
  std::vector<waiter> waiters;
  std::map<topic, std::set<caf::actor>> subscribers;
  std::map<caf::actor_addr, std::set<topic>> topics_of;
  std::map<caf::actor_addr, caf::actor> actors;
  /// Per timeline subscriber, the follows and unfollows of its timeline's
  /// owner seen since it subscribed (author -> following): newer than any
  /// following list the subscriber read, so they win over its author_feeds.
  std::map<caf::actor_addr, std::map<std::string, bool>> feeds_seen;
  static inline const char* name = "watch-hub";
};

using pointer = hub_actor::stateful_pointer<hub_state>;

// -- subscribers --------------------------------------------------------------

void forget(pointer self, const caf::actor_addr& addr) {
  auto& st = self->state;
  auto who = st.actors.find(addr);
  if (who == st.actors.end())
    return;
  for (auto& t : st.topics_of[addr]) {
    auto it = st.subscribers.find(t);
    if (it == st.subscribers.end())
      continue;
    it->second.erase(who->second);
    if (it->second.empty())
      st.subscribers.erase(it);
  }
  st.topics_of.erase(addr);
  st.feeds_seen.erase(addr);
  st.actors.erase(who);
}

void add_topic(pointer self, const caf::actor& who, const topic& t) {
  self->state.subscribers[t].insert(who);
  self->state.topics_of[who.address()].insert(t);
}

void remove_topic(pointer self, const caf::actor& who, const topic& t) {
  auto& st = self->state;
  auto it = st.subscribers.find(t);
  if (it != st.subscribers.end()) {
    it->second.erase(who);
    if (it->second.empty())
      st.subscribers.erase(it);
  }
  st.topics_of[who.address()].erase(t);
}

/// A follow (unfollow) of timeline `c.subject`'s owner: its subscribers
/// start (stop) following author `c.item`'s feed, before any later change
/// is forwarded.
void follow_feed(pointer self, const change& c) {
  auto& st = self->state;
  auto it = st.subscribers.find({change::timeline_add, c.subject});
  if (it == st.subscribers.end())
    return;
  bool added = c.kind == change::feed_added;
  topic feed{change::author_post, c.item};
  for (auto& sub : it->second) {
    st.feeds_seen[sub.address()][c.item] = added;
    if (added)
      add_topic(self, sub, feed);
    else
      remove_topic(self, sub, feed);
  }
}

/// The topics a change concerns.
std::vector<topic> topics(const change& c) {
  switch (c.kind) {
    case change::user:
      return {{change::user, c.subject}};
    case change::shout:
      return {{change::shout, c.subject}};
    case change::timeline_add:
    case change::timeline_remove:
      return {{change::timeline_add, c.subject}};
    case change::author_post:
    case change::author_remove:
      return {{change::author_post, c.subject}};
    case change::feed_added:
    case change::feed_removed:
      return {}; // the hub's own business (follow_feed)
  }
  return {};
}

/// Erases the cached pages `c` touches (page_cache.hpp): a page shows its
/// owner's timeline (entries, and the feeds merged into it), and the shouts
/// and authors on it. A celebrity's post or deletion changes the pages of
/// its followers without touching their timelines; the hub does not know
/// them, so it empties the cache (celebrities are few).
void erase_pages(pointer self, const change& c) {
  auto& pages = self->state.cfg.pages;
  if (!pages)
    return;
  switch (c.kind) {
    case change::user:
      pages->invalidate({page_cache::kind::user, c.subject});
      break;
    case change::shout:
      pages->invalidate({page_cache::kind::shout, c.subject});
      break;
    case change::timeline_add:
    case change::timeline_remove:
    case change::feed_added:
    case change::feed_removed:
      pages->invalidate({page_cache::kind::timeline, c.subject});
      break;
    case change::author_post:
    case change::author_remove:
      pages->clear();
      break;
  }
}

void deliver(pointer self, const change& c) {
  auto& st = self->state;
  erase_pages(self, c);
  if (c.kind == change::feed_added || c.kind == change::feed_removed) {
    follow_feed(self, c);
    return;
  }
  for (auto& t : topics(c)) {
    auto it = st.subscribers.find(t);
    if (it == st.subscribers.end())
      continue;
    for (auto& sub : it->second)
      caf::anon_send(sub, change_atom::value, c);
  }
}

/// The topic kinds a projection's changes reach.
std::vector<uint8_t> kinds_of(const std::string& projection) {
  if (projection == "users")
    return {change::user};
  if (projection == "shouts")
    return {change::shout};
  if (projection == "timelines")
    return {change::timeline_add, change::author_post};
  return {};
}

/// Changes of `projection` may have been missed: its subscribers must
/// resubscribe.
void lost(pointer self, const std::string& projection, const std::string& why) {
  auto& st = self->state;
  if (st.cfg.pages)
    st.cfg.pages->clear();
  std::set<caf::actor> affected;
  for (auto kind : kinds_of(projection))
    for (auto it = st.subscribers.lower_bound({kind, std::string{}});
         it != st.subscribers.end() && it->first.first == kind; ++it)
      affected.insert(it->second.begin(), it->second.end());
  log_warn(component,
           projection + ": " + why
             + (affected.empty() ? std::string{}
                                 : "; " + std::to_string(affected.size())
                                     + " Watch stream(s) told to resubscribe"));
  for (auto& sub : affected) {
    caf::anon_send(sub, lost_atom::value,
                   "changes of " + projection + " may have been missed (" + why
                     + "); resubscribe");
    forget(self, sub.address());
  }
}

// -- progress -----------------------------------------------------------------

/// The projections a cached page reads (read_queries.cpp,
/// projections_read_by("GetTimeline")).
constexpr const char* page_projections[] = {"timelines", "shouts", "users"};

/// Tells the page cache how far every change of the projections its pages
/// read has been released, and whether the hub knows of a committed one it
/// has not released (a partition the database shows further than its
/// broadcasts, a fill or a swap in progress).
void publish_progress(pointer self) {
  auto& st = self->state;
  if (!st.cfg.pages)
    return;
  std::optional<cursor> released;
  bool current = true;
  for (auto* name : page_projections) {
    auto it = st.projections.find(name);
    if (it == st.projections.end() || it->second.live.received.empty()) {
      st.cfg.pages->set_progress(std::nullopt, false);
      return;
    }
    auto& t = it->second;
    auto& g = t.live;
    auto mark = g.release_mark();
    if (!released || mark < *released)
      released = mark;
    current = current && !t.retired_final && !t.swapped_since && !t.next;
    for (std::size_t p = 0; p < g.received.size(); ++p)
      current = current && !g.filling[p] && !(g.received[p] < g.applied[p]);
  }
  st.cfg.pages->set_progress(released, current);
}

void release_waiters(pointer self) {
  auto& st = self->state;
  publish_progress(self);
  for (auto it = st.waiters.begin(); it != st.waiters.end();) {
    bool ready = true;
    for (auto& n : it->names) {
      auto p = st.projections.find(n);
      if (p == st.projections.end() || p->second.live.received.empty()
          || p->second.live.applied_mark() < it->at) {
        ready = false;
        break;
      }
    }
    if (!ready) {
      ++it;
      continue;
    }
    it->promise.deliver(true);
    it = st.waiters.erase(it);
  }
}

/// Whether every subject of `projection` is a key of its partitions. A
/// user's document changes only in the partition that owns the user's id,
/// a shout's only in its shout id's: their order per subject is their
/// partition's order. A timeline takes entries from authors of every
/// partition, and its feed changes must come before the author's next
/// post: its order is the log's.
bool subjects_are_keys(const std::string& projection) {
  return projection == "users" || projection == "shouts";
}

/// Delivers the live generation's changes that may go: those every
/// partition has passed (log order) and, where subjects are partition keys,
/// those their own partition has passed — a change of one user need not
/// wait for another partition's batch (the lag of a user document is then
/// its own partition's, not the slowest one's; Watch promises log order per
/// subject, docs/read-side.md).
void release(pointer self, const std::string& name, projection_track& t) {
  auto& g = t.live;
  auto mark = g.release_mark();
  auto& pending = g.pending;
  auto end = pending.upper_bound(mark);
  for (auto it = pending.begin(); it != end; ++it)
    deliver(self, it->second);
  pending.erase(pending.begin(), end);
  if (!subjects_are_keys(name))
    return;
  for (auto it = pending.begin(); it != pending.end();) {
    auto p = it->second.partition;
    if (p >= 0 && static_cast<std::size_t>(p) < g.received.size()
        && !(g.received[static_cast<std::size_t>(p)] < it->first)) {
      deliver(self, it->second);
      it = pending.erase(it);
    } else {
      ++it;
    }
  }
}

/// Takes a batch's progress and changes into `g`. False: the batch does not
/// continue where `g` had one of its partitions (changes were lost).
bool take(generation_track& g, std::size_t count, const v1::ChangeBatch& b) {
  g.resize(count);
  auto after = from_proto(b.after());
  auto to = from_proto(b.to());
  bool continuous = true;
  std::map<int32_t, cursor> before;
  for (auto p : b.partitions()) {
    if (p < 0 || static_cast<std::size_t>(p) >= count)
      continue;
    auto i = static_cast<std::size_t>(p);
    if (!g.seen[i]) {
      g.seen[i] = true;
      g.first_after[i] = after;
      if (g.received[i] < after)
        g.received[i] = after;
    }
    if (g.received[i] < after)
      continuous = false;
    before[p] = g.received[i];
    if (g.received[i] < to)
      g.received[i] = to;
    if (g.applied[i] < to)
      g.applied[i] = to;
    g.behind_since[i].reset();
  }
  for (auto& pc : b.changes()) {
    auto c = from_proto(pc);
    if (!c)
      continue;
    auto prev = before.find(c->partition);
    if (prev != before.end() && cursor{c->tx, c->position} <= prev->second)
      continue; // had it already (a redelivered batch)
    g.pending.emplace(cursor{c->tx, c->position}, std::move(*c));
  }
  return continuous;
}

/// A swap announced, and both generations' batches up to the retired one's
/// final offsets here: deliver the rest of the retired generation, then
/// follow its successor from those offsets on. `force` (the batches did not
/// come in time): switch anyway, telling the subscribers.
void try_switch(pointer self, const std::string& name, projection_track& t,
                bool force = false) {
  if (!t.retired_final)
    return;
  auto& final_offsets = *t.retired_final;
  auto n = final_offsets.size();
  bool has_next = t.next && t.next->generation == t.successor;
  if (has_next)
    t.next->resize(n);
  bool complete = true;
  for (std::size_t p = 0; p < n; ++p) {
    complete = complete && p < t.live.received.size()
               && !(t.live.received[p] < final_offsets[p]);
    // The successor commits at least up to the final offsets before the
    // swap, and publishes what it commits.
    complete = complete && has_next && t.next->seen[p]
               && !(t.next->received[p] < final_offsets[p]);
  }
  if (!complete && !force)
    return;
  for (auto& kv : t.live.pending)
    deliver(self, kv.second);
  generation_track next;
  if (has_next)
    next = std::move(*t.next);
  next.generation = t.successor;
  next.resize(n);
  // Continuous when the successor published from at or before the final
  // offsets (it is promoted before them, docs/cluster.md).
  bool continuous = complete;
  for (std::size_t p = 0; p < n; ++p) {
    continuous = continuous && next.seen[p]
                 && next.first_after[p] <= final_offsets[p];
    if (next.received[p] < final_offsets[p])
      next.received[p] = final_offsets[p];
    if (next.applied[p] < final_offsets[p])
      next.applied[p] = final_offsets[p];
    next.seen[p] = true;
  }
  for (auto it = next.pending.begin(); it != next.pending.end();) {
    auto p = static_cast<std::size_t>(std::max(it->second.partition, 0));
    if (p < n && it->first <= final_offsets[p])
      it = next.pending.erase(it); // the retired generation delivered it
    else
      ++it;
  }
  t.live = std::move(next);
  t.next.reset();
  t.retired_final.reset();
  t.swapped_since.reset();
  if (self->state.cfg.pages)
    self->state.cfg.pages->clear(); // pages read the retired generation
  log_info(component, name + ": following generation "
                        + std::to_string(t.live.generation));
  if (!continuous)
    lost(self, name,
         "the rebuilt generation's changes around the swap did "
         "not all reach this node");
  release(self, name, t);
  release_waiters(self);
}

void on_live_batch(pointer self, const std::string& name, projection_track& t,
                   std::size_t count, const v1::ChangeBatch& b);

/// After a swap notice, the successor's partitions that have published
/// nothing since its promotion leave the hub not knowing where their
/// batches start, and try_switch waits for them. On a quiet log none comes:
/// a build promoted at the head has nothing more to publish, and the switch
/// used to be forced after the grace period, ending every Watch stream of
/// the projection as "lost". The database knows: a silent partition it
/// shows at the retired generation's final offset (`db`, the successor's
/// committed offsets, read after the swap committed) has committed nothing
/// past it, so none of its broadcasts can be missing and its next batch
/// continues from there. Places those partitions at that offset; one the
/// database shows further is left to the grace period (its broadcasts are
/// late or lost).
void place_silent_successor(projection_track& t,
                            const std::vector<cursor>& db) {
  auto& final_offsets = *t.retired_final;
  if (db.size() != final_offsets.size())
    return;
  if (!t.next || t.next->generation != t.successor) {
    t.next.emplace();
    t.next->generation = t.successor;
  }
  auto& next = *t.next;
  next.resize(db.size());
  for (std::size_t p = 0; p < db.size(); ++p) {
    if (next.seen[p] || final_offsets[p] < db[p])
      continue;
    next.seen[p] = true;
    next.first_after[p] = db[p];
    if (next.received[p] < db[p])
      next.received[p] = db[p];
    if (next.applied[p] < db[p])
      next.applied[p] = db[p];
  }
}

/// Takes the logged batches of partition `p` up to `target` (what its
/// broadcasts would have carried), then the batches that waited.
void finish_fill(pointer self, const std::string& name, int32_t generation,
                 std::size_t p, const cursor& target,
                 const std::vector<std::string>* rows) {
  auto it = self->state.projections.find(name);
  if (it == self->state.projections.end()
      || it->second.live.generation != generation)
    return; // swapped meanwhile: the switch decided
  auto& t = it->second;
  auto& g = t.live;
  if (rows == nullptr)
    lost(self, name,
         "missed partition batches could not be read from the "
         "change log");
  else if (!rows->empty())
    log_info(component, name + "/" + std::to_string(p) + ": "
                          + std::to_string(rows->size())
                          + " missed batch(es) read from the change log");
  if (rows != nullptr)
    for (auto& bytes : *rows) {
      v1::ReadSideMessage msg;
      if (!msg.ParseFromString(bytes) || !msg.has_batch())
        continue;
      auto& b = msg.batch();
      for (auto& pc : b.changes()) {
        auto c = from_proto(pc);
        if (c && g.received[p] < cursor{c->tx, c->position})
          g.pending.emplace(cursor{c->tx, c->position}, std::move(*c));
      }
      auto to = from_proto(b.to());
      if (g.received[p] < to)
        g.received[p] = to;
    }
  // Batches not in the log changed nothing: the range is complete.
  if (g.received[p] < target)
    g.received[p] = target;
  if (g.applied[p] < target)
    g.applied[p] = target;
  g.filling[p] = false;
  g.fill_failures[p] = 0;
  auto waiting = std::move(g.stash[p]);
  g.stash[p].clear();
  auto count = g.received.size();
  while (!waiting.empty()) {
    auto b = std::move(waiting.front());
    waiting.pop_front();
    if (t.live.filling[p]) {
      t.live.stash[p].push_back(std::move(b));
      continue;
    }
    on_live_batch(self, name, t, count, b);
  }
  release(self, name, t);
  try_switch(self, name, t);
  release_waiters(self);
}

/// While the database is unreachable, a fill is tried again this often, up
/// to this many times (a minute), before the subscribers are told.
constexpr auto fill_retry = std::chrono::milliseconds(500);
constexpr int max_fill_failures = 120;

/// Reads partition `p`'s batches in (received, fill_to] from the change log.
void request_fill(pointer self, const std::string& name, generation_track& g,
                  std::size_t p) {
  auto& st = self->state;
  auto generation = g.generation;
  auto target = g.fill_to[p];
  self
    ->request(st.poller, std::chrono::seconds(10), fetch_atom::value, name,
              generation, static_cast<int32_t>(p), g.received[p], target)
    .then(
      [=](std::vector<std::string>& rows) {
        finish_fill(self, name, generation, p, target, &rows);
      },
      [=](caf::error&) {
        auto it = self->state.projections.find(name);
        if (it == self->state.projections.end()
            || it->second.live.generation != generation)
          return;
        auto& g = it->second.live;
        if (++g.fill_failures[p] >= max_fill_failures) {
          finish_fill(self, name, generation, p, target, nullptr);
          return;
        }
        self->delayed_send(self, fill_retry, retry_atom::value, name,
                           generation, static_cast<int32_t>(p));
      });
}

/// Reads partition `p`'s batches in (received, target] from the change log;
/// its later batches wait until they are in.
void start_fill(pointer self, const std::string& name, generation_track& g,
                std::size_t p, const cursor& target) {
  g.filling[p] = true;
  g.fill_to[p] = target;
  if (!self->state.poller) {
    finish_fill(self, name, g.generation, p, target, nullptr);
    return;
  }
  request_fill(self, name, g, p);
}

/// A batch of the live generation. A live partition's batch that does not
/// continue where this hub has the partition (its publisher died between
/// COMMIT and the broadcast, was frozen, or was not connected), or one
/// whose partition could not say what it changed (a COMMIT in doubt), is
/// completed from the change log first.
void on_live_batch(pointer self, const std::string& name, projection_track& t,
                   std::size_t count, const v1::ChangeBatch& b) {
  auto& g = t.live;
  g.resize(count);
  if (b.partitions_size() == 1 && b.partitions(0) >= 0
      && static_cast<std::size_t>(b.partitions(0)) < count) {
    auto p = static_cast<std::size_t>(b.partitions(0));
    if (g.filling[p]) {
      g.stash[p].push_back(b);
      return;
    }
    auto after = from_proto(b.after());
    if (g.seen[p] && g.received[p] < after) {
      g.stash[p].push_back(b);
      start_fill(self, name, g, p, after);
      return;
    }
    if (b.changes_lost()) {
      g.seen[p] = true;
      start_fill(self, name, g, p, from_proto(b.to()));
      return;
    }
  }
  // A rebuild's batches span every partition and are not logged.
  if (!take(g, count, b))
    lost(self, name, "partition batches of a rebuild were missed");
  else if (b.changes_lost())
    lost(self, name,
         "a partition's commit was in doubt and its changes are unknown");
}

void on_batch(pointer self, const v1::ChangeBatch& b) {
  auto& st = self->state;
  if (b.partitions_size() == 0) {
    // A retried dead letter: outside the log order, delivered as it comes.
    for (auto& pc : b.changes())
      if (auto c = from_proto(pc))
        deliver(self, *c);
    return;
  }
  auto count = static_cast<std::size_t>(std::max(b.partition_count(), 1));
  auto [it, fresh] = st.projections.try_emplace(b.projection());
  auto& t = it->second;
  if (fresh)
    t.live.generation = b.generation();
  if (b.generation() == t.live.generation) {
    on_live_batch(self, b.projection(), t, count, b);
    release(self, b.projection(), t);
    try_switch(self, b.projection(), t);
    release_waiters(self);
    return;
  }
  if (b.generation() < t.live.generation)
    return; // a retired generation's late batch
  if (!t.next || t.next->generation < b.generation()) {
    t.next.emplace();
    t.next->generation = b.generation();
  }
  if (t.next->generation == b.generation())
    take(*t.next, count, b);
  try_switch(self, b.projection(), t);
}

void poll(pointer self);

void on_swap(pointer self, const v1::GenerationSwap& s) {
  auto& st = self->state;
  auto& t = st.projections[s.projection()];
  if (t.live.generation >= s.live_generation())
    return;
  std::vector<cursor> final_offsets;
  for (auto& c : s.retired_offsets())
    final_offsets.push_back(from_proto(c));
  if (t.live.generation != s.retired_generation()) {
    // This hub never followed the retired generation (it started during
    // the rebuild, or missed a swap): start over with the new one.
    t.live = generation_track{};
    t.live.generation = s.live_generation();
    t.live.resize(final_offsets.size());
    t.live.received = final_offsets;
    t.live.applied = final_offsets;
    if (t.next && t.next->generation == s.live_generation())
      t.next.reset();
    lost(self, s.projection(), "a swap this node did not follow");
    release_waiters(self);
    return;
  }
  t.retired_final = std::move(final_offsets);
  t.successor = s.live_generation();
  try_switch(self, s.projection(), t);
  // Still waiting: the database may show the successor's silent
  // partitions where they are (place_silent_successor).
  if (t.retired_final)
    poll(self);
}

/// The database's view of the live generations: raises what waits use,
/// and detects broadcasts that will not come.
void on_offsets(pointer self, std::vector<live_offsets>& rows) {
  auto& st = self->state;
  auto now = clock_type::now();
  for (auto& row : rows) {
    auto [it, fresh] = st.projections.try_emplace(row.projection);
    auto& t = it->second;
    if (fresh) {
      t.live.generation = row.generation;
      t.live.resize(row.offsets.size());
      t.live.received = row.offsets;
      t.live.applied = row.offsets;
      for (std::size_t p = 0; p < row.offsets.size(); ++p)
        t.live.seen[p] = true;
      continue;
    }
    if (row.generation != t.live.generation) {
      if (row.generation < t.live.generation)
        continue;
      if (t.retired_final && row.generation == t.successor) {
        place_silent_successor(t, row.offsets);
        try_switch(self, row.projection, t);
        if (t.live.generation == row.generation)
          continue;
      }
      // Swapped in the database; the notice should follow shortly.
      if (!t.swapped_since) {
        t.swapped_since = now;
        continue;
      }
      if (now - *t.swapped_since < st.cfg.gap_grace)
        continue;
      if (t.retired_final) {
        try_switch(self, row.projection, t, true);
        continue;
      }
      generation_track g;
      g.generation = row.generation;
      g.resize(row.offsets.size());
      g.received = row.offsets;
      g.applied = row.offsets;
      t.live = std::move(g);
      t.next.reset();
      t.swapped_since.reset();
      lost(self, row.projection,
           "generation " + std::to_string(row.generation)
             + " was swapped in without notice");
      continue;
    }
    t.swapped_since.reset();
    auto& g = t.live;
    g.resize(std::max(g.received.size(), row.offsets.size()));
    for (std::size_t p = 0; p < row.offsets.size(); ++p) {
      auto& db = row.offsets[p];
      if (g.applied[p] < db)
        g.applied[p] = db;
      if (!(g.received[p] < db) || g.filling[p]) {
        g.behind_since[p].reset();
        continue;
      }
      if (!g.seen[p]) {
        // Nothing published yet by this partition: start from here.
        g.seen[p] = true;
        g.received[p] = db;
        continue;
      }
      // Broadcasts this late will not come: read them from the log.
      if (!g.behind_since[p]) {
        g.behind_since[p] = now;
      } else if (now - *g.behind_since[p] >= st.cfg.gap_grace) {
        g.behind_since[p].reset();
        start_fill(self, row.projection, g, p, db);
      }
    }
    release(self, row.projection, t);
  }
  release_waiters(self);
}

void poll(pointer self) {
  auto& st = self->state;
  if (!st.poller || st.polling)
    return;
  st.polling = true;
  self->request(st.poller, std::chrono::seconds(10), fetch_atom::value)
    .then(
      [=](std::vector<live_offsets>& rows) {
        self->state.polling = false;
        on_offsets(self, rows);
      },
      [=](caf::error&) { self->state.polling = false; });
}

/// The unit argument: CAF 0.17 binds a reference to a null tuple when a
/// function-based actor is spawned without arguments (undefined behaviour
/// that UBSan reports, and that stops the ASan build's node).
hub_actor::behavior_type hub(pointer self, hub_config cfg) {
  auto& st = self->state;
  st.cfg = cfg;
  if (!cfg.db_url.empty()) {
    st.poller = self->spawn<caf::detached + caf::linked>(poller, cfg.db_url);
    poll(self);
    self->delayed_send(self, cfg.poll, tick_atom::value);
  }
  self->set_down_handler([=](caf::down_msg& dm) { forget(self, dm.source); });
  return {
    [=](batch_atom, const std::string& bytes) {
      v1::ReadSideMessage msg;
      if (!msg.ParseFromString(bytes)) {
        log_warn(component, "dropped a malformed read-side message");
        return;
      }
      if (msg.has_batch())
        on_batch(self, msg.batch());
      else if (msg.has_swap())
        on_swap(self, msg.swap());
    },
    [=](subscribe_atom, const caf::actor& who, const subscription& s) {
      auto& st = self->state;
      std::vector<topic> ts;
      for (auto& id : s.user_ids)
        ts.emplace_back(change::user, id);
      for (auto& id : s.shout_ids)
        ts.emplace_back(change::shout, id);
      if (!s.timeline_owner.empty())
        ts.emplace_back(change::timeline_add, s.timeline_owner);
      auto addr = who.address();
      auto seen = st.feeds_seen.find(addr);
      for (auto& id : s.author_feeds)
        if (seen == st.feeds_seen.end() || seen->second.count(id) == 0)
          ts.emplace_back(change::author_post, id);
      if (st.actors.count(addr) == 0) {
        st.actors.emplace(addr, who);
        self->monitor(who);
      }
      for (auto& t : ts)
        add_topic(self, who, t);
      return true;
    },
    [=](unsub_atom, const caf::actor& who) { forget(self, who.address()); },
    [=](await_atom, const std::vector<std::string>& names, const cursor& c) {
      auto promise = self->make_response_promise<bool>();
      self->state.waiters.push_back({names, c, promise});
      release_waiters(self);
      if (!self->state.waiters.empty())
        poll(self);
      return promise;
    },
    [=](tick_atom) {
      poll(self);
      // Waiters are answered by broadcasts; the database read is the
      // fallback, frequent only while someone waits.
      auto& cfg = self->state.cfg;
      self->delayed_send(self,
                         self->state.waiters.empty() ? std::min(
                           cfg.poll * 5,
                           std::max(cfg.poll, std::chrono::milliseconds(1000)))
                                                     : cfg.poll,
                         tick_atom::value);
    },
    [=](retry_atom, const std::string& name, int32_t generation,
        int32_t partition) {
      auto it = self->state.projections.find(name);
      if (it == self->state.projections.end()
          || it->second.live.generation != generation || partition < 0)
        return;
      auto& g = it->second.live;
      auto p = static_cast<std::size_t>(partition);
      if (p < g.filling.size() && g.filling[p])
        request_fill(self, name, g, p);
    },
    [=](lost_atom, const std::string& why) {
      std::vector<caf::actor> all;
      for (auto& kv : self->state.actors)
        all.push_back(kv.second);
      for (auto& sub : all) {
        caf::anon_send(sub, lost_atom::value, why);
        forget(self, sub.address());
      }
    },
  };
}

} // namespace

hub_actor spawn_watch_hub(caf::actor_system& sys, hub_config cfg) {
  return sys.spawn(hub, std::move(cfg));
}

} // namespace shoutflow::projection
