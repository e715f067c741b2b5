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

/// The suites' usual wait: `done` polled every 10 ms for up to `within`.
inline bool
eventually(const std::function<bool()>& done,
           std::chrono::milliseconds within = std::chrono::seconds(30)) {
  return wait_until(done, within, std::chrono::milliseconds(10));
}

} // namespace shoutflow::testing
