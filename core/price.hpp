#pragma once
// Exact prices. Brokers send numbers as JSON strings ("232.86", "1,300"); they are parsed into
// fixed-point integers so that no comparison that decides whether a stop was crossed ever
// touches a double.
#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/error.hpp"

namespace backstop {

class Price {
 public:
  // Eight decimal places cover every tick size Backstop trades (equities 0.0001, FX 0.00001,
  // futures 0.25 / 1/64 as 0.015625) exactly.
  static constexpr int kDecimals = 8;
  static constexpr std::int64_t kScale = 100'000'000;

  constexpr Price() = default;
  static constexpr Price from_units(std::int64_t units) { return Price(units); }
  static constexpr Price from_integer(std::int64_t whole) { return Price(whole * kScale); }

  // Parses a decimal string: optional sign, digits with optional thousands separators in
  // groups of three ("1,300"), optional fraction of at most kDecimals digits. Anything else
  // (empty, exponent, NaN, stray characters, overflow) throws ParseError naming the input.
  static Price parse(std::string_view text);
  // Same rules, but reports failure through the return value instead of throwing.
  static bool try_parse(std::string_view text, Price& out, std::string* why = nullptr);

  constexpr std::int64_t units() const { return units_; }
  // Shortest exact decimal form ("232.86", "-0.25", "1300").
  std::string to_string() const;
  // The longest that form can be: "-92233720368.54775808".
  static constexpr std::size_t kMaxChars = 21;
  // Writes the same form at `out`, which has room for kMaxChars; returns the end of it. For hot
  // paths that put a price into a larger text (a journal event, a request body): no string.
  char* to_chars(char* out) const;
  // For display and statistics only; never for decisions.
  double to_double() const { return static_cast<double>(units_) / kScale; }

  constexpr bool is_zero() const { return units_ == 0; }
  constexpr auto operator<=>(const Price&) const = default;
  constexpr Price operator+(Price o) const { return Price(units_ + o.units_); }
  constexpr Price operator-(Price o) const { return Price(units_ - o.units_); }
  constexpr Price operator-() const { return Price(-units_); }
  constexpr Price operator*(std::int64_t k) const { return Price(units_ * k); }

 private:
  constexpr explicit Price(std::int64_t units) : units_(units) {}
  std::int64_t units_ = 0;
};

// An instrument's minimum price increment. Prices that are not a whole number of ticks are
// refused before they reach a broker.
class TickSize {
 public:
  constexpr TickSize() : tick_(Price::from_units(1)) {}
  explicit TickSize(Price tick);  // throws ConfigError unless tick > 0
  Price value() const { return tick_; }
  bool is_on_tick(Price p) const { return p.units() % tick_.units() == 0; }
  // Number of ticks in a price (exact only when is_on_tick).
  std::int64_t ticks(Price p) const { return p.units() / tick_.units(); }
  Price round_down(Price p) const;
  Price round_up(Price p) const;
  Price nearest(Price p) const;

 private:
  Price tick_;
};

// Average price of `qty_a` at `a` and `qty_b` at `b`, exact to the 8th decimal (truncated),
// computed in 128 bits so that large quantities cannot overflow.
Price weighted_average(Price a, std::int64_t qty_a, Price b, std::int64_t qty_b);

}  // namespace backstop
