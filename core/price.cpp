#include "core/price.hpp"

#include <charconv>
#include <cstdlib>
#include <limits>

namespace backstop {

namespace {
// Largest whole part whose scaled value plus any fraction still fits in int64.
constexpr std::int64_t kMaxWhole = std::numeric_limits<std::int64_t>::max() / Price::kScale - 1;

bool fail(std::string* why, std::string_view text, const char* reason) {
  if (why) *why = "malformed price \"" + std::string(text) + "\": " + reason;
  return false;
}
}  // namespace

bool Price::try_parse(std::string_view text, Price& out, std::string* why) {
  std::string_view s = text;
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  if (s.empty()) return fail(why, text, "empty");
  bool negative = false;
  if (s.front() == '-' || s.front() == '+') {
    negative = s.front() == '-';
    s.remove_prefix(1);
  }
  if (s.empty()) return fail(why, text, "no digits");

  const auto dot = s.find('.');
  std::string_view whole = s.substr(0, dot);
  std::string_view frac = dot == std::string_view::npos ? std::string_view{} : s.substr(dot + 1);
  if (dot != std::string_view::npos && frac.find('.') != std::string_view::npos)
    return fail(why, text, "more than one decimal point");
  if (whole.empty() && frac.empty()) return fail(why, text, "no digits");
  if (frac.size() > static_cast<std::size_t>(kDecimals))
    return fail(why, text, "more than 8 decimal places");

  // Thousands separators are accepted only in well-formed groups of three ("1,300",
  // "12,345,678"); "1,30" or ",100" is more likely a garbled field than a number.
  std::int64_t integer = 0;
  const bool grouped = whole.find(',') != std::string_view::npos;
  std::size_t digits_since_comma = 0;
  bool seen_comma = false;
  for (std::size_t i = 0; i < whole.size(); ++i) {
    const char c = whole[i];
    if (c == ',') {
      if (i == 0 || (seen_comma && digits_since_comma != 3) || (!seen_comma && digits_since_comma > 3))
        return fail(why, text, "misplaced thousands separator");
      seen_comma = true;
      digits_since_comma = 0;
      continue;
    }
    if (c < '0' || c > '9') return fail(why, text, "unexpected character");
    ++digits_since_comma;
    const int d = c - '0';
    if (integer > (kMaxWhole - d) / 10) return fail(why, text, "out of range");
    integer = integer * 10 + d;
  }
  if (grouped && digits_since_comma != 3) return fail(why, text, "misplaced thousands separator");

  std::int64_t fraction = 0;
  for (char c : frac) {
    if (c < '0' || c > '9') return fail(why, text, "unexpected character");
    fraction = fraction * 10 + (c - '0');
  }
  for (std::size_t i = frac.size(); i < static_cast<std::size_t>(kDecimals); ++i) fraction *= 10;

  const std::int64_t units = integer * kScale + fraction;
  out = Price(negative ? -units : units);
  return true;
}

Price Price::parse(std::string_view text) {
  Price p;
  std::string why;
  if (!try_parse(text, p, &why)) throw ParseError(why);
  return p;
}

std::string Price::to_string() const {
  char text[kMaxChars];
  return std::string(text, to_chars(text));  // up to 15 characters stay in the string itself
}

char* Price::to_chars(char* out) const {
  const bool negative = units_ < 0;
  // Work in unsigned so that the most negative value does not overflow.
  const auto magnitude = negative ? static_cast<std::uint64_t>(-(units_ + 1)) + 1
                                  : static_cast<std::uint64_t>(units_);
  if (negative) *out++ = '-';
  out = std::to_chars(out, out + 20, magnitude / kScale).ptr;  // at most 11 digits
  std::uint64_t frac = magnitude % kScale;
  if (frac == 0) return out;
  int digits = kDecimals;
  while (frac % 10 == 0) {  // trailing zeros are not written: "232.86", not "232.86000000"
    frac /= 10;
    --digits;
  }
  *out++ = '.';
  for (int i = digits - 1; i >= 0; --i, frac /= 10) out[i] = static_cast<char>('0' + frac % 10);
  return out + digits;
}

TickSize::TickSize(Price tick) : tick_(tick) {
  if (tick.units() <= 0) throw ConfigError("tick size must be positive, got " + tick.to_string());
}

Price TickSize::round_down(Price p) const {
  const auto t = tick_.units();
  auto q = p.units() / t;
  if (p.units() % t != 0 && p.units() < 0) --q;
  return Price::from_units(q * t);
}

Price TickSize::round_up(Price p) const {
  const Price down = round_down(p);
  return down == p ? p : down + tick_;
}

Price weighted_average(Price a, std::int64_t qty_a, Price b, std::int64_t qty_b) {
  __extension__ using Wide = __int128;
  const std::int64_t total_qty = qty_a + qty_b;
  if (total_qty == 0) return Price();
  const Wide total = static_cast<Wide>(a.units()) * qty_a + static_cast<Wide>(b.units()) * qty_b;
  return Price::from_units(static_cast<std::int64_t>(total / total_qty));
}

Price TickSize::nearest(Price p) const {
  const Price down = round_down(p);
  const Price up = round_up(p);
  return (p - down) < (up - p) ? down : up;
}

}  // namespace backstop
