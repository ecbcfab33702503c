#include "core/json_text.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

using namespace backstop;

// What the hot path writes must read back as the same members through the parser every reader
// of the journal uses.
TEST(JsonObjectText, ReadsBackThroughTheParser) {
  std::string buf;
  const std::string text(JsonObjectText(buf)
                             .add("stop_price", "99.5")
                             .add("crossing_price", "-0.0001")
                             .add("source", "a \"quoted\" back\\slash")
                             .add("order_type", "market")
                             .close());
  const auto j = nlohmann::json::parse(text);
  EXPECT_EQ(j.size(), 4u);
  EXPECT_EQ(j.at("stop_price"), "99.5");
  EXPECT_EQ(j.at("crossing_price"), "-0.0001");
  EXPECT_EQ(j.at("source"), "a \"quoted\" back\\slash");
  EXPECT_EQ(j.at("order_type"), "market");
}

TEST(JsonObjectText, ControlCharactersAndNonAsciiBytesStayValidJson) {
  const std::string nasty = std::string("line\nbreak\ttab\x01") + "\xff\xc3";  // not valid UTF-8
  std::string buf;
  const std::string text(JsonObjectText(buf).add("k", nasty).close());
  const auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(j.is_discarded()) << text;
  const std::string back = j.at("k");
  EXPECT_EQ(back.substr(0, 15), "line\nbreak\ttab\x01");
  EXPECT_EQ(back.substr(15), "\xc3\xbf\xc3\x83") << "each byte outside ASCII reads back as one character";
}

TEST(JsonObjectText, EmptyObject) {
  std::string buf;
  EXPECT_EQ(JsonObjectText(buf).close(), "{}");
  EXPECT_EQ(nlohmann::json::parse(JsonObjectText(buf).add("", "").close()).at(""), "");
}

// The buffer is the caller's, reused: each object starts from empty (no member of the previous
// one survives) and, once the buffer has grown, writing the same size again does not reallocate.
TEST(JsonObjectText, ReusedBufferStartsEmptyAndKeepsItsCapacity) {
  std::string buf;
  JsonObjectText(buf).add("first", "a long enough value to leave the small-string buffer").close();
  const auto* storage = buf.data();
  const auto capacity = buf.capacity();
  const std::string second(JsonObjectText(buf).add("second", "b").close());
  EXPECT_EQ(second, "{\"second\":\"b\"}");
  EXPECT_EQ(buf.data(), storage);
  EXPECT_EQ(buf.capacity(), capacity);
}

// Every byte value, and a literal as long as one can be (every byte written as \u00XX), appended
// after text already in the string: the literal is written into room reserved for its longest
// form, so the longest form must fit and what comes before must stay as it was.
TEST(JsonObjectText, EveryByteReadsBackAndTheLongestLiteralFits) {
  std::string every;
  for (int b = 0; b < 256; ++b) every.push_back(static_cast<char>(b));
  const std::string worst(300, '\x01');
  std::string out = "[";
  append_json_string(out, every);
  out += ',';
  append_json_string(out, worst);
  out += ']';
  EXPECT_EQ(out.size(), 1 + (2 + 32 * 6 + 2 * 2 + (128 - 32 - 2) + 128 * 6) + 1 + (2 + 300 * 6) + 1);
  const auto j = nlohmann::json::parse(out, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(j.is_discarded()) << out;
  const std::string first = j.at(0);
  ASSERT_EQ(first.size(), 128u + 2 * 128u) << "ASCII as itself, each other byte as a two-byte character";
  EXPECT_EQ(first.substr(0, 128), every.substr(0, 128));
  EXPECT_EQ(j.at(1), worst);
}

// Members short enough for the stack and members written into the grown buffer, in one object.
TEST(JsonObjectText, ShortAndLongMembersReadBack) {
  const std::string long_value = std::string(200, 'x') + "\"\x02" + std::string(100, '\x7f');
  std::string buf;
  const std::string text(JsonObjectText(buf).add("short", "1.5").add("long", long_value).add("after", "\\").close());
  const auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(j.is_discarded()) << text;
  EXPECT_EQ(j.at("short"), "1.5");
  EXPECT_EQ(j.at("long"), long_value);
  EXPECT_EQ(j.at("after"), "\\");
}

// Plain characters are copied eight at a time, the last few of a literal too (its last word,
// overlapping, or a short literal padded to one): a character that needs its escape is found at
// every position of every length, within and across those words, and whatever follows it is
// still written.
TEST(JsonObjectText, EscapesAreFoundAtEveryPositionOfEveryLength) {
  for (const char special : {'"', '\\', '\x1f', '\x7f', '\x80', '\x00', ' '}) {
    for (std::size_t size = 1; size <= 25; ++size) {
      for (std::size_t at = 0; at < size; ++at) {
        std::string value(size, 'a');
        value.back() = 'z';
        value[at] = special;
        std::string out = "[";
        append_json_string(out, value);
        out += ']';
        const auto j = nlohmann::json::parse(out, nullptr, /*allow_exceptions=*/false);
        const std::string where = "byte " + std::to_string(int(static_cast<unsigned char>(special))) + " at " +
                                  std::to_string(at) + " of " + std::to_string(size) + ": " + out;
        ASSERT_FALSE(j.is_discarded()) << where;
        const std::string back = j.at(0);
        if (static_cast<unsigned char>(special) < 0x80) {
          EXPECT_EQ(back, value) << where;
        } else {
          EXPECT_EQ(back.size(), value.size() + 1) << "one byte outside ASCII reads back as two; " << where;
        }
      }
    }
  }
}

// Literals of every length that need no escape: exactly their characters between quotes, and
// the text appended after them in place (a short one is written as a whole padded word).
TEST(JsonObjectText, PlainLiteralsOfEveryLengthAreWrittenExactly) {
  for (std::size_t size = 0; size <= 40; ++size) {
    std::string value;
    for (std::size_t i = 0; i < size; ++i) value.push_back(static_cast<char>('A' + i % 26));
    std::string out = "x";
    append_json_string(out, value);
    out += '!';
    EXPECT_EQ(out, "x\"" + value + "\"!") << size;
    std::string buf;
    EXPECT_EQ(JsonObjectText(buf).add("k", value).add("n", "1").close(), "{\"k\":\"" + value + "\",\"n\":\"1\"}") << size;
  }
}
