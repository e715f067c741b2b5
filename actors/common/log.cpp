#include "actors/common/log.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>

namespace shoutflow {

namespace {

std::atomic<int> threshold{static_cast<int>(log_level::info)};

const char* level_name(log_level level) {
  switch (level) {
    case log_level::debug:
      return "debug";
    case log_level::info:
      return "info ";
    case log_level::warn:
      return "warn ";
    case log_level::error:
      return "error";
  }
  return "?";
}

} // namespace

bool set_log_level(std::string_view name) {
  if (name == "debug")
    threshold = static_cast<int>(log_level::debug);
  else if (name == "info")
    threshold = static_cast<int>(log_level::info);
  else if (name == "warn")
    threshold = static_cast<int>(log_level::warn);
  else if (name == "error")
    threshold = static_cast<int>(log_level::error);
  else
    return false;
  return true;
}

void log(log_level level, std::string_view component, std::string_view text) {
  if (static_cast<int>(level) < threshold.load(std::memory_order_relaxed))
    return;
  using namespace std::chrono;
  auto now = std::chrono::system_clock::now();
  auto secs = std::chrono::system_clock::to_time_t(now);
  auto millis = duration_cast<milliseconds>(now.time_since_epoch()).count()
                % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char stamp[64];
  std::snprintf(stamp, sizeof(stamp), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                tm.tm_min, tm.tm_sec, static_cast<int>(millis));
  std::string line;
  line.reserve(64 + text.size());
  line += stamp;
  line += ' ';
  line += level_name(level);
  line += ' ';
  line += component;
  line += ": ";
  line += text;
  line += '\n';
  // A single write keeps concurrent lines whole; a short write is ignored on
  // purpose (logging must never take the node down).
  auto written = ::write(STDERR_FILENO, line.data(), line.size());
  static_cast<void>(written);
}

} // namespace shoutflow
