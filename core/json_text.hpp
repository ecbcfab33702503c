#pragma once
// Writing small JSON objects as text, without building a document first. For hot paths only (a
// local stop's release journals its event while the tick that crossed it waits): building and
// dumping an nlohmann::json of four fields cost three quarters of the instructions from the tick
// to the order (callgrind, bench/PERFORMANCE.md). Everywhere else, use nlohmann::json.
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace backstop {

namespace json_text_detail {
constexpr std::uint64_t kOnes = 0x0101010101010101ULL;

// The room a string literal is written into: its quotes, every byte as \u00XX (the longest it
// can be), and 7 more, since a short literal is written as one 8-byte word (write_literal).
constexpr std::size_t max_literal_size(std::string_view s) { return 2 + 6 * s.size() + 7; }

constexpr bool needs_escape(char ch) {
  const auto c = static_cast<unsigned char>(ch);
  return c < 0x20 || c >= 0x80 || c == '"' || c == '\\';
}

// Whether any of the 8 bytes in `w` must be escaped: below 0x20, 0x80 and above, '"' or '\\'.
// Exact (the word-at-a-time tests for a zero byte and for a byte below n <= 128 give no false
// answer as a whole), so runs of plain characters are copied 8 at a time.
inline bool any_byte_needs_escape(std::uint64_t w) {
  constexpr std::uint64_t high = 0x8080808080808080ULL;
  const std::uint64_t quote = w ^ (kOnes * '"'), backslash = w ^ (kOnes * '\\');
  const std::uint64_t below_space = (w - kOnes * 0x20) & ~w & high;
  const std::uint64_t is_quote = (quote - kOnes) & ~quote & high;
  const std::uint64_t is_backslash = (backslash - kOnes) & ~backslash & high;
  return ((w & high) | below_space | is_quote | is_backslash) != 0;
}

// Writes `rest` one character at a time, escaped, and the closing quote; returns the end.
inline char* write_escaped(char* p, std::string_view rest) {
  static constexpr char hex[] = "0123456789abcdef";
  for (const char ch : rest) {
    const auto c = static_cast<unsigned char>(ch);
    if (!needs_escape(ch)) {
      *p++ = ch;
    } else if (c == '"' || c == '\\') {
      *p++ = '\\';
      *p++ = ch;
    } else {
      *p++ = '\\';
      *p++ = 'u';
      *p++ = '0';
      *p++ = '0';
      *p++ = hex[c >> 4];
      *p++ = hex[c & 0xf];
    }
  }
  *p++ = '"';
  return p;
}

// Writes `s` as a JSON string literal at `p`, which has room for max_literal_size(s) characters;
// returns the end of what was written. Prices, ids and names, which need no escape, go 8 bytes
// at a time, their last few too: a literal of 8 or more ends with its last 8 bytes (rewriting
// some already written, the same), a shorter one is read into a word padded with spaces and
// written whole (the padding lands in the room past its end, and is overwritten or cut).
inline char* write_literal(char* p, std::string_view s) {
  *p++ = '"';
  const std::size_t size = s.size();
  std::uint64_t w;
  std::size_t i = 0;
  for (; i + 8 <= size; i += 8, p += 8) {
    std::memcpy(&w, s.data() + i, 8);
    if (any_byte_needs_escape(w)) return write_escaped(p, s.substr(i));
    std::memcpy(p, &w, 8);
  }
  const std::size_t left = size - i;
  if (left == 0) {
    *p++ = '"';
    return p;
  }
  if (size >= 8) {
    std::memcpy(&w, s.data() + size - 8, 8);
    if (any_byte_needs_escape(w)) return write_escaped(p, s.substr(i));
    std::memcpy(p + left - 8, &w, 8);
  } else {
    w = kOnes * ' ';  // needs no escape
    std::memcpy(&w, s.data(), left);
    if (any_byte_needs_escape(w)) return write_escaped(p, s);
    std::memcpy(p, &w, 8);
  }
  p += left;
  *p++ = '"';
  return p;
}

// Appends what `write(p)` writes at `p` (at most `longest` characters; it returns the end of
// what it wrote). Short text, as on the hot paths (a price, an id, a name), is written on the
// stack and appended once; longer text into the string grown to `longest`, then cut to length.
// One size check for the whole text, not one per character.
template <typename Write>
void append_written(std::string& out, std::size_t longest, Write write) {
  char small[256];
  if (longest <= sizeof small) {
    out.append(small, static_cast<std::size_t>(write(small) - small));
    return;
  }
  const std::size_t at = out.size();
  out.resize(at + longest);
  char* const begin = out.data() + at;
  out.resize(at + static_cast<std::size_t>(write(begin) - begin));
}
}  // namespace json_text_detail

// Appends `s` as a JSON string literal, quotes included. Control characters and every byte
// outside ASCII are written as \u00XX: the text is always valid JSON, whatever the bytes (a
// multi-byte UTF-8 character reads back as its bytes, one character each; names here are ASCII).
// Written through a pointer (append_written): a local stop's fired event spent ~1,700
// instructions per tick in single-character appends before. A reused buffer keeps its capacity.
inline void append_json_string(std::string& out, std::string_view s) {
  using namespace json_text_detail;
  append_written(out, max_literal_size(s), [s](char* p) { return write_literal(p, s); });
}

// Writes one flat JSON object of string members into a caller's buffer:
//   JsonObjectText(buf).add("a", x).add("b", y).close()
// The buffer is cleared first and keeps its capacity, so a buffer reused for every event (a
// member of its owner) allocates only while it grows to its largest text: none on a hot path
// once warm.
class JsonObjectText {
 public:
  // A member's name: a string literal, checked when compiled to need no escape (a name that
  // does is a compile error), so it is copied as it is.
  class Key {
   public:
    template <std::size_t N>
    consteval Key(const char (&name)[N]) : name_(name, N - 1) {
      for (const char c : name_)
        if (json_text_detail::needs_escape(c)) throw "a JSON member name here must need no escape";
    }
    std::string_view view() const { return name_; }

   private:
    std::string_view name_;
  };

  explicit JsonObjectText(std::string& out) : text_(out) { text_.clear(); }
  JsonObjectText& add(Key key, std::string_view value) {
    using namespace json_text_detail;
    const char lead = text_.empty() ? '{' : ',';
    const std::string_view name = key.view();
    append_written(text_, 4 + name.size() + max_literal_size(value), [&](char* p) {
      *p++ = lead;
      *p++ = '"';
      std::memcpy(p, name.data(), name.size());
      p += name.size();
      *p++ = '"';
      *p++ = ':';
      return write_literal(p, value);
    });
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
