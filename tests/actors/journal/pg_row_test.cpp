// row_reader against a real database: every column type the journal and the
// read side read comes back as PostgreSQL sent it, bytea in both output
// formats, and a column that is not what the caller expects is an error,
// never a silent zero.

#include <gtest/gtest.h>

#include <pqxx/pqxx>

#include <cstdint>
#include <limits>
#include <string>

#include "actors/journal/pg_row.hpp"
#include "tests/support/test_db.hpp"

using shoutflow::journal::row_reader;
using shoutflow::testing::test_database;

namespace {

/// Every byte value once, then a few that look like escapes.
std::string all_bytes() {
  std::string out;
  for (int i = 0; i < 256; ++i)
    out.push_back(static_cast<char>(i));
  out += "\\x00\\\\'";
  return out;
}

std::string round_trip_bytea(pqxx::connection& conn, const std::string& value,
                             const std::string& format) {
  pqxx::work tx{conn};
  tx.exec0("SET LOCAL bytea_output = '" + format + "'");
  auto rows = tx.exec_params("SELECT $1::bytea, ''::bytea",
                             pqxx::binarystring{value});
  row_reader c{rows[0]};
  auto out = c.bytea();
  EXPECT_EQ(c.bytea(), "") << format;
  return out;
}

} // namespace

TEST(pg_row, bytea_comes_back_byte_for_byte_in_both_output_formats) {
  test_database db;
  pqxx::connection conn{db.url()};
  auto value = all_bytes();
  EXPECT_EQ(round_trip_bytea(conn, value, "hex"), value);
  EXPECT_EQ(round_trip_bytea(conn, value, "escape"), value);
}

TEST(pg_row, columns_are_read_left_to_right) {
  test_database db;
  pqxx::connection conn{db.url()};
  pqxx::nontransaction tx{conn};
  auto rows = tx.exec(
    "SELECT 'żółw 🐢\ttab'::text, '-9223372036854775808'::bigint,"
    " 9223372036854775807::bigint, 2147483647::int, true, false,"
    " '18446744073709551615'::text, NULL::text, 'skipped', 7::bigint,"
    " pg_current_xact_id()::text");
  row_reader c{rows[0]};
  EXPECT_EQ(c.text(), "żółw 🐢\ttab");
  EXPECT_EQ(c.int64(), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(c.int64(), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(c.int32(), std::numeric_limits<int32_t>::max());
  EXPECT_TRUE(c.boolean());
  EXPECT_FALSE(c.boolean());
  EXPECT_EQ(c.uint64(), std::numeric_limits<uint64_t>::max());
  EXPECT_TRUE(c.is_null());
  EXPECT_EQ(c.text(), ""); // NULL text reads as empty, as libpq gives it
  c.skip();
  EXPECT_EQ(c.int64(), 7);
  EXPECT_GT(c.uint64(), 0u); // an xid8 as the log reader fetches it
}

TEST(pg_row, a_column_that_is_not_what_the_caller_expects_is_an_error) {
  test_database db;
  pqxx::connection conn{db.url()};
  pqxx::nontransaction tx{conn};
  auto rows = tx.exec("SELECT NULL::bigint, 'x12', '12x', '-1', 1");
  row_reader c{rows[0]};
  EXPECT_THROW(c.int64(), pqxx::conversion_error); // NULL
  c.skip(); // a failed read does not move on
  EXPECT_THROW(c.int64(), pqxx::conversion_error); // 'x12'
  c.skip();
  EXPECT_THROW(c.int64(), pqxx::conversion_error); // '12x'
  c.skip();
  EXPECT_THROW(c.uint64(), pqxx::conversion_error); // '-1'
  EXPECT_EQ(c.int64(), -1);
  EXPECT_EQ(c.int64(), 1);
  EXPECT_THROW(c.int64(), pqxx::usage_error); // past the last column
}
