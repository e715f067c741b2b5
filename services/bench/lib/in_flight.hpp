// Requests a load tool has in flight, so that a phase can wait until they
// have completed (or until fewer than a limit remain).
//
// Contract for callbacks: `down()` is the last thing a completion does with
// the tool's state. Free the call (its grpc::ClientContext) before it: once
// the count is zero the tool may return and its channels go, and a context
// freed after them was a double free at exit.

#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace shoutflow::bench {

class in_flight {
public:
  void up();
  void down();
  uint64_t count();

  /// True once none are in flight; false if `timeout` passed first.
  bool wait_zero(std::chrono::milliseconds timeout);

  /// True once fewer than `limit` are in flight; false if `timeout` passed
  /// first.
  bool wait_below(uint64_t limit, std::chrono::milliseconds timeout);

private:
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t n_ = 0;
  /// A completion wakes the waiter only when the count falls below this.
  uint64_t limit_ = 1;
};

} // namespace shoutflow::bench
