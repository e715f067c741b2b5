#include "actors/common/log.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <memory>
#include <mutex>
#include <string>

#include "actors/common/json_escape.hpp"

namespace shoutflow {

namespace {

std::atomic<int> threshold{static_cast<int>(log_level::info)};
std::atomic<int> format{static_cast<int>(log_format::text)};

// Set once at start-up, read by every line: a shared_ptr swapped under a
// mutex keeps a reader's copy alive if it is ever set again.
std::mutex node_mtx;
std::shared_ptr<const std::string> node_name
  = std::make_shared<const std::string>();

thread_local std::string thread_correlation;

const char* level_name(log_level level) {
  switch (level) {
    case log_level::debug:
      return "debug";
    case log_level::info:
      return "info";
    case log_level::warn:
      return "warn";
    case log_level::error:
      return "error";
  }
  return "?";
}

std::string timestamp() {
  using namespace std::chrono;
  auto now = system_clock::now();
  auto secs = system_clock::to_time_t(now);
  auto millis = duration_cast<milliseconds>(now.time_since_epoch()).count()
                % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char stamp[64];
  std::snprintf(stamp, sizeof(stamp), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                tm.tm_min, tm.tm_sec, static_cast<int>(millis));
  return stamp;
}

std::shared_ptr<const std::string> current_node() {
  std::lock_guard<std::mutex> guard{node_mtx};
  return node_name;
}

} // namespace

bool log_enabled(log_level level) {
  return static_cast<int>(level) >= threshold.load(std::memory_order_relaxed);
}

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

bool set_log_format(std::string_view name) {
  if (name == "text")
    format = static_cast<int>(log_format::text);
  else if (name == "json")
    format = static_cast<int>(log_format::json);
  else
    return false;
  return true;
}

void set_log_node(std::string node) {
  auto value = std::make_shared<const std::string>(std::move(node));
  std::lock_guard<std::mutex> guard{node_mtx};
  node_name = std::move(value);
}

correlation_scope::correlation_scope(std::string id)
  : previous_(std::move(thread_correlation)) {
  thread_correlation = std::move(id);
}

correlation_scope::~correlation_scope() {
  thread_correlation = std::move(previous_);
}

void log(log_level level, std::string_view component, std::string_view text,
         std::string_view correlation_id) {
  if (!log_enabled(level))
    return;
  if (correlation_id.empty())
    correlation_id = thread_correlation;
  std::string line;
  line.reserve(128 + text.size());
  if (format.load(std::memory_order_relaxed)
      == static_cast<int>(log_format::json)) {
    auto node = current_node();
    line += "{\"time\":\"";
    line += timestamp();
    line += "\",\"level\":\"";
    line += level_name(level);
    line += "\",\"node\":\"";
    append_json_escaped(line, *node);
    line += "\",\"component\":\"";
    append_json_escaped(line, component);
    line += "\",\"message\":\"";
    append_json_escaped(line, text);
    line += '"';
    if (!correlation_id.empty()) {
      line += ",\"correlation_id\":\"";
      append_json_escaped(line, correlation_id);
      line += '"';
    }
    line += "}\n";
  } else {
    char level_field[8];
    std::snprintf(level_field, sizeof(level_field), "%-5s", level_name(level));
    line += timestamp();
    line += ' ';
    line += level_field;
    line += ' ';
    line += component;
    line += ": ";
    line += text;
    if (!correlation_id.empty()) {
      line += " [corr=";
      line += correlation_id;
      line += ']';
    }
    line += '\n';
  }
  // A single write keeps concurrent lines whole; a short write is ignored on
  // purpose (logging must never take the node down).
  auto written = ::write(STDERR_FILENO, line.data(), line.size());
  static_cast<void>(written);
}

} // namespace shoutflow
