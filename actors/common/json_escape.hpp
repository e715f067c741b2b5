#pragma once

// JSON string escaping (RFC 8259, section 7) for everything ShoutFlow writes
// as JSON by hand: the node's JSON log lines (log.hpp) and the benchmark
// reports (services/bench/lib/json_writer.hpp).
//
// Escaped: quotation mark and backslash as \" and \\; newline, carriage
// return and tab as \n, \r and \t; the other control characters
// (U+0000-U+001F) as \u00XX. Well-formed UTF-8 (text.hpp: no overlong
// forms, surrogates or code points above U+10FFFF) is copied as it is.
// Every byte that does not start a well-formed sequence becomes \ufffd
// (U+FFFD, the replacement character): RFC 8259 requires UTF-8, and one
// stray byte from a peer's message or a truncated name would otherwise make
// the whole log line or report unparsable for a strict reader.

#include <string>
#include <string_view>

namespace shoutflow {

/// Appends `text` to `out` as the inside of a JSON string (no quotes).
void append_json_escaped(std::string& out, std::string_view text);

} // namespace shoutflow
