#include "services/bench/lib/flags.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace shoutflow::bench {

namespace {

std::string number_text(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.15g", x);
  return buf;
}

} // namespace

void program::usage_error(const std::string& message) const {
  std::fprintf(stderr, "%s: %s\n%s", name, message.c_str(), usage);
  std::exit(2);
}

flags::flags(const program& p, int argc, char** argv)
  : program_(p), argc_(argc), argv_(argv) {
}

bool flags::next() {
  if (value_taken_ && !inline_value_)
    ++i_;
  if (++i_ >= argc_)
    return false;
  std::string arg = argv_[i_];
  if (arg.rfind("--", 0) != 0 || arg.size() == 2)
    program_.usage_error("unexpected argument '" + arg + "'");
  auto eq = arg.find('=');
  name_ = arg.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
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

std::string flags::text() {
  value_taken_ = true;
  if (inline_value_)
    return *inline_value_;
  if (i_ + 1 >= argc_)
    program_.usage_error("--" + name_ + " needs a value");
  return argv_[i_ + 1];
}

double flags::number(double min, double max) {
  auto v = text();
  char* end = nullptr;
  double x = std::strtod(v.c_str(), &end);
  if (v.empty() || end == nullptr || *end != '\0' || !(x >= min && x <= max))
    program_.usage_error("--" + name_ + " must be a number from "
                         + number_text(min) + " to " + number_text(max)
                         + " (got '" + v + "')");
  return x;
}

double flags::whole_number(double min, double max) {
  double x = number(min, max);
  if (x != std::floor(x))
    program_.usage_error("--" + name_ + " must be a whole number (got "
                         + number_text(x) + ")");
  return x;
}

std::vector<std::string> flags::list() {
  auto v = text();
  std::vector<std::string> items;
  std::size_t from = 0;
  for (;;) {
    auto comma = v.find(',', from);
    auto item = v.substr(from, comma == std::string::npos ? std::string::npos
                                                          : comma - from);
    if (item.empty())
      program_.usage_error("--" + name_ + " has an empty item (got '" + v
                           + "')");
    items.push_back(item);
    if (comma == std::string::npos)
      return items;
    from = comma + 1;
  }
}

void flags::unknown() const {
  program_.usage_error("unknown option --" + name_);
}

void flags::invalid(const std::string& message) const {
  program_.usage_error("--" + name_ + ": " + message);
}

} // namespace shoutflow::bench
