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

// Builds one flat JSON object of string members: JsonObjectText().add("a", x).add("b", y).text().
class JsonObjectText {
 public:
  explicit JsonObjectText(std::size_t reserve = 128) { text_.reserve(reserve); }
  JsonObjectText& add(std::string_view key, std::string_view value) {
    text_ += text_.empty() ? '{' : ',';
    append_json_string(text_, key);
    text_ += ':';
    append_json_string(text_, value);
    return *this;
  }
  // The object's text ("{}" when empty); the builder is spent after.
  std::string text() {
    if (text_.empty()) return "{}";
    text_ += '}';
    return std::move(text_);
  }

 private:
  std::string text_;
};

}  // namespace backstop
