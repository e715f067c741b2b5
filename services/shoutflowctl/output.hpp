#pragma once

// How shoutflowctl prints: JSON documents (the protobuf JSON mapping with
// proto field names and every field, zeros included, so scripts never miss
// a key), aligned text tables, times and durations.

#include <google/protobuf/message.h>
#include <google/protobuf/timestamp.pb.h>

#include <ostream>
#include <string>
#include <vector>

namespace shoutflow::ctl {

/// `message` as one indented JSON document and a newline.
void print_json(std::ostream& out, const google::protobuf::Message& message);

/// `message` as one line of compact JSON (no newline), without the fields
/// that hold their default value: for people to read inside a table.
std::string compact_json(const google::protobuf::Message& message);

/// RFC 3339 in UTC with milliseconds ("2026-12-04T16:02:03.123Z"); "-" when
/// unset.
std::string format_time(const google::protobuf::Timestamp& t);

/// "0.4s", "12.0s", "3m05s", "2h01m".
std::string format_seconds(double seconds);

/// Columns aligned to their widest cell; the last column is not padded.
class table {
public:
  explicit table(std::vector<std::string> header);
  void add(std::vector<std::string> row);
  void print(std::ostream& out) const;
  bool empty() const {
    return rows_.empty();
  }

private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

} // namespace shoutflow::ctl
