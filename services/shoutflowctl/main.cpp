// shoutflowctl: the operator's command-line client.
//
//   shoutflowctl [--address HOST:PORT] [--timeout SECONDS] list
//   shoutflowctl [--address HOST:PORT] [--timeout SECONDS] call METHOD 'REQUEST'
//   shoutflowctl migrate --db-url URL
//   shoutflowctl [--address HOST:PORT] [--output text|json] cluster
//
// `call` sends any RPC of the shoutflow.v1 services; METHOD is "RegisterUser"
// or "CommandService/RegisterUser", REQUEST is the request message in
// protobuf text format (e.g. 'command_id: "c1" user_id: "alice"'). The reply
// is printed in text format; an error prints the gRPC status and exits 1.
// The address defaults to SHOUTFLOW_ADDRESS, else 127.0.0.1:50051 for
// CommandService methods, :50052 for QueryService and :50053 for
// AdminService methods.
//
// `cluster` prints the members (state, heartbeat age, what each owns, its
// addresses), the shard map as ranges per node, and the partition map, from
// AdminService/GetClusterStatus of any node; `--output json` prints the
// ClusterStatus message as JSON for scripts.

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/text_format.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <cstdlib>
#include <future>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>
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
               "       shoutflowctl migrate --db-url URL\n"
               "       shoutflowctl [--address HOST:PORT] [--output text|json] "
               "cluster\n";
  return 2;
}

/// One unary call; the reply lands in `response`.
grpc::Status invoke(const std::string& address, int timeout_s,
                    const MethodDescriptor* method,
                    const google::protobuf::Message& request,
                    google::protobuf::Message* response) {
  auto bytes = request.SerializeAsString();
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

int report(const grpc::Status& status) {
  std::cerr << "ERROR " << shoutflow::services::code_label(status.error_code())
            << ": " << status.error_message() << "\n";
  return 1;
}

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

int cluster(const std::string& address, int timeout_s, bool json) {
  shoutflow::v1::ClusterStatus status;
  auto s = invoke(address, timeout_s, find_method("GetClusterStatus"),
                  shoutflow::v1::GetClusterStatusRequest{}, &status);
  if (!s.ok())
    return report(s);
  if (json) {
    std::string out;
    google::protobuf::util::JsonPrintOptions options;
    options.add_whitespace = true;
    options.preserve_proto_field_names = true;
    google::protobuf::util::MessageToJsonString(status, &out, options);
    std::cout << out << "\n";
    return 0;
  }
  std::cout << std::left << std::setw(10) << "MEMBER" << std::setw(9)
            << "STATE" << std::setw(11) << "HEARTBEAT" << std::setw(8)
            << "SHARDS" << std::setw(12) << "PARTITIONS" << std::setw(36)
            << "ROLES" << "ADDRESSES\n";
  for (auto& m : status.members()) {
    std::string roles;
    for (auto& r : m.roles())
      roles += (roles.empty() ? "" : ",") + r;
    std::ostringstream age;
    age << std::fixed << std::setprecision(1) << m.heartbeat_age_seconds()
        << "s";
    std::cout << std::setw(10) << m.node_id() << std::setw(9) << m.state()
              << std::setw(11) << age.str() << std::setw(8)
              << m.shards_owned() << std::setw(12) << m.partitions_owned()
              << std::setw(36) << roles << "caf=" << m.address();
    for (auto& [name, value] :
         {std::pair<const char*, std::string>{"command", m.command_address()},
          {"query", m.query_address()},
          {"admin", m.admin_address()},
          {"metrics", m.metrics_url()}})
      if (!value.empty())
        std::cout << " " << name << "=" << value;
    std::cout << "\n";
  }
  std::map<std::string, std::vector<int>> by_owner;
  int unowned = 0;
  for (auto& l : status.shard_leases()) {
    if (l.owner().empty())
      ++unowned;
    by_owner[l.owner().empty() ? "(none)" : l.owner()].push_back(l.part());
  }
  std::cout << "\nshards: " << status.shards() << ", "
            << status.shards() - static_cast<uint32_t>(unowned)
            << " owned\n";
  for (auto& [owner, parts] : by_owner)
    std::cout << "  " << std::setw(8) << owner << " " << ranges(parts) << "\n";
  std::cout << "\npartitions:\n";
  std::string resource;
  for (auto& l : status.partition_leases()) {
    if (l.resource() != resource) {
      resource = l.resource();
      std::cout << (resource.empty() ? "" : "\n") << "  " << std::setw(24)
                << resource;
    }
    std::cout << " " << l.part() << "="
              << (l.owner().empty() ? "(none)" : l.owner()) << "@"
              << l.epoch();
  }
  std::cout << "\n";
  return 0;
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
  std::unique_ptr<google::protobuf::Message> response(
    factory->GetPrototype(method->output_type())->New());
  auto status = invoke(address, timeout_s, method, *request, response.get());
  if (!status.ok())
    return report(status);
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
  std::string output = "text";
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
    else if (args[i] == "--output")
      output = value();
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
  if (rest.size() == 1 && rest[0] == "cluster") {
    if (output != "text" && output != "json") {
      std::cerr << "shoutflowctl: --output must be text or json\n";
      return 2;
    }
    return cluster(address.empty() ? "127.0.0.1:50053" : address, timeout_s,
                   output == "json");
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
