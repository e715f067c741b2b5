// shoutflowctl: the operator's command-line client.
//
//   shoutflowctl [--address HOST:PORT] [--timeout SECONDS] list
//   shoutflowctl [--address HOST:PORT] [--timeout SECONDS] call METHOD 'REQUEST'
//   shoutflowctl migrate --db-url URL
//
// `call` sends any RPC of the shoutflow.v1 services; METHOD is "RegisterUser"
// or "CommandService/RegisterUser", REQUEST is the request message in
// protobuf text format (e.g. 'command_id: "c1" user_id: "alice"'). The reply
// is printed in text format; an error prints the gRPC status and exits 1.
// The address defaults to SHOUTFLOW_ADDRESS, else 127.0.0.1:50051 for
// CommandService methods, :50052 for QueryService and :50053 for
// AdminService methods.

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/text_format.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <cstdlib>
#include <future>
#include <iostream>
#include <string>
#include <vector>

#include "actors/journal/migrations.hpp"
#include "services/common/grpc_status.hpp"
#include "shoutflow/v1/commands.pb.h"
#include "shoutflow/v1/admin.pb.h"
#include "shoutflow/v1/queries.pb.h"

namespace {

using google::protobuf::MethodDescriptor;
using google::protobuf::ServiceDescriptor;

/// The services of the shoutflow.v1 package linked into this binary.
std::vector<const ServiceDescriptor*> services() {
  std::vector<const ServiceDescriptor*> out;
  // Referencing a generated type keeps its file (and service) linked in.
  for (auto* file : {shoutflow::v1::CommandResult::descriptor()->file(),
                     shoutflow::v1::UserView::descriptor()->file(),
                     shoutflow::v1::ClusterStatus::descriptor()->file()})
    for (int i = 0; i < file->service_count(); ++i)
      out.push_back(file->service(i));
  return out;
}

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

int usage() {
  std::cerr << "usage: shoutflowctl [--address HOST:PORT] [--timeout SECONDS] "
               "list\n"
               "       shoutflowctl [--address HOST:PORT] [--timeout SECONDS] "
               "call METHOD 'TEXT-FORMAT REQUEST'\n"
               "       shoutflowctl migrate --db-url URL\n";
  return 2;
}

int call(const std::string& address, int timeout_s, const std::string& spec,
         const std::string& text) {
  auto* method = find_method(spec);
  if (method == nullptr) {
    std::cerr << "shoutflowctl: unknown method '" << spec
              << "' (see: shoutflowctl list)\n";
    return 2;
  }
  auto* factory = google::protobuf::MessageFactory::generated_factory();
  std::unique_ptr<google::protobuf::Message> request(
    factory->GetPrototype(method->input_type())->New());
  if (!google::protobuf::TextFormat::ParseFromString(text, request.get())) {
    std::cerr << "shoutflowctl: the request is not a valid "
              << method->input_type()->full_name() << " in text format\n";
    return 2;
  }
  auto bytes = request->SerializeAsString();
  grpc::Slice slice(bytes);
  grpc::ByteBuffer request_buffer(&slice, 1);
  grpc::ByteBuffer response_buffer;
  grpc::GenericStub stub(
    grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now()
                   + std::chrono::seconds(timeout_s));
  std::promise<grpc::Status> done;
  stub.UnaryCall(&ctx,
                 "/" + method->service()->full_name() + "/" + method->name(),
                 grpc::StubOptions{}, &request_buffer, &response_buffer,
                 [&](grpc::Status s) { done.set_value(std::move(s)); });
  auto status = done.get_future().get();
  if (!status.ok()) {
    std::cerr << "ERROR " << shoutflow::services::code_label(status.error_code())
              << ": " << status.error_message() << "\n";
    return 1;
  }
  std::vector<grpc::Slice> slices;
  if (!response_buffer.Dump(&slices).ok()) {
    std::cerr << "shoutflowctl: unreadable response\n";
    return 1;
  }
  std::string reply;
  for (auto& s : slices)
    reply.append(reinterpret_cast<const char*>(s.begin()), s.size());
  std::unique_ptr<google::protobuf::Message> response(
    factory->GetPrototype(method->output_type())->New());
  if (!response->ParseFromString(reply)) {
    std::cerr << "shoutflowctl: malformed response\n";
    return 1;
  }
  std::string printed;
  google::protobuf::TextFormat::PrintToString(*response, &printed);
  std::cout << printed;
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::string address;
  if (auto* env = std::getenv("SHOUTFLOW_ADDRESS"))
    address = env;
  int timeout_s = 10;
  std::string db_url;
  std::vector<std::string> rest;
  for (std::size_t i = 0; i < args.size(); ++i) {
    auto value = [&]() -> std::string {
      return i + 1 < args.size() ? args[++i] : std::string{};
    };
    if (args[i] == "--address")
      address = value();
    else if (args[i] == "--timeout")
      timeout_s = std::atoi(value().c_str());
    else if (args[i] == "--db-url")
      db_url = value();
    else if (args[i] == "-h" || args[i] == "--help")
      return usage();
    else
      rest.push_back(args[i]);
  }
  if (timeout_s <= 0)
    timeout_s = 10;
  if (rest.size() == 1 && rest[0] == "list") {
    for (auto* service : services())
      for (int i = 0; i < service->method_count(); ++i) {
        auto* m = service->method(i);
        std::cout << service->name() << "/" << m->name() << "("
                  << m->input_type()->name() << ") -> "
                  << m->output_type()->name() << "\n";
      }
    return 0;
  }
  if (rest.size() == 3 && rest[0] == "call") {
    if (address.empty()) {
      auto* m = find_method(rest[1]);
      auto service = m != nullptr ? m->service()->name() : "";
      address = service == "QueryService"   ? "127.0.0.1:50052"
                : service == "AdminService" ? "127.0.0.1:50053"
                                            : "127.0.0.1:50051";
    }
    return call(address, timeout_s, rest[1], rest[2]);
  }
  if (rest.size() == 1 && rest[0] == "migrate") {
    if (db_url.empty())
      db_url = std::getenv("SHOUTFLOW_DB_URL") ? std::getenv("SHOUTFLOW_DB_URL")
                                               : "";
    if (db_url.empty()) {
      std::cerr << "shoutflowctl: migrate needs --db-url or SHOUTFLOW_DB_URL\n";
      return 2;
    }
    try {
      auto r = shoutflow::journal::migrate(db_url);
      std::cout << "schema version " << r.current_version << " ("
                << r.applied << " applied)\n";
      return 0;
    } catch (const std::exception& e) {
      std::cerr << "shoutflowctl: " << e.what() << "\n";
      return 1;
    }
  }
  return usage();
}
