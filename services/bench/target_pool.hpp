// The gRPC connections of a run: C connections to each target, stubs handed
// out round robin over all of them, so load spreads over the nodes of a
// cluster and over several HTTP/2 connections per node.

#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "shoutflow/v1/commands.grpc.pb.h"
#include "shoutflow/v1/queries.grpc.pb.h"

namespace shoutflow::bench {

class target_pool {
public:
  target_pool(const std::vector<std::string>& command_targets,
              const std::vector<std::string>& query_targets, int channels);

  /// Waits until every target's grpc.health.v1 check answers SERVING (the
  /// node's servers say so once it has joined). False with the first
  /// target that did not, in `failed`.
  bool wait_ready(std::chrono::milliseconds timeout, std::string& failed);

  bool has_commands() const {
    return !commands_.empty();
  }
  bool has_queries() const {
    return !queries_.empty();
  }

  v1::CommandService::Stub& command();
  v1::QueryService::Stub& query();
  /// The query stubs of each target (one per target), for per-node waits.
  std::vector<v1::QueryService::Stub*> query_per_target();

private:
  std::vector<std::string> addresses_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<v1::CommandService::Stub>> commands_;
  std::vector<std::unique_ptr<v1::QueryService::Stub>> queries_;
  int per_target_;
  std::atomic<std::size_t> next_command_{0};
  std::atomic<std::size_t> next_query_{0};
};

} // namespace shoutflow::bench
