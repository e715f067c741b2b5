#include "services/shoutflowctl/client.hpp"

namespace shoutflow::ctl {

std::string code_name(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "CODE_" + std::to_string(static_cast<int>(code));
  }
}

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
  auto message = code_name(status.error_code()) + ": " + status.error_message();
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
