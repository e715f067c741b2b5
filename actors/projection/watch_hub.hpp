#pragma once

// The watch hub: each live reader reports a batch's read-model changes, in
// log order, once all its partitions have committed (a retried dead letter's
// partition reports its own); Watch streams subscribe to the subjects they
// follow (users, shouts, a timeline, authors' feeds) and receive (change,
// change) messages for those only. A subscriber is any actor; the hub
// monitors it and forgets it when it ends (a cancelled stream frees
// everything).
//
// A timeline also shows the posts of followed authors that were not fanned
// out (celebrities', merged at read time), which reach it as their
// author's feed changes. The hub keeps each timeline subscriber's feeds
// current itself: a feed_added / feed_removed change (a follow or unfollow
// by the timeline's owner) subscribes or unsubscribes it before the
// batch's later changes are forwarded, so no post of a newly followed
// author falls between the follow and the subscription. A subscriber
// subscribes its timeline first and its `author_feeds` (the owner's
// following list, read after that) second; follows the hub saw in between
// win over that list.

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <string>
#include <vector>

#include "actors/common/atoms.hpp"
#include "actors/projection/projection.hpp"

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
  caf::reacts_to<changes_atom, std::vector<change>>,
  // Answers once the subscription is in place: a subscriber reads its
  // initial documents after that, so no change falls between the two.
  caf::replies_to<subscribe_atom, caf::actor, subscription>::with<bool>,
  caf::reacts_to<unsub_atom, caf::actor>>;

hub_actor spawn_watch_hub(caf::actor_system& sys);

} // namespace shoutflow::projection
