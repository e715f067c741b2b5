#pragma once

// Small text helpers shared by validators: strict UTF-8 and code points.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace shoutflow {

/// Number of code points in `s` when it is well-formed UTF-8 (no overlong
/// forms, no surrogates, nothing above U+10FFFF); nothing otherwise.
std::optional<std::size_t> utf8_length(std::string_view s);

/// Length in bytes (1 to 4) of the well-formed UTF-8 sequence that starts at
/// s[i], by the same rules; 0 when none does (a stray or truncated byte).
/// Requires i < s.size().
std::size_t utf8_sequence_length(std::string_view s, std::size_t i);

/// ASCII lower case (handles are ASCII by construction).
std::string ascii_lower(std::string_view s);

/// Lowercase hexadecimal rendering of bytes.
std::string to_hex(std::string_view bytes);

} // namespace shoutflow
