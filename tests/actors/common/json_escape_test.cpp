// actors/common/json_escape.hpp: RFC 8259 escapes, well-formed UTF-8 kept
// as it is, and every byte that is not well-formed UTF-8 replaced, so the
// node's JSON log lines and the bench reports stay parsable whatever text
// they carry.

#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "actors/common/json_escape.hpp"
#include "actors/common/text.hpp"

namespace shoutflow {
namespace {

std::string escaped(std::string_view text) {
  std::string out = "prefix:";
  append_json_escaped(out, text);
  return out.substr(7);
}

TEST(append_json_escaped, appends_to_what_is_there) {
  std::string out = "{\"m\":\"";
  append_json_escaped(out, "a\"b");
  EXPECT_EQ(out, "{\"m\":\"a\\\"b");
}

TEST(append_json_escaped, escapes_quote_backslash_and_control_characters) {
  EXPECT_EQ(escaped(""), "");
  EXPECT_EQ(escaped("plain text / ok"), "plain text / ok");
  EXPECT_EQ(escaped("say \"hi\""), "say \\\"hi\\\"");
  EXPECT_EQ(escaped("C:\\dir"), "C:\\\\dir");
  EXPECT_EQ(escaped("a\nb\rc\td"), "a\\nb\\rc\\td");
  EXPECT_EQ(escaped(std::string("\0", 1)), "\\u0000");
  EXPECT_EQ(escaped("\x07\x08\x0c\x1f"), "\\u0007\\u0008\\u000c\\u001f");
  EXPECT_EQ(escaped("\x20\x7f"), "\x20\x7f") << "space and DEL need none";
}

TEST(append_json_escaped, keeps_well_formed_utf8) {
  EXPECT_EQ(escaped("caf\xC3\xA9"), "caf\xC3\xA9");             // é
  EXPECT_EQ(escaped("\xE2\x82\xAC 5"), "\xE2\x82\xAC 5");       // €
  EXPECT_EQ(escaped("\xF0\x9F\x98\x80!"), "\xF0\x9F\x98\x80!"); // 😀
  EXPECT_EQ(escaped("\xF4\x8F\xBF\xBF"), "\xF4\x8F\xBF\xBF");   // U+10FFFF
  EXPECT_EQ(escaped("\xE2\x80\xA8"), "\xE2\x80\xA8") << "U+2028 is valid JSON";
}

TEST(append_json_escaped, replaces_each_byte_that_is_not_well_formed_utf8) {
  EXPECT_EQ(escaped("a\x80z"), "a\\ufffdz") << "continuation without a lead";
  EXPECT_EQ(escaped("\xFF"), "\\ufffd");
  EXPECT_EQ(escaped("\xC0\x80"), "\\ufffd\\ufffd") << "overlong NUL";
  EXPECT_EQ(escaped("\xED\xA0\x80"), "\\ufffd\\ufffd\\ufffd") << "U+D800";
  EXPECT_EQ(escaped("\xF4\x90\x80\x80"), "\\ufffd\\ufffd\\ufffd\\ufffd")
    << "above U+10FFFF";
  EXPECT_EQ(escaped("ab\xE2\x82"), "ab\\ufffd\\ufffd")
    << "truncated at the end";
  EXPECT_EQ(escaped("\xC3\"x"), "\\ufffd\\\"x") << "a lead before a quote";
}

TEST(append_json_escaped, output_is_always_well_formed_utf8) {
  std::string every_byte;
  for (int b = 0; b < 256; ++b)
    every_byte.push_back(static_cast<char>(b));
  auto out = escaped(every_byte);
  EXPECT_TRUE(utf8_length(out).has_value());
  for (unsigned char c : out)
    EXPECT_GE(c, 0x20) << "no raw control character";
}

} // namespace
} // namespace shoutflow
