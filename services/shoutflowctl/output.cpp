#include "services/shoutflowctl/output.hpp"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>

namespace shoutflow::ctl {

namespace {

std::string to_json(const google::protobuf::Message& message, bool indent,
                    bool defaults) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = indent;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = defaults;
  std::string out;
  // Our own messages always convert; a failure would be a protobuf bug.
  auto status = google::protobuf::util::MessageToJsonString(message, &out,
                                                            options);
  if (!status.ok())
    return "{\"error\": \"unprintable message\"}";
  return out;
}

} // namespace

void print_json(std::ostream& out, const google::protobuf::Message& message) {
  auto text = to_json(message, true, true);
  out << text;
  if (text.empty() || text.back() != '\n')
    out << "\n";
}

std::string compact_json(const google::protobuf::Message& message) {
  return to_json(message, false, false);
}

std::string format_time(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0)
    return "-";
  std::time_t secs = static_cast<std::time_t>(t.seconds());
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                tm.tm_min, tm.tm_sec, t.nanos() / 1000000);
  return buf;
}

std::string format_seconds(double seconds) {
  char buf[32];
  if (!std::isfinite(seconds) || seconds < 0)
    return "?";
  if (seconds < 60) {
    std::snprintf(buf, sizeof buf, "%.1fs", seconds);
    return buf;
  }
  auto s = static_cast<long long>(std::llround(seconds));
  if (s < 3600)
    std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", s / 3600, (s % 3600) / 60);
  return buf;
}

table::table(std::vector<std::string> header) : header_(std::move(header)) {
}

void table::add(std::vector<std::string> row) {
  row.resize(header_.size());
  rows_.push_back(std::move(row));
}

void table::print(std::ostream& out) const {
  std::vector<std::size_t> width(header_.size(), 0);
  auto measure = [&](const std::vector<std::string>& row) {
    for (std::size_t i = 0; i < row.size(); ++i)
      width[i] = std::max(width[i], row[i].size());
  };
  measure(header_);
  for (auto& r : rows_)
    measure(r);
  auto line = [&](const std::vector<std::string>& row) {
    std::string text;
    for (std::size_t i = 0; i < row.size(); ++i) {
      text += row[i];
      if (i + 1 < row.size())
        text += std::string(width[i] - row[i].size() + 2, ' ');
    }
    while (!text.empty() && text.back() == ' ')
      text.pop_back();
    out << text << "\n";
  };
  line(header_);
  for (auto& r : rows_)
    line(r);
}

} // namespace shoutflow::ctl
