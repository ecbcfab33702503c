#include "core/utf8.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

using namespace backstop;

// What make_valid_utf8 leaves is what nlohmann's dump() accepts: checked on every byte pattern
// that matters (cut sequences, overlong forms, surrogates, above U+10FFFF) and on random bytes.
TEST(Utf8, MadeValidTextIsAcceptedByTheJsonWriterAndValidTextIsUnchanged) {
  const std::vector<std::string> valid = {"", "plain ASCII", "caf\xc3\xa9", "\xe2\x82\xac 5", "\xf0\x9f\x93\x88",
                                          "\xed\x9f\xbf", "\xf4\x8f\xbf\xbf", std::string("nul\0in", 6)};
  for (std::string s : valid) {
    const std::string before = s;
    EXPECT_TRUE(is_valid_utf8(s)) << before;
    make_valid_utf8(s);
    EXPECT_EQ(s, before);
  }
  const std::vector<std::pair<std::string, std::string>> invalid = {
      {"d\xe9lai", "d?lai"},                 // Latin-1
      {"cut \xe2\x82", "cut ??"},            // a sequence cut short (an excerpt's end)
      {"\xc0\xaf", "??"},                    // overlong
      {"\xed\xa0\x80", "???"},               // a UTF-16 surrogate
      {"\xf4\x90\x80\x80", "????"},          // above U+10FFFF
      {"\xff\xfe ok \xc3\xa9", "?? ok \xc3\xa9"},  // the valid part kept
  };
  for (auto [s, expected] : invalid) {
    EXPECT_FALSE(is_valid_utf8(s));
    make_valid_utf8(s);
    EXPECT_EQ(s, expected);
    EXPECT_NO_THROW((void)nlohmann::json(s).dump());
  }
  std::uint32_t x = 12345;
  for (int round = 0; round < 2000; ++round) {
    std::string s;
    for (int k = 0; k < 12; ++k) {
      x = x * 1664525u + 1013904223u;
      s += static_cast<char>(x >> 24);
    }
    make_valid_utf8(s);
    EXPECT_TRUE(is_valid_utf8(s));
    EXPECT_NO_THROW((void)nlohmann::json(s).dump()) << round;
  }
}
