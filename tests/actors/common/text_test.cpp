// actors/common/text.hpp: strict UTF-8 code point counting, ASCII lower
// case and hex rendering.

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "actors/common/text.hpp"

namespace shoutflow {
namespace {

std::optional<std::size_t> len(const std::string& s) {
  return utf8_length(s);
}

TEST(utf8_length, counts_code_points) {
  EXPECT_EQ(len(""), 0u);
  EXPECT_EQ(len("abc"), 3u);
  EXPECT_EQ(len(std::string("a\0b", 3)), 3u);
  EXPECT_EQ(len("\xC3\xA9"), 1u);         // é
  EXPECT_EQ(len("\xE2\x82\xAC"), 1u);     // €
  EXPECT_EQ(len("\xF0\x9F\x98\x80"), 1u); // 😀
  EXPECT_EQ(len("a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80z"), 5u);
}

TEST(utf8_length, accepts_the_boundaries_of_each_length) {
  for (auto& ok : std::vector<std::string>{
         "\x7F",             // U+007F, last 1-byte
         "\xC2\x80",         // U+0080, first 2-byte
         "\xDF\xBF",         // U+07FF, last 2-byte
         "\xE0\xA0\x80",     // U+0800, first 3-byte
         "\xED\x9F\xBF",     // U+D7FF, before the surrogates
         "\xEE\x80\x80",     // U+E000, after the surrogates
         "\xEF\xBF\xBF",     // U+FFFF, last 3-byte
         "\xF0\x90\x80\x80", // U+10000, first 4-byte
         "\xF4\x8F\xBF\xBF", // U+10FFFF, last code point
       })
    EXPECT_EQ(len(ok), 1u) << to_hex(ok);
}

TEST(utf8_length, rejects_malformed_input) {
  for (auto& bad : std::vector<std::string>{
         "\x80", // continuation without a lead
         "\xBF",
         "\xC0\x80",             // overlong NUL
         "\xC1\xBF",             // overlong U+007F
         "\xE0\x80\x80",         // overlong
         "\xE0\x9F\xBF",         // overlong U+07FF
         "\xF0\x80\x80\x80",     // overlong
         "\xF0\x8F\xBF\xBF",     // overlong U+FFFF
         "\xED\xA0\x80",         // U+D800
         "\xED\xBF\xBF",         // U+DFFF
         "\xF4\x90\x80\x80",     // U+110000
         "\xF5\x80\x80\x80",     // lead byte above F4
         "\xF8\x88\x80\x80\x80", // 5-byte form
         "\xFC\x84\x80\x80\x80\x80",
         "\xFE",
         "\xFF",
         "\xC3", // truncated at the end
         "\xE2\x82",
         "\xF0\x9F\x98",
         "\xC3"
         "a",                // lead followed by ASCII
         "\xE2\x28\xA1",     // bad second byte
         "\xE2\x82\x28",     // bad third byte
         "\xF0\x9F\x98\x28", // bad fourth byte
         "\xC3\xC3\xA9",     // lead followed by lead
       }) {
    EXPECT_FALSE(len(bad).has_value()) << to_hex(bad);
    EXPECT_FALSE(len("ok" + bad + "ok").has_value()) << to_hex(bad);
  }
}

TEST(utf8_length, does_not_read_past_the_view) {
  // A view that cuts a valid sequence short is malformed, whatever follows.
  std::string s = "\xE2\x82\xAC";
  EXPECT_FALSE(utf8_length(std::string_view(s.data(), 2)).has_value());
  EXPECT_EQ(utf8_length(std::string_view(s.data(), 0)), 0u);
}

TEST(utf8_sequence_length, measures_the_sequence_at_an_index) {
  std::string s = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\x80";
  EXPECT_EQ(utf8_sequence_length(s, 0), 1u);
  EXPECT_EQ(utf8_sequence_length(s, 1), 2u);
  EXPECT_EQ(utf8_sequence_length(s, 2), 0u) << "inside a sequence";
  EXPECT_EQ(utf8_sequence_length(s, 3), 3u);
  EXPECT_EQ(utf8_sequence_length(s, 6), 4u);
  EXPECT_EQ(utf8_sequence_length(s, 10), 0u) << "stray continuation";
  EXPECT_EQ(utf8_sequence_length("\xED\xA0\x80", 0), 0u) << "surrogate";
  EXPECT_EQ(utf8_sequence_length("\xE2\x82", 0), 0u) << "truncated";
}

TEST(ascii_lower, lowers_ascii_letters_only) {
  EXPECT_EQ(ascii_lower(""), "");
  EXPECT_EQ(ascii_lower("AbC_09-z"), "abc_09-z");
  EXPECT_EQ(ascii_lower("ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
            "abcdefghijklmnopqrstuvwxyz");
  EXPECT_EQ(ascii_lower("@[`{"), "@[`{") << "neighbours of A-Z stay";
  EXPECT_EQ(ascii_lower("\xC3\x89"), "\xC3\x89") << "É is not ASCII";
  EXPECT_EQ(ascii_lower(std::string("A\0B", 3)), std::string("a\0b", 3));
}

TEST(to_hex, renders_lowercase_pairs) {
  EXPECT_EQ(to_hex(""), "");
  EXPECT_EQ(to_hex(std::string("\x00\x01\xAB\xFF", 4)), "0001abff");
  EXPECT_EQ(to_hex("AZ"), "415a");
  std::string all;
  for (int b = 0; b < 256; ++b)
    all.push_back(static_cast<char>(b));
  auto hex = to_hex(all);
  ASSERT_EQ(hex.size(), 512u);
  EXPECT_EQ(hex.substr(0, 6), "000102");
  EXPECT_EQ(hex.substr(506), "fdfeff");
  EXPECT_EQ(hex.find_first_not_of("0123456789abcdef"), std::string::npos);
}

} // namespace
} // namespace shoutflow
