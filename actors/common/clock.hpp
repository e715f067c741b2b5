#pragma once

// The clock seam: domain logic and the entity runtime read time only through
// this interface, so tests can pin it (manual_clock) and stay deterministic.

#include <atomic>
#include <chrono>
#include <cstdint>

namespace shoutflow {

class clock {
public:
  virtual ~clock() = default;
  /// Milliseconds since the Unix epoch.
  virtual int64_t now_ms() const = 0;
};

class system_clock final : public clock {
public:
  int64_t now_ms() const override {
    using namespace std::chrono;
    return duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
  }
};

/// A clock that moves only when told to; thread-safe.
class manual_clock final : public clock {
public:
  explicit manual_clock(int64_t start_ms) : now_(start_ms) {
  }
  int64_t now_ms() const override {
    return now_.load();
  }
  void advance_ms(int64_t delta) {
    now_ += delta;
  }
  void set_ms(int64_t value) {
    now_ = value;
  }

private:
  std::atomic<int64_t> now_;
};

} // namespace shoutflow
