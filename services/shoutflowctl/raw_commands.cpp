// `shoutflowctl list` and `shoutflowctl call METHOD REQUEST`: any RPC of the
// shoutflow.v1 services, the request in protobuf text format or JSON, sent
// as raw bytes through a generic stub (so every method works without a
// line of code per method).

#include <google/protobuf/descriptor.h>
#include <google/protobuf/text_format.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/generic/generic_stub.h>

#include <cstdlib>
#include <future>
#include <iostream>

#include "services/shoutflowctl/client.hpp"
#include "services/shoutflowctl/commands.hpp"
#include "services/shoutflowctl/output.hpp"
#include "shoutflow/v1/admin.pb.h"
#include "shoutflow/v1/commands.pb.h"
#include "shoutflow/v1/queries.pb.h"

namespace shoutflow::ctl {

namespace {

using google::protobuf::Message;
using google::protobuf::MethodDescriptor;
using google::protobuf::ServiceDescriptor;

constexpr const char* call_name = "call";

/// The services of the shoutflow.v1 package linked into this binary.
std::vector<const ServiceDescriptor*> services() {
  std::vector<const ServiceDescriptor*> out;
  // Referencing a generated type keeps its file (and service) linked in.
  for (auto* file : {v1::CommandResult::descriptor()->file(),
                     v1::UserView::descriptor()->file(),
                     v1::ClusterStatus::descriptor()->file()})
    for (int i = 0; i < file->service_count(); ++i)
      out.push_back(file->service(i));
  return out;
}

/// "RegisterUser" or "CommandService/RegisterUser".
const MethodDescriptor* find_method(const std::string& spec) {
  auto slash = spec.find('/');
  for (auto* service : services()) {
    if (slash != std::string::npos && service->name() != spec.substr(0, slash))
      continue;
    auto name = slash == std::string::npos ? spec : spec.substr(slash + 1);
    if (auto* m = service->FindMethodByName(name))
      return m;
  }
  return nullptr;
}

/// Without --address: $SHOUTFLOW_ADDRESS, else the admin address of the
/// other subcommands for AdminService methods, else the service's default
/// port (shared/API.md).
std::string default_address(const ServiceDescriptor* service,
                            const global_options& g) {
  if (auto* env = std::getenv("SHOUTFLOW_ADDRESS"); env && *env)
    return env;
  if (service->name() == "AdminService")
    return g.address;
  if (service->name() == "QueryService")
    return "127.0.0.1:50052";
  return "127.0.0.1:50051";
}

/// One unary call with serialized bytes both ways.
grpc::Status invoke(const std::string& address,
                    std::chrono::milliseconds timeout,
                    const MethodDescriptor* method, const Message& request,
                    Message* response) {
  auto bytes = request.SerializeAsString();
  grpc::Slice slice(bytes);
  grpc::ByteBuffer request_buffer(&slice, 1);
  grpc::ByteBuffer response_buffer;
  grpc::GenericStub stub(open_channel(address));
  auto ctx = deadline_context(timeout);
  std::promise<grpc::Status> done;
  stub.UnaryCall(ctx.get(),
                 "/" + method->service()->full_name() + "/" + method->name(),
                 grpc::StubOptions{}, &request_buffer, &response_buffer,
                 [&](grpc::Status s) { done.set_value(std::move(s)); });
  auto status = done.get_future().get();
  if (!status.ok())
    return status;
  std::vector<grpc::Slice> slices;
  if (!response_buffer.Dump(&slices).ok())
    return {grpc::StatusCode::INTERNAL, "unreadable response"};
  std::string reply;
  for (auto& s : slices)
    reply.append(reinterpret_cast<const char*>(s.begin()), s.size());
  if (!response->ParseFromString(reply))
    return {grpc::StatusCode::INTERNAL, "malformed response"};
  return status;
}

exit_code run_list(const global_options& g, const parsed_args&) {
  for (auto* service : services())
    for (int i = 0; i < service->method_count(); ++i) {
      auto* m = service->method(i);
      if (g.output == output_format::json)
        std::cout << "{\"service\": \"" << service->full_name()
                  << "\", \"method\": \"" << m->name() << "\", \"request\": \""
                  << m->input_type()->full_name() << "\", \"response\": \""
                  << m->output_type()->full_name() << "\"}\n";
      else
        std::cout << service->name() << "/" << m->name() << "("
                  << m->input_type()->name() << ") -> "
                  << m->output_type()->name() << "\n";
    }
  return exit_code::ok;
}

exit_code run_call(const global_options& g, const parsed_args& args) {
  auto& spec = args.positionals[0];
  auto* method = find_method(spec);
  if (method == nullptr)
    return usage_error(call_name, "unknown method '" + spec
                                    + "' (METHOD: see 'shoutflowctl list')");
  auto text = args.positionals.size() > 1 ? args.positionals[1] : "";
  auto* factory = google::protobuf::MessageFactory::generated_factory();
  std::unique_ptr<Message> request(
    factory->GetPrototype(method->input_type())->New());
  auto first = text.find_first_not_of(" \t\r\n");
  bool parsed
    = first != std::string::npos && text[first] == '{'
        ? google::protobuf::util::JsonStringToMessage(text, request.get()).ok()
        : google::protobuf::TextFormat::ParseFromString(text, request.get());
  if (!parsed)
    return usage_error(call_name, "REQUEST is not a valid "
                                    + method->input_type()->full_name()
                                    + " in protobuf text format or JSON");
  std::unique_ptr<Message> response(
    factory->GetPrototype(method->output_type())->New());
  auto address = g.address_from_flag ? g.address
                                     : default_address(method->service(), g);
  auto status = invoke(address, g.timeout, method, *request, response.get());
  if (!status.ok())
    return report(call_name, address, status);
  if (g.output == output_format::json) {
    print_json(std::cout, *response);
  } else {
    std::string printed;
    google::protobuf::TextFormat::PrintToString(*response, &printed);
    std::cout << printed;
  }
  return exit_code::ok;
}

} // namespace

command_spec list_command() {
  command_spec c;
  c.name = "list";
  c.synopsis = "list [--output text|json]";
  c.summary = "every RPC 'call' can send, with its request and reply types";
  c.details = "JSON: one object per line (service, method, request, "
              "response).";
  c.uses_address = false;
  c.run = run_list;
  return c;
}

command_spec call_command() {
  command_spec c;
  c.name = call_name;
  c.synopsis = "call METHOD [REQUEST] [--output text|json]";
  c.summary = "send any RPC of the Command-, Query- or AdminService";
  c.details
    = "METHOD is \"RegisterUser\" or \"CommandService/RegisterUser\".\n"
      "REQUEST is the request message in protobuf text format\n"
      "('command_id: \"c1\" user_id: \"alice\"') or JSON ('{\"user_id\":\n"
      "\"alice\"}'); empty by default. The reply is printed in text format\n"
      "(or as JSON). Without --address the port follows the service:\n"
      "$SHOUTFLOW_ADDRESS, else 127.0.0.1:50051 (CommandService), :50052\n"
      "(QueryService), or for AdminService methods the address the other\n"
      "subcommands use ($SHOUTFLOW_ADMIN_ADDRESS, else :50053).";
  c.positionals = {"METHOD"};
  c.optional_positionals = {"REQUEST"};
  c.run = run_call;
  return c;
}

} // namespace shoutflow::ctl
