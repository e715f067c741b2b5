// `shoutflowctl cluster`: members, the shard map and the partition map
// (AdminService/GetClusterStatus; any node answers for the whole cluster).

#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>

#include "services/shoutflowctl/client.hpp"
#include "services/shoutflowctl/commands.hpp"
#include "services/shoutflowctl/output.hpp"

namespace shoutflow::ctl {

namespace {

/// "0-3,7,9-12"
std::string ranges(const std::vector<int>& parts) {
  std::ostringstream out;
  for (std::size_t i = 0; i < parts.size();) {
    auto j = i;
    while (j + 1 < parts.size() && parts[j + 1] == parts[j] + 1)
      ++j;
    out << (i > 0 ? "," : "") << parts[i];
    if (j > i)
      out << "-" << parts[j];
    i = j + 1;
  }
  return out.str();
}

void print_text(const v1::ClusterStatus& status) {
  table members({"MEMBER", "STATE", "HEARTBEAT", "SHARDS", "PARTITIONS",
                 "ROLES", "ADDRESSES"});
  for (auto& m : status.members()) {
    std::string roles;
    for (auto& r : m.roles())
      roles += (roles.empty() ? "" : ",") + r;
    std::string addresses = "caf=" + m.address();
    for (auto& [name, value] :
         {std::pair<const char*, std::string>{"command", m.command_address()},
          {"query", m.query_address()},
          {"admin", m.admin_address()},
          {"metrics", m.metrics_url()}})
      if (!value.empty())
        addresses += std::string{" "} + name + "=" + value;
    members.add({m.node_id(), m.state(),
                 format_seconds(m.heartbeat_age_seconds()),
                 std::to_string(m.shards_owned()),
                 std::to_string(m.partitions_owned()), roles, addresses});
  }
  members.print(std::cout);

  std::map<std::string, std::vector<int>> by_owner;
  int unowned = 0;
  for (auto& l : status.shard_leases()) {
    if (l.owner().empty())
      ++unowned;
    by_owner[l.owner().empty() ? "(none)" : l.owner()].push_back(l.part());
  }
  std::cout << "\nshards: " << status.shards() << ", "
            << static_cast<int64_t>(status.shards()) - unowned << " owned\n";
  for (auto& [owner, parts] : by_owner)
    std::cout << "  " << std::left << std::setw(8) << owner << " "
              << ranges(parts) << "\n";

  std::cout << "\npartitions:\n";
  std::map<std::string, std::string> by_resource;
  for (auto& l : status.partition_leases())
    by_resource[l.resource()] += " " + std::to_string(l.part()) + "="
                                 + (l.owner().empty() ? "(none)" : l.owner())
                                 + "@" + std::to_string(l.epoch());
  for (auto& [resource, leases] : by_resource)
    std::cout << "  " << std::left << std::setw(24) << resource << leases
              << "\n";
}

exit_code run(const global_options& g, const parsed_args&) {
  admin_client client{g};
  v1::ClusterStatus status;
  auto s = client.call(&v1::AdminService::Stub::GetClusterStatus,
                       v1::GetClusterStatusRequest{}, &status);
  if (!s.ok())
    return report("cluster", client.address(), s);
  if (g.output == output_format::json)
    print_json(std::cout, status);
  else
    print_text(status);
  return exit_code::ok;
}

} // namespace

command_spec cluster_command() {
  command_spec c;
  c.name = "cluster";
  c.synopsis = "cluster [--output text|json]";
  c.summary = "members, their state and heartbeat age, the shard map and the "
              "partition map";
  c.details
    = "Any node answers for the whole cluster (from the membership and lease\n"
      "tables). Text: one line per member, then the shards as ranges per\n"
      "owner, then each projection's partitions as PART=OWNER@EPOCH (the\n"
      "epoch is the lease's fencing token). JSON: the ClusterStatus message.";
  c.run = run;
  return c;
}

} // namespace shoutflow::ctl
