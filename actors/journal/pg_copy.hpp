#pragma once

// Bulk inserts by `COPY … FROM STDIN`.
//
// Rows go to PostgreSQL in COPY's text format: one line per row, fields
// separated by tabs, and backslash, tab, newline and carriage return in a
// value escaped with a backslash. PostgreSQL takes rows from a COPY stream at
// about half the backend CPU of the same rows unpacked from unnest() arrays
// (200,000 shout rows, 25,000 a transaction: 0.41-0.74 s against 0.87-1.08 s;
// docs/benchmarks.md), so large batches of new rows go this way. A COPY costs
// one round trip more than a prepared statement: small batches keep theirs.
//
// Errors (a unique violation, a value the column refuses) surface as the
// usual pqxx::sql_error from `complete()`, and the transaction is then
// aborted like after any failed statement.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <pqxx/pqxx>

namespace pqxx {
class tablewriter;
} // namespace pqxx

namespace shoutflow::journal {

/// One COPY into `table` (`columns` in the order the rows give them) in
/// `tx`. No other statement may run on `tx` until `complete()`.
class copy_writer {
public:
  copy_writer(pqxx::transaction_base& tx, const std::string& table,
              const std::vector<std::string>& columns);
  ~copy_writer();

  copy_writer(const copy_writer&) = delete;
  copy_writer& operator=(const copy_writer&) = delete;

  copy_writer& text(std::string_view value);
  copy_writer& integer(int64_t value);
  copy_writer& boolean(bool value);
  /// Milliseconds since the Unix epoch, as a UTC timestamptz.
  copy_writer& timestamp_ms(int64_t unix_ms);

  /// Sends the fields given since the last row as one row.
  void end_row();

  /// Ends the COPY; throws what PostgreSQL refused.
  void complete();

private:
  void separate();

  std::unique_ptr<pqxx::tablewriter> out_;
  std::string line_;
  bool first_ = true;
};

} // namespace shoutflow::journal
