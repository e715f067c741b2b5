#include "tests/support/test_node.hpp"

#include <caf/all.hpp>
#include <gtest/gtest.h>

#include "actors/common/text.hpp"
#include "actors/user/user_domain.hpp"
#include "actors/user/user_validation.hpp"
#include "services/common/grpc_status.hpp"

namespace shoutflow::testing {

node::node_config test_config(const std::string& db_url) {
  node::node_config cfg;
  cfg.db_url = db_url;
  cfg.command_port = 0;
  cfg.query_port = 0;
  cfg.admin_port = 0;
  cfg.caf_port = 0;
  cfg.metrics_port = -1;
  cfg.pwhash = pwhash_params::minimum();
  cfg.roles = {"command", "entities"};
  return cfg;
}

void with_read_side(node::node_config& cfg) {
  cfg.roles = {"command", "query", "entities", "projections"};
  cfg.projection_poll = std::chrono::milliseconds(20);
}

test_node::test_node(const std::string& db_url,
                     const std::function<void(node::node_config&)>& tweak,
                     const clock* clk) {
  auto cfg = test_config(db_url);
  if (tweak)
    tweak(cfg);
  node_ = std::make_unique<node::node>(cfg, clk);
  node_->start();
}

test_node::~test_node() {
  stop();
}

void test_node::stop() {
  if (node_)
    node_->shutdown(std::chrono::seconds(5));
}

double metric_value(test_node& n, const std::string& name,
                    const std::string& label, const std::string& value) {
  for (auto& family : n.get().registry().Collect()) {
    if (family.name != name)
      continue;
    for (auto& m : family.metric) {
      bool match = label.empty();
      for (auto& l : m.label)
        match = match || (l.name == label && l.value == value);
      if (match)
        return family.type == prometheus::MetricType::Gauge ? m.gauge.value
                                                            : m.counter.value;
    }
  }
  ADD_FAILURE() << "no metric " << name << "{" << label << "=" << value << "}";
  return -1;
}

std::unique_ptr<v1::CommandService::Stub> test_node::command_stub() const {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(16 * 1024 * 1024);
  auto channel = grpc::CreateCustomChannel(
    "127.0.0.1:" + std::to_string(node_->command_port()),
    grpc::InsecureChannelCredentials(), args);
  return v1::CommandService::NewStub(channel);
}

namespace {

std::shared_ptr<grpc::Channel> channel_to(int port) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(16 * 1024 * 1024);
  return grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port),
                                   grpc::InsecureChannelCredentials(), args);
}

} // namespace

std::unique_ptr<v1::QueryService::Stub> test_node::query_stub() const {
  return v1::QueryService::NewStub(channel_to(node_->query_port()));
}

std::unique_ptr<v1::AdminService::Stub> test_node::admin_stub() const {
  return v1::AdminService::NewStub(channel_to(node_->admin_port()));
}

v1::EntityReply test_node::send(const v1::UserCommand& command,
                                std::chrono::milliseconds timeout) {
  v1::EntityCommand envelope;
  *envelope.mutable_user() = command;
  auto id = user::target_user_id(command);
  envelope.set_entity_id(id);
  v1::EntityReply reply;
  caf::scoped_actor self{node_->system()};
  auto on_reply = [&](std::string& bytes) { reply.ParseFromString(bytes); };
  auto on_error = [&](caf::error& err) {
    *reply.mutable_rejection() = services::rejection_from(err, node_->system());
  };
  if (command.has_login() && command.login().has_handle())
    self
      ->request(node_->router(), timeout, alias_atom::value,
                std::string{user::handle_claim},
                ascii_lower(command.login().handle()), std::string{"handle"},
                envelope.SerializeAsString())
      .receive(on_reply, on_error);
  else
    self
      ->request(node_->router(), timeout, cmd_atom::value, id,
                envelope.SerializeAsString())
      .receive(on_reply, on_error);
  return reply;
}

std::unique_ptr<grpc::ClientContext>
context_with_deadline(std::chrono::milliseconds timeout) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + timeout);
  return ctx;
}

} // namespace shoutflow::testing
