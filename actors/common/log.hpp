#pragma once

// Structured log lines to stderr, written with a single write(2) each, so
// lines from many threads never interleave. Two formats:
//
//   text (default)  "<UTC time> <level> <component>: <text> [corr=<id>]"
//   json            {"time":"…","level":"info","node":"node-0",
//                    "component":"…","message":"…","correlation_id":"…"}
//                   one object per line, for log shippers
//                   (SHOUTFLOW_LOG_FORMAT); strings escaped by json_escape.hpp,
//                   so invalid UTF-8 arrives as U+FFFD
//
// The correlation id is the request's (the x-correlation-id metadata, else
// the command_id) when a line is about one request: pass it explicitly, or
// set it for the current thread with a correlation_scope. Verbosity comes
// from SHOUTFLOW_LOG_LEVEL (debug|info|warn|error).

#include <string>
#include <string_view>

namespace shoutflow {

enum class log_level { debug, info, warn, error };
enum class log_format { text, json };

void log(log_level level, std::string_view component, std::string_view text,
         std::string_view correlation_id = {});

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

/// Whether a line at `level` would be written (skip building costly text).
bool log_enabled(log_level level);

/// Sets the threshold; "debug", "info", "warn" or "error". False otherwise.
bool set_log_level(std::string_view name);

/// "text" or "json". False otherwise.
bool set_log_format(std::string_view name);

/// The node every line names ("node-3"); empty by default.
void set_log_node(std::string node);

/// Sets the correlation id of the lines this thread logs without one, for
/// the scope's life (restores the previous one).
class correlation_scope {
public:
  explicit correlation_scope(std::string id);
  ~correlation_scope();
  correlation_scope(const correlation_scope&) = delete;
  correlation_scope& operator=(const correlation_scope&) = delete;

private:
  std::string previous_;
};

} // namespace shoutflow
