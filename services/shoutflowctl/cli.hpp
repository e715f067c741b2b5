#pragma once

// The command line of shoutflowctl: exit codes, the options every
// subcommand shares, and how a subcommand declares its arguments.
//
// Grammar: `shoutflowctl [GLOBAL FLAGS] SUBCOMMAND [ARGS] [FLAGS]`. Flags may
// come before or after the subcommand, as `--flag VALUE` or `--flag=VALUE`;
// `--` ends the flags. Every subcommand answers `--help`.
//
// Exit codes (the contract scripts rely on; docs/shoutflowctl.md):
//   0  ok
//   1  the server failed the request (any gRPC status not listed below)
//   2  usage: unknown subcommand or flag, missing or malformed argument, or
//      INVALID_ARGUMENT from the server (which only checks what we pass on)
//   3  unreachable: no connection, UNAVAILABLE or DEADLINE_EXCEEDED — the
//      only code where trying again later may help
//   4  not found: unknown user or projection, NOT_FOUND from the node
//   5  the operation ran and did not succeed: a rebuild that was abandoned
//      before it went live, a retried dead letter that failed again
// Errors go to stderr as "shoutflowctl: SUBCOMMAND: message", with the gRPC
// code name for server answers; data goes to stdout.

#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace shoutflow::ctl {

enum class exit_code : int {
  ok = 0,
  server_error = 1,
  usage = 2,
  unreachable = 3,
  not_found = 4,
  failed = 5,
};

enum class output_format { text, json };

/// What every subcommand may use.
struct global_options {
  /// host:port of an AdminService; --address, else $SHOUTFLOW_ADMIN_ADDRESS,
  /// else 127.0.0.1:50053.
  std::string address;
  /// --address was given (`call` picks a port by service otherwise).
  bool address_from_flag = false;
  /// Deadline of each RPC (--timeout, seconds or "500ms").
  std::chrono::milliseconds timeout{10000};
  output_format output = output_format::text;
};

struct flag_spec {
  /// "--from"
  std::string name;
  /// "SEQ"; empty for a switch.
  std::string value_name;
  std::string help;
};

struct parsed_args;

/// One subcommand: how it is called, its help, and its body.
struct command_spec {
  std::string name;
  /// "stream USER"
  std::string synopsis;
  std::string summary;
  /// Paragraphs after the synopsis in `--help`.
  std::string details;
  std::vector<flag_spec> flags;
  /// Names of the required positional arguments ("USER"), then of the
  /// optional ones.
  std::vector<std::string> positionals;
  std::vector<std::string> optional_positionals;
  /// Which global flags apply (all but --output for `migrate`, say).
  bool uses_address = true;
  bool uses_output = true;
  exit_code (*run)(const global_options&, const parsed_args&) = nullptr;
};

/// A subcommand's arguments after parsing.
struct parsed_args {
  std::vector<std::string> positionals;
  /// Flags with a value, by name ("--from" -> "3").
  std::map<std::string, std::string> values;
  /// Switches given ("--no-wait").
  std::set<std::string> switches;

  std::optional<std::string> value(const std::string& flag) const;
  bool has(const std::string& flag) const;
};

/// Every subcommand, in the order `--help` lists them.
const std::vector<command_spec>& commands();

/// Runs the command line (argv without the program name); the exit code.
exit_code run(const std::vector<std::string>& args);

/// Prints "shoutflowctl: SUBCOMMAND: message" to stderr and returns `code`.
exit_code fail(const std::string& subcommand, exit_code code,
               const std::string& message);

/// A usage error naming the subcommand's help.
exit_code usage_error(const std::string& subcommand,
                      const std::string& message);

/// Parses `text`, the argument `what` ("ID", "--limit"), as an integer
/// within [min, max]; nothing (after a usage message naming it) when it is
/// not one.
std::optional<int64_t>
parse_int(const std::string& subcommand, const std::string& what,
          const std::string& text, int64_t min, int64_t max);

/// parse_int for a flag that may be absent (then `fallback`).
std::optional<int64_t>
int_flag(const std::string& subcommand, const parsed_args& args,
         const std::string& flag, int64_t fallback, int64_t min, int64_t max);

/// "2", "2.5", "2s" or "500ms" as a positive duration.
std::optional<std::chrono::milliseconds>
parse_duration(const std::string& text);

} // namespace shoutflow::ctl
