#pragma once

// An in-process ShoutFlow node for integration tests: real actor system,
// real PostgreSQL (a test_database), real gRPC on a free loopback port.
// Passwords are hashed at libsodium's minimum cost (tests only).

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "services/node/node.hpp"
#include "shoutflow/v1/admin.grpc.pb.h"
#include "shoutflow/v1/commands.grpc.pb.h"
#include "shoutflow/v1/entity.pb.h"
#include "shoutflow/v1/queries.grpc.pb.h"
// The commands that tests send through test_node::send (register_user,
// post_shout, follow) are built there.
#include "tests/support/commands.hpp"

namespace shoutflow::testing {

/// Test defaults: free ports, no metrics endpoint, cheap password hashing,
/// the write path only (roles command and entities).
node::node_config test_config(const std::string& db_url);

/// Adds the read side (roles query and projections) to a test config.
void with_read_side(node::node_config& cfg);

class test_node {
public:
  /// `clk` (optional) must outlive the node.
  explicit test_node(const std::string& db_url,
                     const std::function<void(node::node_config&)>& tweak = {},
                     const clock* clk = nullptr);
  ~test_node();

  node::node& get() {
    return *node_;
  }

  /// A new channel + stub to the CommandService.
  std::unique_ptr<v1::CommandService::Stub> command_stub() const;
  /// The same for the QueryService and AdminService.
  std::unique_ptr<v1::QueryService::Stub> query_stub() const;
  std::unique_ptr<v1::AdminService::Stub> admin_stub() const;

  /// Sends one command through the router (no gRPC) and waits for the
  /// reply; a CAF error becomes an UNAVAILABLE/DEADLINE_EXCEEDED rejection.
  v1::EntityReply
  send(const v1::UserCommand& command,
       std::chrono::milliseconds timeout = std::chrono::seconds(10));

  /// Stops the node gracefully (idempotent).
  void stop();

private:
  std::unique_ptr<node::node> node_;
};

/// The value of a counter or gauge of the node's registry: the child whose
/// label `label` is `value` (the first child when `label` is empty).
/// ADD_FAILUREs and returns -1 when there is no such metric.
double metric_value(test_node& n, const std::string& name,
                    const std::string& label = {},
                    const std::string& value = {});

/// A client context with a deadline.
std::unique_ptr<grpc::ClientContext>
context_with_deadline(std::chrono::milliseconds timeout
                      = std::chrono::seconds(10));

} // namespace shoutflow::testing
