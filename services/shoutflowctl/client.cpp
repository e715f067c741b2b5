#include "services/shoutflowctl/client.hpp"

#include "services/common/status_code_name.hpp"

namespace shoutflow::ctl {

exit_code exit_code_of(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return exit_code::ok;
    case grpc::StatusCode::INVALID_ARGUMENT:
      return exit_code::usage;
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return exit_code::unreachable;
    case grpc::StatusCode::NOT_FOUND:
      return exit_code::not_found;
    default:
      return exit_code::server_error;
  }
}

exit_code report(const std::string& subcommand, const std::string& address,
                 const grpc::Status& status) {
  auto code = exit_code_of(status.error_code());
  auto message = services::status_code_name(status.error_code()) + ": "
                 + status.error_message();
  // Whether the node answered or was never reached, the operator needs to
  // know which one we asked.
  if (code == exit_code::unreachable)
    message += " (node " + address + ")";
  return fail(subcommand, code, message);
}

std::shared_ptr<grpc::Channel> open_channel(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 * 1024 * 1024);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(),
                                   args);
}

std::unique_ptr<grpc::ClientContext>
deadline_context(std::chrono::milliseconds timeout) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + timeout);
  return ctx;
}

admin_client::admin_client(const global_options& g)
  : address_(g.address),
    timeout_(g.timeout),
    stub_(v1::AdminService::NewStub(open_channel(g.address))) {
}

} // namespace shoutflow::ctl
