#include "services/bench/lib/json_writer.hpp"

#include <cassert>
#include <cinttypes>
#include <cmath>
#include <cstdio>

#include "actors/common/json_escape.hpp"

namespace shoutflow::bench {

void json_writer::newline() {
  if (!indent_)
    return;
  out_ += '\n';
  out_.append(2 * stack_.size(), ' ');
}

void json_writer::before_value() {
  if (after_key_) {
    after_key_ = false;
    return;
  }
  if (stack_.empty())
    return;
  assert(!stack_.back().first && "a value in an object needs a key");
  if (stack_.back().second)
    out_ += ',';
  stack_.back().second = true;
  newline();
}

json_writer& json_writer::begin_object() {
  before_value();
  out_ += '{';
  stack_.emplace_back(true, false);
  return *this;
}

json_writer& json_writer::end_object() {
  assert(!stack_.empty() && stack_.back().first && !after_key_);
  bool had = stack_.back().second;
  stack_.pop_back();
  if (had)
    newline();
  out_ += '}';
  return *this;
}

json_writer& json_writer::begin_array() {
  before_value();
  out_ += '[';
  stack_.emplace_back(false, false);
  return *this;
}

json_writer& json_writer::end_array() {
  assert(!stack_.empty() && !stack_.back().first && !after_key_);
  bool had = stack_.back().second;
  stack_.pop_back();
  if (had)
    newline();
  out_ += ']';
  return *this;
}

json_writer& json_writer::key(const std::string& k) {
  assert(!stack_.empty() && stack_.back().first && !after_key_);
  if (stack_.back().second)
    out_ += ',';
  stack_.back().second = true;
  newline();
  out_ += json_quote(k);
  out_ += indent_ ? ": " : ":";
  after_key_ = true;
  return *this;
}

std::string json_quote(const std::string& s) {
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  append_json_escaped(out, s);
  out += '"';
  return out;
}

std::string json_number(double x) {
  if (!std::isfinite(x))
    return "null";
  char buf[32];
  if (x == std::floor(x) && std::fabs(x) < 1e15)
    std::snprintf(buf, sizeof buf, "%.0f", x);
  else
    std::snprintf(buf, sizeof buf, "%.10g", x);
  return buf;
}

json_writer& json_writer::value(const std::string& s) {
  before_value();
  out_ += json_quote(s);
  return *this;
}

json_writer& json_writer::value(const char* s) {
  return value(std::string{s});
}

json_writer& json_writer::value(double x) {
  before_value();
  out_ += json_number(x);
  return *this;
}

json_writer& json_writer::value(int64_t x) {
  before_value();
  out_ += std::to_string(x);
  return *this;
}

json_writer& json_writer::value(uint64_t x) {
  before_value();
  out_ += std::to_string(x);
  return *this;
}

json_writer& json_writer::value(bool b) {
  before_value();
  out_ += b ? "true" : "false";
  return *this;
}

json_writer& json_writer::null() {
  before_value();
  out_ += "null";
  return *this;
}

} // namespace shoutflow::bench
