#include "actors/projection/read_side_codec.hpp"

#include <google/protobuf/arena.h>

namespace shoutflow::projection {

v1::LogCursor to_proto(const cursor& c) {
  v1::LogCursor out;
  out.set_tx(c.tx);
  out.set_position(c.position);
  return out;
}

cursor from_proto(const v1::LogCursor& c) {
  return {c.tx(), c.position()};
}

namespace {

v1::ChangeKind kind_to_proto(change::kind_t k) {
  switch (k) {
    case change::user:
      return v1::CHANGE_KIND_USER;
    case change::shout:
      return v1::CHANGE_KIND_SHOUT;
    case change::timeline_add:
      return v1::CHANGE_KIND_TIMELINE_ADD;
    case change::timeline_remove:
      return v1::CHANGE_KIND_TIMELINE_REMOVE;
    case change::author_post:
      return v1::CHANGE_KIND_AUTHOR_POST;
    case change::author_remove:
      return v1::CHANGE_KIND_AUTHOR_REMOVE;
    case change::feed_added:
      return v1::CHANGE_KIND_FEED_ADDED;
    case change::feed_removed:
      return v1::CHANGE_KIND_FEED_REMOVED;
  }
  return v1::CHANGE_KIND_UNSPECIFIED;
}

std::optional<change::kind_t> kind_from_proto(v1::ChangeKind k) {
  switch (k) {
    case v1::CHANGE_KIND_USER:
      return change::user;
    case v1::CHANGE_KIND_SHOUT:
      return change::shout;
    case v1::CHANGE_KIND_TIMELINE_ADD:
      return change::timeline_add;
    case v1::CHANGE_KIND_TIMELINE_REMOVE:
      return change::timeline_remove;
    case v1::CHANGE_KIND_AUTHOR_POST:
      return change::author_post;
    case v1::CHANGE_KIND_AUTHOR_REMOVE:
      return change::author_remove;
    case v1::CHANGE_KIND_FEED_ADDED:
      return change::feed_added;
    case v1::CHANGE_KIND_FEED_REMOVED:
      return change::feed_removed;
    default:
      return std::nullopt;
  }
}

} // namespace

void to_proto(const change& c, v1::ReadModelChange* out) {
  out->set_kind(kind_to_proto(c.kind));
  out->set_subject(c.subject);
  out->set_item(c.item);
  auto* at = out->mutable_at();
  at->set_tx(c.tx);
  at->set_position(c.position);
  out->set_partition(c.partition);
}

v1::ReadModelChange to_proto(const change& c) {
  v1::ReadModelChange out;
  to_proto(c, &out);
  return out;
}

std::optional<change> from_proto(const v1::ReadModelChange& c) {
  auto kind = kind_from_proto(c.kind());
  if (!kind)
    return std::nullopt;
  change out;
  out.kind = *kind;
  out.subject = c.subject();
  out.item = c.item();
  out.tx = c.at().tx();
  out.position = c.at().position();
  out.partition = c.partition();
  return out;
}

std::string
encode_batch(const std::string& projection, int32_t generation,
             int32_t partition_count, const std::vector<int32_t>& partitions,
             const cursor& after, const cursor& to,
             const std::vector<change>& changes, bool changes_lost) {
  // Built in place on one arena: a timelines batch holds a change per
  // home a post reaches, and a temporary per change (then copied into the
  // batch) was most of the encoding's cost (codec_bench).
  google::protobuf::Arena arena;
  auto* msg
    = google::protobuf::Arena::CreateMessage<v1::ReadSideMessage>(&arena);
  auto* b = msg->mutable_batch();
  b->set_projection(projection);
  b->set_generation(generation);
  b->set_partition_count(partition_count);
  for (auto p : partitions)
    b->add_partitions(p);
  *b->mutable_after() = to_proto(after);
  *b->mutable_to() = to_proto(to);
  b->mutable_changes()->Reserve(static_cast<int>(changes.size()));
  for (auto& c : changes)
    to_proto(c, b->add_changes());
  b->set_changes_lost(changes_lost);
  return msg->SerializeAsString();
}

std::string encode_swap(const std::string& projection, int32_t retired,
                        int32_t live,
                        const std::vector<cursor>& retired_offsets) {
  v1::ReadSideMessage msg;
  auto* s = msg.mutable_swap();
  s->set_projection(projection);
  s->set_retired_generation(retired);
  s->set_live_generation(live);
  s->set_partition_count(static_cast<int32_t>(retired_offsets.size()));
  for (auto& c : retired_offsets)
    *s->add_retired_offsets() = to_proto(c);
  return msg.SerializeAsString();
}

} // namespace shoutflow::projection
