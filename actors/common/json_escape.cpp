#include "actors/common/json_escape.hpp"

#include <cstdio>

#include "actors/common/text.hpp"

namespace shoutflow {

void append_json_escaped(std::string& out, std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    auto c = static_cast<unsigned char>(text[i]);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char esc[8];
          std::snprintf(esc, sizeof(esc), "\\u%04x", c);
          out += esc;
        } else if (auto n = utf8_sequence_length(text, i); n > 0) {
          out.append(text.substr(i, n));
          i += n;
          continue;
        } else {
          // Not well-formed UTF-8 (the header says why it is replaced).
          out += "\\ufffd";
        }
    }
    ++i;
  }
}

} // namespace shoutflow
