#pragma once

// Reading a result row's columns, left to right.
//
// In libpqxx 6 a field taken by index (`row[i]`) holds a copy of the whole
// result: a reference count taken and dropped per column. On a timeline page
// (20 rows of 12 columns) that was 8 % of the node's CPU, and on a rebuild's
// log fetch (50,000 rows of 8 columns) `field::field` and the count's release
// were 5.7 % of the node's samples (docs/benchmarks.md, issue 14). A
// row_reader walks the row with one field iterator instead, and text and
// bytea go to their destination straight from libpq's buffer, with no
// temporary string.
//
// The reader trusts the statement it reads: the caller names the columns in
// the SELECT's order. Reading past the last column is a broken invariant.

#include <cstdint>
#include <string>

#include <pqxx/pqxx>

#include "actors/journal/journal_types.hpp"

namespace shoutflow::journal {

class row_reader {
public:
  explicit row_reader(const pqxx::row& r) : it_(r.begin()), end_(r.end()) {
  }

  bool is_null() const {
    return it_->is_null();
  }

  /// Skips the current column.
  void skip() {
    ++it_;
  }

  void text(std::string* to);

  std::string text() {
    std::string out;
    text(&out);
    return out;
  }

  int64_t int64();

  int32_t int32() {
    return static_cast<int32_t>(int64());
  }

  /// A non-negative integer given as text (an xid8 cast to text).
  uint64_t uint64();

  bool boolean();

  /// A bytea column, in either of PostgreSQL's output formats (hex, the
  /// default since 9.0, or escape).
  void bytea(std::string* to);

  std::string bytea() {
    std::string out;
    bytea(&out);
    return out;
  }

private:
  const pqxx::field& current() const;

  pqxx::row::const_iterator it_;
  pqxx::row::const_iterator end_;
};

/// Reads a journal event from the next six columns of `c`: seq_nr, type,
/// version, payload, command id (NULL reads as empty) and global position,
/// the order of every statement that reads events back for an entity.
event_record read_event_record(row_reader& c);

} // namespace shoutflow::journal
