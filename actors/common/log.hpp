#pragma once

// One-line structured log to stderr: "<UTC time> <level> <component>: <text>".
// Lines are written with a single write(2), so lines from many threads never
// interleave. Verbosity comes from SHOUTFLOW_LOG_LEVEL (debug|info|warn|error).

#include <string_view>

namespace shoutflow {

enum class log_level { debug, info, warn, error };

void log(log_level level, std::string_view component, std::string_view text);

inline void log_info(std::string_view component, std::string_view text) {
  log(log_level::info, component, text);
}
inline void log_warn(std::string_view component, std::string_view text) {
  log(log_level::warn, component, text);
}
inline void log_error(std::string_view component, std::string_view text) {
  log(log_level::error, component, text);
}
inline void log_debug(std::string_view component, std::string_view text) {
  log(log_level::debug, component, text);
}

/// Sets the threshold; "debug", "info", "warn" or "error". False otherwise.
bool set_log_level(std::string_view name);

} // namespace shoutflow
