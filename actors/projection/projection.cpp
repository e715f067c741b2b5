#include "actors/projection/projection.hpp"

#include <functional>

namespace shoutflow::projection {

std::string expand_ddl(const std::string& ddl, const std::string& suffix) {
  std::string out;
  out.reserve(ddl.size() + 64);
  for (std::size_t i = 0; i < ddl.size(); ++i) {
    if (ddl.compare(i, 3, "{g}") == 0) {
      out += suffix;
      i += 2;
    } else {
      out += ddl[i];
    }
  }
  return out;
}

std::string prepared_name(const std::string& sql) {
  static const char* digits = "0123456789abcdef";
  auto h = std::hash<std::string>{}(sql);
  std::string out = "rm";
  for (int shift = 60; shift >= 0; shift -= 4)
    out += digits[(h >> shift) & 0xf];
  return out;
}

std::string stream_owner(const std::string& persistence_id) {
  auto bar = persistence_id.find('|');
  return bar == std::string::npos ? persistence_id
                                  : persistence_id.substr(bar + 1);
}

raw_event read_raw_event(journal::row_reader& c) {
  raw_event e;
  e.at.tx = c.uint64();
  e.at.position = c.int64();
  c.text(&e.persistence_id);
  e.seq_nr = c.int64();
  c.text(&e.type);
  e.version = c.int32();
  c.bytea(&e.payload);
  e.recorded_at_ms = c.int64();
  return e;
}

} // namespace shoutflow::projection
