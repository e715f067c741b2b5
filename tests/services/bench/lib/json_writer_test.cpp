// The bench JSON writer produces documents a real JSON parser accepts
// (protobuf's), with escaped strings, nested containers and null for
// non-finite numbers.

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "services/bench/lib/json_writer.hpp"

using shoutflow::bench::json_writer;

namespace {

google::protobuf::Struct parse(const std::string& json) {
  google::protobuf::Struct doc;
  auto status = google::protobuf::util::JsonStringToMessage(json, &doc);
  EXPECT_TRUE(status.ok()) << status.ToString() << "\n" << json;
  return doc;
}

} // namespace

TEST(json_writer, nested_document_parses) {
  for (bool indent : {true, false}) {
    json_writer w{indent};
    w.begin_object();
    w.field("s", "quote \" backslash \\ newline \n tab \t bell \x07");
    w.field("i", int64_t{-42}).field("u", uint64_t{18446744073709551615u});
    w.field("d", 0.125).field("b", true);
    w.field("inf", std::numeric_limits<double>::infinity());
    w.key("empty_a").begin_array().end_array();
    w.key("empty_o").begin_object().end_object();
    w.key("a").begin_array();
    w.value(1).value("two").begin_object().field("three", 3).end_object();
    w.end_array();
    w.end_object();
    auto doc = parse(w.str());
    const auto& f = doc.fields();
    EXPECT_EQ(f.at("s").string_value(),
              "quote \" backslash \\ newline \n tab \t bell \x07");
    EXPECT_EQ(f.at("i").number_value(), -42);
    EXPECT_EQ(f.at("d").number_value(), 0.125);
    EXPECT_TRUE(f.at("b").bool_value());
    EXPECT_TRUE(f.at("inf").has_null_value());
    EXPECT_EQ(f.at("empty_a").list_value().values_size(), 0);
    EXPECT_EQ(f.at("empty_o").struct_value().fields_size(), 0);
    ASSERT_EQ(f.at("a").list_value().values_size(), 3);
    EXPECT_EQ(f.at("a")
                .list_value()
                .values(2)
                .struct_value()
                .fields()
                .at("three")
                .number_value(),
              3);
  }
}

TEST(json_writer, invalid_utf8_becomes_the_replacement_character) {
  // An error message or host name with a stray byte must not make the
  // whole report unparsable (actors/common/json_escape.hpp).
  json_writer w;
  w.begin_object().field("s", "caf\xC3\xA9 \xFF end").end_object();
  auto doc = parse(w.str());
  EXPECT_EQ(doc.fields().at("s").string_value(),
            "caf\xC3\xA9 \xEF\xBF\xBD end");
}
