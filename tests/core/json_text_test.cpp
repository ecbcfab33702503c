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
