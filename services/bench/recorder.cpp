#include "services/bench/recorder.hpp"

namespace shoutflow::bench {

std::string status_code_name(grpc::StatusCode code) {
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

void recorder::add(op_kind op, std::chrono::nanoseconds latency, bool ok,
                   grpc::StatusCode code, bool counted,
                   clock_type::time_point completed) {
  auto second = completed < run_start_
                  ? 0
                  : std::chrono::duration_cast<std::chrono::seconds>(
                      completed - run_start_)
                      .count();
  std::lock_guard<std::mutex> guard{mu_};
  if (counted) {
    auto& s = window_[op];
    if (ok) {
      ++s.ok;
      s.latency_ns.record(latency.count());
    } else {
      ++s.errors;
      ++s.errors_by_code[status_code_name(code)];
    }
  }
  if (series_.size() <= static_cast<std::size_t>(second))
    series_.resize(static_cast<std::size_t>(second) + 1);
  auto& p = series_[static_cast<std::size_t>(second)].ops[op];
  if (ok) {
    ++p.ok;
    p.latency_ns.record(latency.count());
  } else {
    ++p.errors;
  }
}

std::map<op_kind, op_stats> recorder::window() const {
  std::lock_guard<std::mutex> guard{mu_};
  return window_;
}

std::vector<second_stats> recorder::series() const {
  std::lock_guard<std::mutex> guard{mu_};
  return series_;
}

} // namespace shoutflow::bench
