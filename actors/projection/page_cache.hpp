#pragma once

// First pages of home timelines kept in memory, for GetTimeline without the
// database (docs/read-side.md, "GetTimeline from memory").
//
// The watch hub keeps it exact: it hands every change it releases to
// `invalidate` (or `clear`, when it may have missed changes or follows a
// new generation), in the order Watch streams get them, and publishes its
// progress with `set_progress`. A page depends on its owner's timeline and
// on every shout and author it shows; a change of any of those erases it.
//
// Filling races with changes: a page read from the database at snapshot S
// is stored only if no change to what it depends on was released since the
// read began (`begin_fill` returns the change counter, `fill` checks the
// changes released after it). A change committed after S is released after
// `begin_fill`, so it is either among those (the page is dropped) or
// released after `fill` (the page is erased then).
//
// Thread-safe: the hub writes, gRPC and pool threads read and fill.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "actors/projection/projection.hpp"

namespace shoutflow::projection {

class page_cache {
public:
  /// What a page depends on: a timeline (owner), a shout, a user.
  enum class kind : uint8_t { timeline, shout, user };
  using topic = std::pair<kind, std::string>;

  /// `capacity` pages at most (least recently used go first); `window`
  /// released changes remembered for fills in flight.
  explicit page_cache(std::size_t capacity, std::size_t window = 65536);

  /// The page of `owner` with `page_size` if it is known and as fresh as
  /// asked: with `min` (a min_position's cursor), only once every change up
  /// to it has been released here; without, only while the hub knows of no
  /// committed change it has not released.
  std::optional<std::string> find(const std::string& owner, int32_t page_size,
                                  const std::optional<cursor>& min = {});

  /// The change counter, taken before the page is read from the database.
  uint64_t begin_fill() const;

  /// Stores a page read after `begin_fill` returned `since`; false when a
  /// change to its topics was released meanwhile (or may have been: the
  /// window no longer reaches back, or everything was cleared).
  bool fill(const std::string& owner, int32_t page_size, std::string bytes,
            std::vector<topic> depends_on, uint64_t since);

  /// A released change of `t`: erases the pages that depend on it.
  void invalidate(const topic& t);

  /// Erases everything, and fails the fills in flight.
  void clear();

  /// The hub's progress: every change up to `released` has been handed to
  /// `invalidate` for each of the projections pages read; `current`: none
  /// is known to be committed and not released yet.
  void set_progress(std::optional<cursor> released, bool current);

  struct counts {
    uint64_t hits = 0;
    uint64_t misses = 0;
    uint64_t fills = 0;
    uint64_t fills_dropped = 0;
    uint64_t erased = 0;
    std::size_t pages = 0;
  };
  counts stats() const;

private:
  using key = std::pair<std::string, int32_t>;
  struct entry {
    std::string bytes;
    std::vector<topic> depends_on;
    std::list<key>::iterator lru;
  };

  void erase_locked(std::map<key, entry>::iterator it);
  bool touched_since_locked(const std::vector<topic>& ts, uint64_t since) const;

  mutable std::mutex mtx_;
  std::size_t capacity_;
  std::size_t window_;
  std::map<key, entry> pages_;
  std::list<key> lru_; // most recently used first
  std::map<topic, std::set<key>> dependents_;
  uint64_t seq_ = 0;
  /// The last `window_` released topics, the newest last, with their seq.
  std::deque<std::pair<uint64_t, topic>> recent_;
  uint64_t cleared_at_ = 0;
  std::optional<cursor> released_;
  bool current_ = false;
  counts counts_;
};

} // namespace shoutflow::projection
