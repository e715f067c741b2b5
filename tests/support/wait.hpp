#pragma once

// Waiting on a condition with a deadline: the one way tests wait.

#include <chrono>
#include <functional>
#include <thread>

namespace shoutflow::testing {

/// Polls `done` every `every` until it holds (true) or `within` has passed
/// (false, after one last look).
inline bool
wait_until(const std::function<bool()>& done, std::chrono::milliseconds within,
           std::chrono::milliseconds every = std::chrono::milliseconds(50)) {
  auto deadline = std::chrono::steady_clock::now() + within;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done())
      return true;
    std::this_thread::sleep_for(every);
  }
  return done();
}

} // namespace shoutflow::testing
