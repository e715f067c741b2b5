#include "actors/projection/watch_hub.hpp"

#include <caf/all.hpp>

#include <map>
#include <set>

namespace shoutflow::projection {

namespace {

/// (kind, subject) -> subscribers
using topic = std::pair<uint8_t, std::string>;

struct hub_state {
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
/// of this batch is forwarded.
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

/// The unit argument: CAF 0.17 binds a reference to a null tuple when a
/// function-based actor is spawned without arguments (undefined behaviour
/// that UBSan reports, and that stops the ASan build's node).
hub_actor::behavior_type hub(pointer self, caf::unit_t) {
  self->set_down_handler(
    [=](caf::down_msg& dm) { forget(self, dm.source); });
  return {
    [=](changes_atom, const std::vector<change>& changes) {
      auto& st = self->state;
      if (st.subscribers.empty())
        return;
      for (auto& c : changes) {
        if (c.kind == change::feed_added || c.kind == change::feed_removed) {
          follow_feed(self, c);
          continue;
        }
        for (auto& t : topics(c)) {
          auto it = st.subscribers.find(t);
          if (it == st.subscribers.end())
            continue;
          for (auto& sub : it->second)
            caf::anon_send(sub, change_atom::value, c);
        }
      }
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
  };
}

} // namespace

hub_actor spawn_watch_hub(caf::actor_system& sys) {
  return sys.spawn(hub, caf::unit);
}

} // namespace shoutflow::projection
