// copy_writer against a real database: every value comes back as written,
// whatever it contains, and a refused row fails the COPY like a statement.

#include <gtest/gtest.h>

#include <pqxx/pqxx>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "actors/journal/pg_copy.hpp"
#include "tests/support/test_db.hpp"

using shoutflow::journal::copy_writer;
using shoutflow::testing::test_database;

namespace {

struct value_row {
  std::string id, text;
  int64_t number = 0;
  bool flag = false;
  int64_t at_ms = 0;
};

void create_table(const test_database& db) {
  db.exec("CREATE TABLE copied (id text PRIMARY KEY, body text NOT NULL,"
          " number bigint NOT NULL, flag boolean NOT NULL,"
          " at timestamptz NOT NULL)");
}

void copy_rows(pqxx::transaction_base& tx, const std::vector<value_row>& rows) {
  copy_writer copy{tx, "copied", {"id", "body", "number", "flag", "at"}};
  for (auto& r : rows)
    copy.text(r.id)
      .text(r.text)
      .integer(r.number)
      .boolean(r.flag)
      .timestamp_ms(r.at_ms)
      .end_row();
  copy.complete();
}

} // namespace

TEST(pg_copy, every_value_comes_back_as_written) {
  test_database db;
  create_table(db);
  std::vector<value_row> rows{
    {"tabs", "a\tb\tc", 0, true, 0},
    {"newlines", "line 1\nline 2\r\nline 3\r", -1, false, 1},
    {"backslashes", "\\N is not NULL, \\t is not a tab \\", 42, true, -1},
    {"empty", "", std::numeric_limits<int64_t>::max(), false, 999},
    {"min", "x", std::numeric_limits<int64_t>::min(), true, -1001},
    {"unicode", "żółw 🐢 \u00a0 ok", 7, false, 1764930000123},
    {"quotes", "'\"{},;", 8, true, 253402300799999}, // 9999-12-31 23:59:59.999
  };
  {
    pqxx::connection conn{db.url()};
    pqxx::work tx{conn};
    copy_rows(tx, rows);
    // The transaction is usable again after the COPY.
    EXPECT_EQ(tx.exec1("SELECT count(*) FROM copied")[0].as<int64_t>(),
              static_cast<int64_t>(rows.size()));
    tx.commit();
  }
  pqxx::connection conn{db.url()};
  pqxx::work tx{conn};
  for (auto& want : rows) {
    auto got = tx.exec_params1(
      "SELECT body, number, flag, (extract(epoch FROM at) * 1000)::bigint"
      " FROM copied WHERE id = $1",
      want.id);
    EXPECT_EQ(got[0].as<std::string>(), want.text) << want.id;
    EXPECT_EQ(got[1].as<int64_t>(), want.number) << want.id;
    EXPECT_EQ(got[2].as<bool>(), want.flag) << want.id;
    EXPECT_EQ(got[3].as<int64_t>(), want.at_ms) << want.id;
  }
}

TEST(pg_copy, a_refused_row_fails_the_copy_and_writes_nothing) {
  test_database db;
  create_table(db);
  pqxx::connection conn{db.url()};
  {
    pqxx::work tx{conn};
    EXPECT_THROW(copy_rows(tx, {{"same", "a", 1, true, 0},
                                {"other", "b", 2, false, 0},
                                {"same", "c", 3, true, 0}}),
                 pqxx::unique_violation);
  }
  EXPECT_EQ(db.scalar<int64_t>("SELECT count(*) FROM copied"), 0);
  // The connection serves the next transaction.
  pqxx::work tx{conn};
  copy_rows(tx, {{"after", "d", 4, false, 0}});
  tx.commit();
  EXPECT_EQ(db.scalar<int64_t>("SELECT count(*) FROM copied"), 1);
}

TEST(pg_copy, rejects_a_time_outside_what_it_can_write) {
  test_database db;
  create_table(db);
  pqxx::connection conn{db.url()};
  pqxx::work tx{conn};
  copy_writer copy{tx, "copied", {"id", "body", "number", "flag", "at"}};
  copy.text("late").text("x").integer(0).boolean(true);
  EXPECT_THROW(copy.timestamp_ms(253402300800000), std::out_of_range);
}
