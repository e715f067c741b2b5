#include "services/bench/lib/in_flight.hpp"

namespace shoutflow::bench {

void in_flight::up() {
  std::lock_guard<std::mutex> guard{mu_};
  ++n_;
}

void in_flight::down() {
  std::lock_guard<std::mutex> guard{mu_};
  if (--n_ < limit_)
    cv_.notify_all();
}

uint64_t in_flight::count() {
  std::lock_guard<std::mutex> guard{mu_};
  return n_;
}

bool in_flight::wait_zero(std::chrono::milliseconds timeout) {
  return wait_below(1, timeout);
}

bool in_flight::wait_below(uint64_t limit, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock{mu_};
  limit_ = limit;
  return cv_.wait_for(lock, timeout, [&] { return n_ < limit; });
}

} // namespace shoutflow::bench
