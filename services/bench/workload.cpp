#include "services/bench/workload.hpp"

#include <algorithm>

namespace shoutflow::bench {

namespace {

struct mix_entry {
  mix_kind kind;
  const char* name;
};
constexpr std::array<mix_entry, 7> mixes{{
  {mix_kind::write, "write"},
  {mix_kind::timeline, "timeline"},
  {mix_kind::post, "post"},
  {mix_kind::get_user, "get-user"},
  {mix_kind::get_timeline, "get-timeline"},
  {mix_kind::get_shout, "get-shout"},
  {mix_kind::floor, "floor"},
}};

} // namespace

const char* op_name(op_kind k) {
  switch (k) {
    case op_kind::register_user:
      return "register_user";
    case op_kind::follow:
      return "follow";
    case op_kind::seed_shout:
      return "seed_shout";
    case op_kind::post_shout:
      return "post_shout";
    case op_kind::get_timeline:
      return "get_timeline";
    case op_kind::get_user:
      return "get_user";
    case op_kind::get_shout:
      return "get_shout";
    case op_kind::floor:
      return "floor";
    case op_kind::visible:
      return "visible";
  }
  return "unknown";
}

std::optional<mix_kind> parse_mix(const std::string& name) {
  for (auto& m : mixes)
    if (name == m.name)
      return m.kind;
  return std::nullopt;
}

const char* mix_name(mix_kind k) {
  for (auto& m : mixes)
    if (m.kind == k)
      return m.name;
  return "unknown";
}

const char* mix_names() {
  return "write, timeline, post, get-user, get-timeline, get-shout, floor";
}

bool mix_reads(mix_kind m) {
  return m != mix_kind::write && m != mix_kind::post;
}

bool mix_writes(mix_kind m) {
  return m == mix_kind::write || m == mix_kind::post || m == mix_kind::timeline;
}

op_picker::op_picker(mix_kind m) {
  switch (m) {
    case mix_kind::write:
    case mix_kind::post:
      weights_ = {{op_kind::post_shout, 1}};
      break;
    case mix_kind::timeline:
      // 1 write : 50 reads.
      weights_ = {{op_kind::post_shout, 1},
                  {op_kind::get_timeline, 30},
                  {op_kind::get_user, 10},
                  {op_kind::get_shout, 10}};
      break;
    case mix_kind::get_user:
      weights_ = {{op_kind::get_user, 1}};
      break;
    case mix_kind::get_timeline:
      weights_ = {{op_kind::get_timeline, 1}};
      break;
    case mix_kind::get_shout:
      weights_ = {{op_kind::get_shout, 1}};
      break;
    case mix_kind::floor:
      weights_ = {{op_kind::floor, 1}};
      break;
  }
  for (auto& [op, w] : weights_)
    total_ += w;
}

op_kind op_picker::pick(std::mt19937_64& rng) const {
  if (weights_.size() == 1)
    return weights_.front().first;
  std::uniform_int_distribution<int> d{0, total_ - 1};
  int x = d(rng);
  for (auto& [op, w] : weights_) {
    if (x < w)
      return op;
    x -= w;
  }
  return weights_.back().first;
}

void shout_ids::add(const std::string& id, int64_t position) {
  std::lock_guard<std::mutex> guard{mu_};
  if (ids_.size() < capacity_) {
    ids_.push_back({id, position});
  } else {
    ids_[next_] = {id, position};
    next_ = (next_ + 1) % capacity_;
  }
}

std::optional<known_shout> shout_ids::any(std::mt19937_64& rng) {
  std::lock_guard<std::mutex> guard{mu_};
  if (ids_.empty())
    return std::nullopt;
  std::uniform_int_distribution<std::size_t> d{0, ids_.size() - 1};
  return ids_[d(rng)];
}

std::size_t shout_ids::size() {
  std::lock_guard<std::mutex> guard{mu_};
  return ids_.size();
}

int user_space::follow_target(int i, int k, int follows) const {
  // Strides of users / (follows + 1) from i: k < follows keeps the offset in
  // [1, users - 1], so the target is never i.
  int stride = std::max(1, users / (follows + 1));
  long offset = 1 + static_cast<long>(k) * stride;
  return static_cast<int>((i + offset % users) % users);
}

} // namespace shoutflow::bench
