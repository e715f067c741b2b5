#include "services/common/in_flight.hpp"

namespace shoutflow::services {

namespace {

namespace gx = grpc::experimental;

class in_flight_interceptor final : public gx::Interceptor {
public:
  explicit in_flight_interceptor(prometheus::Gauge& gauge) : gauge_(gauge) {
    gauge_.Increment();
  }
  ~in_flight_interceptor() override {
    gauge_.Decrement();
  }

  void Intercept(gx::InterceptorBatchMethods* methods) override {
    methods->Proceed();
  }

private:
  prometheus::Gauge& gauge_;
};

class in_flight_factory final : public gx::ServerInterceptorFactoryInterface {
public:
  in_flight_factory(prometheus::Gauge& unary, prometheus::Gauge& streams)
    : unary_(unary), streams_(streams) {
  }

  gx::Interceptor* CreateServerInterceptor(gx::ServerRpcInfo* info) override {
    bool stream = info->type() == gx::ServerRpcInfo::Type::SERVER_STREAMING;
    return new in_flight_interceptor(stream ? streams_ : unary_);
  }

private:
  prometheus::Gauge& unary_;
  prometheus::Gauge& streams_;
};

prometheus::Family<prometheus::Gauge>& family_of(prometheus::Registry& r) {
  return prometheus::BuildGauge()
    .Name("shoutflow_grpc_requests_in_flight")
    .Help("gRPC requests being served, by service (watch: open Watch "
          "streams)")
    .Register(r);
}

} // namespace

in_flight_metrics::in_flight_metrics(prometheus::Registry& r)
  : family(family_of(r)),
    command(family.Add({{"service", "command"}})),
    query(family.Add({{"service", "query"}})),
    admin(family.Add({{"service", "admin"}})),
    watch(family.Add({{"service", "watch"}})) {
}

std::vector<std::unique_ptr<gx::ServerInterceptorFactoryInterface>>
in_flight_metrics::interceptors(prometheus::Gauge& unary,
                                prometheus::Gauge& streams) const {
  std::vector<std::unique_ptr<gx::ServerInterceptorFactoryInterface>> out;
  out.push_back(std::make_unique<in_flight_factory>(unary, streams));
  return out;
}

} // namespace shoutflow::services
