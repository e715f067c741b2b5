#pragma once

// The watch hub: one per node with the query role. It is where the read
// side's progress meets the queries of this node.
//
// Every projection partition, wherever it runs, publishes each committed
// batch (v1::ChangeBatch: partitions, cursors before and after, changes) to
// the hub of every query node (through the peers actor). Per projection,
// the hub keeps, for each partition of the live generation, how far its
// batches have arrived in sequence, and releases changes in log order only
// up to the lowest of those: so a Watch sees every change of its subjects in
// log order, whichever nodes applied them. Users' and shouts' changes go
// as soon as their own partition has passed them: each such subject is a
// partition key, so its order is its partition's (`subjects_are_keys`);
// a timeline mixes authors of every partition. The same per-partition cursors,
// raised by a periodic read of projection_offsets (the fallback when a
// broadcast is late or lost), answer `await`: a query's min_position (G6)
// works on every query node.
//
// A live partition's batches also go, in their own transaction, to the
// change log (migration 0008). A partition whose batches do not continue
// where the hub has it (a new owner started past a batch its dead or
// frozen predecessor committed but never published), whose COMMIT was in
// doubt, or that the database shows further than its batches for longer
// than a grace period, is completed from that log before its later
// batches are taken: no change is missed. Only when the log cannot be read
// (or a rebuild's unlogged batches were missed) are the Watch subscribers
// of that projection told (lost_atom, reason); they end their streams with
// UNAVAILABLE, so their clients resubscribe and read current documents.
//
// Rebuilds: a rebuilt generation publishes from its promotion on (its
// changes are kept aside); the GenerationSwap message names the retired
// generation's final offsets. The hub delivers the retired generation's
// changes up to those, then the new one's after them, and from then on
// follows the new generation: every change once, in order, across a swap.
//
// Pages: the first pages of home timelines that GetTimeline answers from
// memory (page_cache.hpp) are kept exact here. Every released change erases
// the pages it touches before any later change goes out; whenever changes
// may have been missed (`lost`) or the hub follows a new generation, all of
// them go. The hub tells the cache how far it has released.
//
// Subscribers: each Watch session subscribes to the subjects it follows
// (users, shouts, a timeline, authors' feeds) and receives (change_atom,
// change) for those only; the hub monitors it and forgets it when it ends.
// A timeline also shows the posts of followed authors that were not fanned
// out (celebrities', merged at read time), which reach it as their author's
// feed changes. The hub keeps each timeline subscriber's feeds current
// itself: a feed_added / feed_removed change (a follow or unfollow by the
// timeline's owner) subscribes or unsubscribes it before the batch's later
// changes are forwarded. A subscriber subscribes its timeline first and its
// `author_feeds` (the owner's following list, read after that) second;
// follows the hub saw in between win over that list.

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <chrono>
#include <string>
#include <vector>

#include "actors/common/atoms.hpp"
#include "actors/projection/page_cache.hpp"
#include "actors/projection/projection.hpp"

#include <memory>

namespace shoutflow::projection {

struct subscription {
  std::vector<std::string> user_ids;
  std::vector<std::string> shout_ids;
  std::string timeline_owner;
  /// Authors whose posts reach `timeline_owner` only at read time.
  std::vector<std::string> author_feeds;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, subscription& x) {
  return f(x.user_ids, x.shout_ids, x.timeline_owner, x.author_feeds);
}

using hub_actor = caf::typed_actor<
  // A serialized v1::ReadSideMessage, from any node.
  caf::reacts_to<batch_atom, std::string>,
  // Answers once the subscription is in place: a subscriber reads its
  // initial documents after that, so no change falls between the two.
  caf::replies_to<subscribe_atom, caf::actor, subscription>::with<bool>,
  caf::reacts_to<unsub_atom, caf::actor>,
  // Answers true once every named projection's live generation has
  // applied everything up to the cursor.
  caf::replies_to<await_atom, std::vector<std::string>, cursor>::with<bool>,
  // The offsets fallback's timer.
  caf::reacts_to<tick_atom>,
  // Tell every subscriber to resubscribe elsewhere (the node is stopping).
  caf::reacts_to<lost_atom, std::string>,
  // Read (projection, generation, partition)'s missed batches again (the
  // database was unreachable).
  caf::reacts_to<retry_atom, std::string, int32_t, int32_t>>;

struct hub_config {
  /// Where the offsets fallback reads projection_offsets; empty: no
  /// fallback (engine tests that feed the hub themselves).
  std::string db_url;
  std::chrono::milliseconds poll{200};
  /// The database may show a partition further than its broadcasts for
  /// this long before the hub takes the broadcasts as lost.
  std::chrono::milliseconds gap_grace{1000};
  /// Timeline pages kept in memory (page_cache.hpp), which the hub keeps
  /// exact with what it releases; null: none.
  std::shared_ptr<page_cache> pages;
};

hub_actor spawn_watch_hub(caf::actor_system& sys, hub_config cfg);

} // namespace shoutflow::projection
