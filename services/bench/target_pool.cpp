#include "services/bench/target_pool.hpp"

#include <grpcpp/generic/generic_stub.h>

#include <future>
#include <thread>

namespace shoutflow::bench {

namespace {

std::shared_ptr<grpc::Channel> connect(const std::string& address, int index) {
  grpc::ChannelArguments args;
  // Distinct arguments and a local subchannel pool give each channel its
  // own TCP connection instead of one shared HTTP/2 connection.
  args.SetInt("shoutflow.bench.channel", index);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  // Reconnect quickly: a fail-over run kills a node and restarts it.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(),
                                   args);
}

/// One grpc.health.v1.Health/Check of the whole server (service ""). The
/// request is the empty message; SERVING is field 1 = 1, bytes 08 01. No
/// generated health stubs ship with Debian's gRPC, hence the raw call.
bool serving(const std::shared_ptr<grpc::Channel>& channel,
             std::chrono::milliseconds timeout) {
  grpc::GenericStub stub{channel};
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + timeout);
  // An empty message, but a real (empty) slice: a default ByteBuffer is
  // "no message" and gRPC rejects sending it.
  grpc::Slice empty{std::string{}};
  grpc::ByteBuffer request{&empty, 1};
  grpc::ByteBuffer response;
  auto done = std::make_shared<std::promise<grpc::Status>>();
  auto status = done->get_future();
  stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions{},
                 &request, &response,
                 [done](grpc::Status s) { done->set_value(std::move(s)); });
  if (!status.get().ok())
    return false;
  std::vector<grpc::Slice> slices;
  std::string bytes;
  if (response.Dump(&slices).ok())
    for (auto& s : slices)
      bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return bytes == std::string("\x08\x01", 2);
}

} // namespace

target_pool::target_pool(const std::vector<std::string>& command_targets,
                         const std::vector<std::string>& query_targets,
                         int channels)
  : per_target_(channels) {
  int index = 0;
  for (auto& address : command_targets) {
    addresses_.push_back(address);
    for (int c = 0; c < channels; ++c) {
      auto ch = connect(address, index++);
      channels_.push_back(ch);
      commands_.push_back(v1::CommandService::NewStub(ch));
    }
  }
  for (auto& address : query_targets) {
    addresses_.push_back(address);
    for (int c = 0; c < channels; ++c) {
      auto ch = connect(address, index++);
      channels_.push_back(ch);
      queries_.push_back(v1::QueryService::NewStub(ch));
    }
  }
}

bool target_pool::wait_ready(std::chrono::milliseconds timeout,
                             std::string& failed) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (std::size_t t = 0; t < addresses_.size(); ++t) {
    const auto& channel = channels_[t * static_cast<std::size_t>(per_target_)];
    while (!serving(channel, std::chrono::milliseconds(1000))) {
      if (std::chrono::steady_clock::now() >= deadline) {
        failed = addresses_[t];
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  return true;
}

v1::CommandService::Stub& target_pool::command() {
  return *commands_[next_command_++ % commands_.size()];
}

v1::QueryService::Stub& target_pool::query() {
  return *queries_[next_query_++ % queries_.size()];
}

std::vector<v1::QueryService::Stub*> target_pool::query_per_target() {
  std::vector<v1::QueryService::Stub*> out;
  for (std::size_t i = 0; i < queries_.size();
       i += static_cast<std::size_t>(per_target_))
    out.push_back(queries_[i].get());
  return out;
}

} // namespace shoutflow::bench
