#pragma once
// Writing small JSON objects as text, without building a document first. For hot paths only (a
// local stop's release journals its event while the tick that crossed it waits): building and
// dumping an nlohmann::json of four fields cost three quarters of the instructions from the tick
// to the order (callgrind, bench/PERFORMANCE.md). Everywhere else, use nlohmann::json.
#include <string>
#include <string_view>

namespace backstop {

// Appends `s` as a JSON string literal, quotes included. Control characters and every byte
// outside ASCII are written as \u00XX: the text is always valid JSON, whatever the bytes (a
// multi-byte UTF-8 character reads back as its bytes, one character each; names here are ASCII).
inline void append_json_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  std::size_t i = 0;
  while (i < s.size()) {
    // Runs of characters that need no escape are appended whole (prices and names are all run).
    const std::size_t start = i;
    while (i < s.size()) {
      const auto c = static_cast<unsigned char>(s[i]);
      if (c < 0x20 || c >= 0x80 || c == '"' || c == '\\') break;
      ++i;
    }
    out.append(s.data() + start, i - start);
    if (i == s.size()) break;
    const auto c = static_cast<unsigned char>(s[i++]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else {
      out += "\\u00";
      out += hex[c >> 4];
      out += hex[c & 0xf];
    }
  }
  out += '"';
}

// Writes one flat JSON object of string members into a caller's buffer:
//   JsonObjectText(buf).add("a", x).add("b", y).close()
// The buffer is cleared first and keeps its capacity, so a buffer reused for every event (a
// member of its owner) allocates only while it grows to its largest text: none on a hot path
// once warm.
class JsonObjectText {
 public:
  explicit JsonObjectText(std::string& out) : text_(out) { text_.clear(); }
  JsonObjectText& add(std::string_view key, std::string_view value) {
    text_ += text_.empty() ? '{' : ',';
    append_json_string(text_, key);
    text_ += ':';
    append_json_string(text_, value);
    return *this;
  }
  // Ends the object ("{}" when empty); the text stays in the caller's buffer, viewed here.
  std::string_view close() {
    if (text_.empty()) text_ += '{';
    text_ += '}';
    return text_;
  }

 private:
  std::string& text_;
};

}  // namespace backstop
