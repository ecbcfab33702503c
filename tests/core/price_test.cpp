#include "core/price.hpp"

#include <limits>
#include <string>

#include <gtest/gtest.h>

using backstop::ParseError;
using backstop::Price;
using backstop::TickSize;

TEST(Price, ParsesBrokerStringsExactly) {
  EXPECT_EQ(Price::parse("232.86").units(), 23'286'000'000);
  EXPECT_EQ(Price::parse("1,300").units(), 130'000'000'000);
  EXPECT_EQ(Price::parse("12,345,678.5").to_string(), "12345678.5");
  EXPECT_EQ(Price::parse("-0.25").to_string(), "-0.25");
  EXPECT_EQ(Price::parse("+7").to_string(), "7");
  EXPECT_EQ(Price::parse(".5").to_string(), "0.5");
  EXPECT_EQ(Price::parse("5.").to_string(), "5");
  EXPECT_EQ(Price::parse(" 1.00000001 ").units(), 100'000'001);
  EXPECT_EQ(Price::parse("0.015625").to_string(), "0.015625");  // 1/64, a bond-future tick
}

TEST(Price, ArithmeticHasNoBinaryFloatingPointError) {
  // 0.1 + 0.2 == 0.3 exactly, which a double cannot say.
  EXPECT_EQ(Price::parse("0.1") + Price::parse("0.2"), Price::parse("0.3"));
  EXPECT_LT(Price::parse("232.85"), Price::parse("232.86"));
  EXPECT_EQ(Price::parse("232.86") * 3, Price::parse("698.58"));
}

TEST(Price, RejectsMalformedWithAClearError) {
  for (const char* bad : {"", " ", "-", "abc", "1.2.3", "1e5", "NaN", "inf", "1,30", ",100", "1,0000", "12,34,567",
                          "0.123456789", "--1", "1-", "1 2", "99999999999999999999", "0x10", "1,300,00"}) {
    Price p;
    std::string why;
    EXPECT_FALSE(Price::try_parse(bad, p, &why)) << bad;
    EXPECT_NE(why.find("malformed price"), std::string::npos) << bad;
    EXPECT_THROW(Price::parse(bad), ParseError) << bad;
  }
  try {
    Price::parse("23x.5");
    FAIL();
  } catch (const ParseError& e) {
    EXPECT_NE(std::string(e.what()).find("\"23x.5\""), std::string::npos) << "message names the input";
  }
}

TEST(Price, LargestValuesDoNotOverflow) {
  EXPECT_NO_THROW(Price::parse("92233720367.99999999"));
  EXPECT_THROW(Price::parse("92233720368"), ParseError);
  EXPECT_EQ(Price::from_units(std::numeric_limits<std::int64_t>::min()).to_string().substr(0, 1), "-");
}

TEST(Price, WritesItsShortestExactFormAndReadsItBack) {
  const std::int64_t lowest = std::numeric_limits<std::int64_t>::min();
  const std::int64_t highest = std::numeric_limits<std::int64_t>::max();
  const struct {
    std::int64_t units;
    const char* text;
  } cases[] = {{0, "0"},
               {1, "0.00000001"},
               {-1, "-0.00000001"},
               {10, "0.0000001"},
               {100'000'000, "1"},
               {-50'000'000, "-0.5"},
               {23'286'000'000, "232.86"},
               {1'000'000'001, "10.00000001"},
               {highest, "92233720368.54775807"},
               {lowest, "-92233720368.54775808"}};
  for (const auto& c : cases) {
    const Price p = Price::from_units(c.units);
    // Written into exactly kMaxChars, with a guard byte after it that must stay untouched.
    char text[Price::kMaxChars + 1];
    text[Price::kMaxChars] = '#';
    char* end = p.to_chars(text);
    EXPECT_EQ(std::string(text, end), c.text) << c.units;
    EXPECT_EQ(text[Price::kMaxChars], '#') << c.units;
    EXPECT_EQ(p.to_string(), c.text) << c.units;
    if (c.units != lowest && c.units != highest) {  // beyond what parse() takes
      EXPECT_EQ(Price::parse(c.text), p) << c.text;
    }
  }
  EXPECT_EQ(Price::from_units(lowest).to_string().size(), Price::kMaxChars);
}

TEST(TickSize, ChecksAndRoundsToTick) {
  const TickSize quarter(Price::parse("0.25"));
  EXPECT_TRUE(quarter.is_on_tick(Price::parse("5000.75")));
  EXPECT_FALSE(quarter.is_on_tick(Price::parse("5000.10")));
  EXPECT_EQ(quarter.round_down(Price::parse("5000.10")), Price::parse("5000"));
  EXPECT_EQ(quarter.round_up(Price::parse("5000.10")), Price::parse("5000.25"));
  EXPECT_EQ(quarter.nearest(Price::parse("5000.20")), Price::parse("5000.25"));
  EXPECT_EQ(quarter.round_down(Price::parse("-0.10")), Price::parse("-0.25"));
  EXPECT_EQ(quarter.ticks(Price::parse("1")), 4);
  EXPECT_THROW(TickSize(Price::parse("0")), backstop::ConfigError);
}

TEST(Price, WeightedAverageIsExact) {
  EXPECT_EQ(backstop::weighted_average(Price::parse("100"), 1, Price::parse("101"), 3), Price::parse("100.75"));
  EXPECT_EQ(backstop::weighted_average(Price(), 0, Price::parse("5"), 10), Price::parse("5"));
  // Large quantities go through 128-bit arithmetic.
  EXPECT_EQ(backstop::weighted_average(Price::parse("90000"), 1'000'000'000, Price::parse("90000"), 1'000'000'000),
            Price::parse("90000"));
}
