// append_json_string / JsonObjectText (core/json_text.hpp): the hot paths' JSON writer, which
// copies plain characters a word at a time (a literal's last bytes too, overlapping or padded).
// Properties:
//  - the text appended is a JSON string literal nlohmann reads back as the input's bytes, each
//    byte below 0x80 as itself and each other byte as the character U+00XX (two bytes of UTF-8);
//  - it is exactly as long as that escaping makes it (quotes, \" and \\, \u00XX for the rest of
//    what needs an escape), and the text before it is left as it was;
//  - an object of up to three members whose values are the input's 0xFF-separated pieces reads
//    back with every member's value, whatever the buffer held before (it is reused).
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/json_text.hpp"
#include "fuzz/fuzz_support.hpp"

using backstop::JsonObjectText;
using backstop::append_json_string;
using backstop::fuzz::printable;

namespace {

// What the literal must read back as.
std::string expected_text(std::string_view s) {
  std::string out;
  for (const char ch : s) {
    const auto b = static_cast<unsigned char>(ch);
    if (b < 0x80) {
      out += ch;
    } else {
      out += static_cast<char>(0xC0 | (b >> 6));
      out += static_cast<char>(0x80 | (b & 0x3F));
    }
  }
  return out;
}

// How long the literal must be.
std::size_t expected_size(std::string_view s) {
  std::size_t n = 2;
  for (const char ch : s) {
    const auto b = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') n += 2;
    else if (b < 0x20 || b >= 0x80) n += 6;
    else n += 1;
  }
  return n;
}

std::string read_string(const std::string& text, std::string_view what) {
  const auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  FUZZ_CHECK(!j.is_discarded() && j.is_array() && j.size() == 1 && j[0].is_string(), "%.*s: not a JSON string: %s",
             static_cast<int>(what.size()), what.data(), printable(text).c_str());
  return j[0].get<std::string>();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  // The literal appended after text already there (a prefix that reaches past the string's own
  // small buffer, so the append may grow it).
  const std::string prefix = "[" + std::string(size % 23, ' ');
  std::string out = prefix;
  append_json_string(out, input);
  FUZZ_CHECK(out.compare(0, prefix.size(), prefix) == 0, "the text before the literal changed");
  FUZZ_CHECK(out.size() - prefix.size() == expected_size(input), "literal of %zu bytes, expected %zu: %s",
             out.size() - prefix.size(), expected_size(input), printable(out).c_str());
  const std::string back = read_string(out + "]", "append_json_string");
  FUZZ_CHECK(back == expected_text(input), "read back differs for input %s", printable(input).c_str());

  // An object of the input's pieces, written into a reused buffer left holding other text.
  std::string pieces[3];
  std::size_t n = 0, from = 0;
  for (; n < 3; ++n) {
    const std::size_t end = input.find('\xff', from);
    pieces[n] = std::string(input.substr(from, end == std::string_view::npos ? std::string_view::npos : end - from));
    if (end == std::string_view::npos) {
      ++n;
      break;
    }
    from = end + 1;
  }
  std::string buffer(size % 300, 'x');
  JsonObjectText object(buffer);
  if (n > 0) object.add("a", pieces[0]);
  if (n > 1) object.add("stop_price", pieces[1]);
  if (n > 2) object.add("c", pieces[2]);
  const std::string text(object.close());
  const auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  FUZZ_CHECK(!j.is_discarded() && j.is_object() && j.size() == n, "not an object of %zu members: %s", n,
             printable(text).c_str());
  const char* keys[] = {"a", "stop_price", "c"};
  for (std::size_t i = 0; i < n; ++i)
    FUZZ_CHECK(j.at(keys[i]).get<std::string>() == expected_text(pieces[i]), "member %s read back differs: %s",
               keys[i], printable(text).c_str());
  return 0;
}
