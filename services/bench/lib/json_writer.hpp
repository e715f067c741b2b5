// A streaming JSON writer for benchmark reports: objects, arrays, strings
// (escaped per RFC 8259 by actors/common/json_escape.hpp, which also turns
// invalid UTF-8 into U+FFFD), integers and doubles (non-finite ones as null).
// It places the commas; the caller nests begin/end calls correctly (checked
// by assertions). Output is compact unless `indent` is set.

#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace shoutflow::bench {

/// A string as a JSON string literal (quotes included, escaped per RFC 8259;
/// a byte that is not well-formed UTF-8 becomes \ufffd).
std::string json_quote(const std::string& s);
/// A number as JSON: whole numbers below 1e15 without a fraction, others
/// with 10 significant digits; null when not finite.
std::string json_number(double x);

class json_writer {
public:
  explicit json_writer(bool indent = true) : indent_(indent) {
  }

  json_writer& begin_object();
  json_writer& end_object();
  json_writer& begin_array();
  json_writer& end_array();
  /// The key of the next value, inside an object.
  json_writer& key(const std::string& k);

  json_writer& value(const std::string& s);
  json_writer& value(const char* s);
  json_writer& value(double x);
  json_writer& value(int64_t x);
  json_writer& value(uint64_t x);
  json_writer& value(int x) {
    return value(static_cast<int64_t>(x));
  }
  json_writer& value(unsigned x) {
    return value(static_cast<uint64_t>(x));
  }
  json_writer& value(bool b);
  json_writer& null();

  /// key(k).value(v) in one call.
  template <class T>
  json_writer& field(const std::string& k, const T& v) {
    key(k);
    return value(v);
  }

  /// The document; complete once every begin has its end.
  const std::string& str() const {
    return out_;
  }

private:
  void before_value();
  void newline();

  bool indent_;
  std::string out_;
  /// One entry per open container: true for an object; and whether it has
  /// an element yet.
  std::vector<std::pair<bool, bool>> stack_;
  bool after_key_ = false;
};

} // namespace shoutflow::bench
