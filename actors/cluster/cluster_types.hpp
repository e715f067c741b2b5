#pragma once

// The cluster's vocabulary: members, leases and the view a node has of
// both after a membership round (docs/cluster.md). Plain structs with an
// inspect() each, so CAF can carry them between this node's actors.
//
// Resources owned through leases: "shard" (part = shard number) and
// "projection/<name>" (part = partition index).

#include <cstdint>
#include <string>
#include <vector>

namespace shoutflow::cluster {

constexpr const char* shard_resource = "shard";

/// "projection/<name>"
inline std::string partition_resource(const std::string& projection) {
  return "projection/" + projection;
}

/// The projection of a partition resource, or empty for other resources.
inline std::string projection_of(const std::string& resource) {
  static const std::string prefix = "projection/";
  return resource.rfind(prefix, 0) == 0 ? resource.substr(prefix.size())
                                        : std::string{};
}

enum class member_state : uint8_t { joining, up, leaving, down };

const char* to_string(member_state s);

/// Parses "joining", "up", "leaving" or "down" (anything else: down).
member_state member_state_from(const std::string& s);

struct member {
  int32_t node_id = 0;
  std::string incarnation;
  std::string host;
  int32_t caf_port = 0;
  int32_t command_port = 0;
  int32_t query_port = 0;
  int32_t admin_port = 0;
  int32_t metrics_port = 0;
  std::vector<std::string> roles;
  member_state state = member_state::joining;
  int64_t heartbeat_age_ms = 0;

  bool has_role(const std::string& role) const;
  /// Takes new work: joining or up.
  bool active() const {
    return state == member_state::joining || state == member_state::up;
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, member& x) {
  return f(x.node_id, x.incarnation, x.host, x.caf_port, x.command_port,
           x.query_port, x.admin_port, x.metrics_port, x.roles, x.state,
           x.heartbeat_age_ms);
}

/// One lease as the database holds it.
struct lease {
  std::string resource;
  int32_t part = 0;
  /// -1: free.
  int32_t owner_node = -1;
  int64_t epoch = 0;
  /// Unexpired by the database clock at the time of the round.
  bool valid = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, lease& x) {
  return f(x.resource, x.part, x.owner_node, x.epoch, x.valid);
}

/// A lease this node holds, or is told to serve or give up.
struct lease_grant {
  std::string resource;
  int32_t part = 0;
  int64_t epoch = 0;
};

inline bool operator==(const lease_grant& a, const lease_grant& b) {
  return a.resource == b.resource && a.part == b.part && a.epoch == b.epoch;
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, lease_grant& x) {
  return f(x.resource, x.part, x.epoch);
}

/// What a node knows after a membership round.
struct cluster_view {
  /// Every member row (down ones included until they are deleted).
  std::vector<member> members;
  /// Every lease row.
  std::vector<lease> leases;
  int32_t self = 0;
  uint64_t round = 0;

  /// The owner of a valid lease, or -1.
  int32_t owner_of(const std::string& resource, int32_t part) const;
  const member* find(int32_t node_id) const;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cluster_view& x) {
  return f(x.members, x.leases, x.self, x.round);
}

} // namespace shoutflow::cluster
