// What the benchmark programs in tests/bench/ share: their command line
// (flags, --help, usage errors), their client CPU time and their latency
// percentiles. Header-only, since each benchmark is one translation unit.
//
// Command-line contract, the same for every benchmark (scripts/bench relies
// on the exit codes):
//   --name=value or --name value   a flag with a value
//   --name                         a flag without one (--no-register)
//   --help                         the usage text on stdout, exit status 0
//   anything wrong                 "<program>: <message>\n<usage>" on
//                                  stderr, exit status 2
// Exit status 1 stays with the programs, for runtime failures.

#pragma once

#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

namespace shoutflow::bench {

/// A benchmark's name and usage text (ending in '\n'), so a check made after
/// parsing fails the same way a malformed flag does.
struct program {
  const char* name;
  const char* usage;

  [[noreturn]] void usage_error(const std::string& message) const {
    std::fprintf(stderr, "%s: %s\n%s", name, message.c_str(), usage);
    std::exit(2);
  }
};

/// Walks argv one flag at a time. A flag's value is taken only when text(),
/// number() or integer() asks for it, so a flag that needs none leaves the
/// next argument alone.
class flags {
public:
  flags(const program& p, int argc, char** argv)
    : program_(p), argc_(argc), argv_(argv) {}

  /// Advances to the next flag; false after the last one. Handles --help.
  bool next() {
    if (value_taken_ && !inline_value_)
      ++i_;
    if (++i_ >= argc_)
      return false;
    std::string arg = argv_[i_];
    if (arg.rfind("--", 0) != 0)
      program_.usage_error("unexpected argument '" + arg + "'");
    auto eq = arg.find('=');
    name_ = arg.substr(2, eq == std::string::npos ? std::string::npos
                                                  : eq - 2);
    inline_value_.reset();
    if (eq != std::string::npos)
      inline_value_ = arg.substr(eq + 1);
    value_taken_ = false;
    if (name_ == "help") {
      std::fputs(program_.usage, stdout);
      std::exit(0);
    }
    return true;
  }

  /// The current flag's name, without the leading "--".
  const std::string& name() const { return name_; }

  /// The current flag's value: after '=', or else the next argument.
  std::string text() {
    value_taken_ = true;
    if (inline_value_)
      return *inline_value_;
    if (i_ + 1 >= argc_)
      program_.usage_error("--" + name_ + " needs a value");
    return argv_[i_ + 1];
  }

  /// The current flag's value as a number in [min, max].
  double number(double min, double max) {
    auto v = text();
    char* end = nullptr;
    double x = std::strtod(v.c_str(), &end);
    if (v.empty() || end == nullptr || *end != '\0' || !(x >= min && x <= max))
      program_.usage_error("--" + name_ + " must be a number from "
                           + std::to_string(min) + " to " + std::to_string(max)
                           + " (got '" + v + "')");
    return x;
  }

  /// number(), truncated towards zero: the bounds must fit in T.
  template <class T>
  T integer(double min, double max) {
    return static_cast<T>(number(min, max));
  }

  [[noreturn]] void unknown() const {
    program_.usage_error("unknown option --" + name_);
  }

private:
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

/// CPU seconds (user + system) this process has used so far.
inline double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto secs = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec)
           + static_cast<double>(tv.tv_usec) / 1e6;
  };
  return secs(ru.ru_utime) + secs(ru.ru_stime);
}

/// Latency percentiles in milliseconds; all zero for no samples.
struct percentiles {
  double p50 = 0, p90 = 0, p99 = 0, p999 = 0, max = 0;
};

/// Nearest-rank percentiles (the smallest sample with at least q of all
/// samples at or below it: always a measured value, never interpolated) of
/// samples in nanoseconds.
inline percentiles summarize(std::vector<int64_t> samples_ns) {
  percentiles p;
  if (samples_ns.empty())
    return p;
  std::sort(samples_ns.begin(), samples_ns.end());
  auto ms = [](int64_t ns) { return static_cast<double>(ns) / 1e6; };
  auto at = [&](double q) {
    auto rank = static_cast<std::size_t>(
      std::ceil(q * static_cast<double>(samples_ns.size())));
    rank = std::clamp<std::size_t>(rank, 1, samples_ns.size());
    return ms(samples_ns[rank - 1]);
  };
  p.p50 = at(0.50);
  p.p90 = at(0.90);
  p.p99 = at(0.99);
  p.p999 = at(0.999);
  p.max = ms(samples_ns.back());
  return p;
}

} // namespace shoutflow::bench
