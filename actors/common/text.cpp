#include "actors/common/text.hpp"

namespace shoutflow {

std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
  auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  auto continuation = [&](std::size_t k) {
    return k < s.size() && (byte(k) & 0xC0) == 0x80;
  };
  auto c = byte(i);
  if (c < 0x80)
    return 1;
  if (c >= 0xC2 && c <= 0xDF)
    return continuation(i + 1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!continuation(i + 1) || !continuation(i + 2))
      return 0;
    auto c1 = byte(i + 1);
    if (c == 0xE0 && c1 < 0xA0) // overlong
      return 0;
    if (c == 0xED && c1 >= 0xA0) // UTF-16 surrogates
      return 0;
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!continuation(i + 1) || !continuation(i + 2) || !continuation(i + 3))
      return 0;
    auto c1 = byte(i + 1);
    if (c == 0xF0 && c1 < 0x90) // overlong
      return 0;
    if (c == 0xF4 && c1 >= 0x90) // above U+10FFFF
      return 0;
    return 4;
  }
  return 0;
}

std::optional<std::size_t> utf8_length(std::string_view s) {
  std::size_t count = 0;
  for (std::size_t i = 0; i < s.size(); ++count) {
    auto n = utf8_sequence_length(s, i);
    if (n == 0)
      return std::nullopt;
    i += n;
  }
  return count;
}

std::string ascii_lower(std::string_view s) {
  std::string out{s};
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z')
      c = static_cast<char>(c - 'A' + 'a');
  return out;
}

std::string to_hex(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (auto b : bytes) {
    auto u = static_cast<unsigned char>(b);
    out.push_back(digits[u >> 4]);
    out.push_back(digits[u & 15]);
  }
  return out;
}

} // namespace shoutflow
