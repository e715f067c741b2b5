#pragma once

// shoutflowctl's connection to a node: a typed AdminService stub whose
// calls carry the --timeout deadline, and the one place where a gRPC
// status becomes an exit code and a message (cli.hpp lists the codes).

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "services/shoutflowctl/cli.hpp"
#include "shoutflow/v1/admin.grpc.pb.h"

namespace shoutflow::ctl {

/// The exit code of a failed call (cli.hpp).
exit_code exit_code_of(grpc::StatusCode code);

/// Reports a failed call of `subcommand` to `address` on stderr
/// ("shoutflowctl: stream: INVALID_ARGUMENT: user_id: ...") and returns its
/// exit code.
exit_code report(const std::string& subcommand, const std::string& address,
                 const grpc::Status& status);

/// A channel to `address` that accepts replies of up to 64 MiB (a long
/// stream or dead-letter list).
std::shared_ptr<grpc::Channel> open_channel(const std::string& address);

/// A context whose deadline is `timeout` from now.
std::unique_ptr<grpc::ClientContext>
deadline_context(std::chrono::milliseconds timeout);

class admin_client {
public:
  explicit admin_client(const global_options& g);

  template <class Request, class Response>
  using method = grpc::Status (v1::AdminService::Stub::*)(grpc::ClientContext*,
                                                          const Request&,
                                                          Response*);

  /// One unary call with the --timeout deadline.
  template <class Request, class Response>
  grpc::Status call(method<Request, Response> m, const Request& request,
                    Response* response) {
    auto ctx = deadline_context(timeout_);
    return (stub_.get()->*m)(ctx.get(), request, response);
  }

  const std::string& address() const {
    return address_;
  }

private:
  std::string address_;
  std::chrono::milliseconds timeout_;
  std::unique_ptr<v1::AdminService::Stub> stub_;
};

} // namespace shoutflow::ctl
