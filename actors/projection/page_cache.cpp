#include "actors/projection/page_cache.hpp"

#include <algorithm>

namespace shoutflow::projection {

page_cache::page_cache(std::size_t capacity, std::size_t window)
  : capacity_(capacity), window_(std::max<std::size_t>(window, 1)) {
}

std::optional<std::string> page_cache::find(const std::string& owner,
                                            int32_t page_size,
                                            const std::optional<cursor>& min) {
  std::lock_guard<std::mutex> guard{mtx_};
  bool fresh_enough = min ? released_ && *min <= *released_ : current_;
  auto it = fresh_enough ? pages_.find({owner, page_size}) : pages_.end();
  if (it == pages_.end()) {
    ++counts_.misses;
    return std::nullopt;
  }
  ++counts_.hits;
  lru_.splice(lru_.begin(), lru_, it->second.lru);
  return it->second.bytes;
}

uint64_t page_cache::begin_fill() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return seq_;
}

bool page_cache::touched_since_locked(const std::vector<topic>& ts,
                                      uint64_t since) const {
  if (since < cleared_at_)
    return true;
  // The window must hold every change after `since`.
  if (seq_ > since
      && (recent_.empty() || recent_.front().first > since + 1))
    return true;
  std::set<topic> wanted(ts.begin(), ts.end());
  for (auto it = recent_.rbegin(); it != recent_.rend() && it->first > since;
       ++it)
    if (wanted.count(it->second) > 0)
      return true;
  return false;
}

bool page_cache::fill(const std::string& owner, int32_t page_size,
                      std::string bytes, std::vector<topic> depends_on,
                      uint64_t since) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (capacity_ == 0)
    return false;
  if (touched_since_locked(depends_on, since)) {
    ++counts_.fills_dropped;
    return false;
  }
  key k{owner, page_size};
  if (auto old = pages_.find(k); old != pages_.end())
    erase_locked(old);
  while (pages_.size() >= capacity_ && !lru_.empty())
    erase_locked(pages_.find(lru_.back()));
  lru_.push_front(k);
  for (auto& t : depends_on)
    dependents_[t].insert(k);
  pages_.emplace(k, entry{std::move(bytes), std::move(depends_on),
                          lru_.begin()});
  ++counts_.fills;
  return true;
}

void page_cache::erase_locked(std::map<key, entry>::iterator it) {
  for (auto& t : it->second.depends_on) {
    auto d = dependents_.find(t);
    if (d == dependents_.end())
      continue;
    d->second.erase(it->first);
    if (d->second.empty())
      dependents_.erase(d);
  }
  lru_.erase(it->second.lru);
  pages_.erase(it);
  ++counts_.erased;
}

void page_cache::invalidate(const topic& t) {
  std::lock_guard<std::mutex> guard{mtx_};
  recent_.emplace_back(++seq_, t);
  if (recent_.size() > window_)
    recent_.pop_front();
  auto d = dependents_.find(t);
  if (d == dependents_.end())
    return;
  // erase_locked edits the set being walked: take it first.
  auto keys = std::move(d->second);
  dependents_.erase(d);
  for (auto& k : keys)
    if (auto it = pages_.find(k); it != pages_.end())
      erase_locked(it);
}

void page_cache::clear() {
  std::lock_guard<std::mutex> guard{mtx_};
  cleared_at_ = ++seq_;
  recent_.clear();
  counts_.erased += pages_.size();
  pages_.clear();
  lru_.clear();
  dependents_.clear();
}

void page_cache::set_progress(std::optional<cursor> released, bool current) {
  std::lock_guard<std::mutex> guard{mtx_};
  released_ = released;
  current_ = current && released.has_value();
}

page_cache::counts page_cache::stats() const {
  std::lock_guard<std::mutex> guard{mtx_};
  auto out = counts_;
  out.pages = pages_.size();
  return out;
}

} // namespace shoutflow::projection
