// The command line of every ShoutFlow benchmark program (shoutflow-bench and
// tests/bench/*): flags, --help and usage errors.
//
// Contract, the same for every program (scripts/bench relies on the exit
// codes):
//   --name=value or --name value   a flag with a value
//   --name                         a flag without one (--no-prepare)
//   --help                         the usage text on stdout, exit status 0
//   anything wrong                 "<program>: <message>\n<usage>" on
//                                  stderr, exit status 2
// Exit status 1 stays with the programs, for runtime failures.

#pragma once

#include <optional>
#include <string>
#include <vector>

namespace shoutflow::bench {

/// A program's name and usage text (ending in '\n'), so a check made after
/// parsing fails the same way a malformed flag does.
struct program {
  const char* name;
  const char* usage;

  [[noreturn]] void usage_error(const std::string& message) const;
};

/// Walks argv one flag at a time. A flag's value is taken only when text(),
/// number() or integer() asks for it, so a flag that needs none leaves the
/// next argument alone.
class flags {
public:
  flags(const program& p, int argc, char** argv);

  /// Advances to the next flag; false after the last one. Handles --help.
  bool next();

  /// The current flag's name, without the leading "--".
  const std::string& name() const {
    return name_;
  }

  /// The current flag's value: after '=', or else the next argument.
  std::string text();

  /// The current flag's value as a number in [min, max].
  double number(double min, double max);

  /// number(), which must be a whole number: the bounds must fit in T.
  template <class T>
  T integer(double min, double max) {
    return static_cast<T>(whole_number(min, max));
  }

  /// The current flag's value split at commas; empty items are an error.
  std::vector<std::string> list();

  [[noreturn]] void unknown() const;

  /// A usage error about the current flag ("--name: message").
  [[noreturn]] void invalid(const std::string& message) const;

private:
  double whole_number(double min, double max);

  program program_;
  int argc_;
  char** argv_;
  int i_ = 0;
  std::string name_;
  std::optional<std::string> inline_value_;
  /// Whether text() consumed the current flag's value (the next argument,
  /// unless the value came after '='); next() skips it then.
  bool value_taken_ = false;
};

} // namespace shoutflow::bench
