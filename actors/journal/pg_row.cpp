#include "actors/journal/pg_row.hpp"

#include <array>
#include <charconv>

namespace shoutflow::journal {

namespace {

/// A hex digit's value, or -1.
constexpr std::array<int8_t, 256> hex_values = [] {
  std::array<int8_t, 256> t{};
  for (auto& v : t)
    v = -1;
  for (int i = 0; i < 10; ++i)
    t[static_cast<std::size_t>('0' + i)] = static_cast<int8_t>(i);
  for (int i = 0; i < 6; ++i) {
    t[static_cast<std::size_t>('a' + i)] = static_cast<int8_t>(10 + i);
    t[static_cast<std::size_t>('A' + i)] = static_cast<int8_t>(10 + i);
  }
  return t;
}();

template <class T>
T parse_integer(const pqxx::field& f, const char* what) {
  if (f.is_null())
    throw pqxx::conversion_error{std::string{"NULL where "} + what
                                 + " was expected in column "
                                 + std::to_string(f.num())};
  T v{};
  auto first = f.c_str();
  auto last = first + f.size();
  auto [end, ec] = std::from_chars(first, last, v);
  if (ec != std::errc{} || end != last)
    throw pqxx::conversion_error{std::string{"not "} + what + ": '"
                                 + std::string{first, f.size()} + "'"};
  return v;
}

} // namespace

const pqxx::field& row_reader::current() const {
  if (it_ == end_)
    throw pqxx::usage_error{"row_reader: read past the row's last column"};
  return *it_.operator->(); // the iterator is the field; * makes a copy
}

void row_reader::text(std::string* to) {
  auto& f = current();
  to->assign(f.c_str(), f.size());
  ++it_;
}

int64_t row_reader::int64() {
  auto v = parse_integer<int64_t>(current(), "an integer");
  ++it_;
  return v;
}

uint64_t row_reader::uint64() {
  auto v = parse_integer<uint64_t>(current(), "a non-negative integer");
  ++it_;
  return v;
}

bool row_reader::boolean() {
  auto v = current().as<bool>();
  ++it_;
  return v;
}

void row_reader::bytea(std::string* to) {
  auto& f = current();
  auto text = f.c_str();
  auto n = f.size();
  if (n >= 2 && text[0] == '\\' && text[1] == 'x') {
    // Hex: two digits a byte, decoded into the destination in one pass.
    if (n % 2 != 0)
      throw pqxx::conversion_error{"bytea: odd number of hex digits"};
    to->resize((n - 2) / 2);
    auto* out = to->data();
    for (std::size_t i = 2; i < n; i += 2) {
      auto hi = hex_values[static_cast<unsigned char>(text[i])];
      auto lo = hex_values[static_cast<unsigned char>(text[i + 1])];
      if (hi < 0 || lo < 0)
        throw pqxx::conversion_error{"bytea: not a hex digit"};
      *out++ = static_cast<char>((hi << 4) | lo);
    }
  } else {
    // The escape format (bytea_output = 'escape'): libpqxx decodes it.
    *to = pqxx::binarystring{f}.str();
  }
  ++it_;
}

event_record read_event_record(row_reader& c) {
  event_record e;
  e.seq_nr = c.int64();
  c.text(&e.type);
  e.version = c.int32();
  c.bytea(&e.payload);
  c.text(&e.command_id);
  e.position = c.int64();
  return e;
}

} // namespace shoutflow::journal
