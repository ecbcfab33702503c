// Price::parse / Price::try_parse (core/price.hpp).
// Properties:
//  - parse() throws ParseError exactly when try_parse() fails, and they agree on the value;
//    a refusal names the input ("malformed price").
//  - an accepted text has the value an independent 128-bit reference reading gives it;
//  - an accepted price formats (to_string) to a canonical text that parses back to the same
//    value and formats identically again;
//  - any int64 unit count within the parseable range formats to a text that parses back;
//  - any int64 unit count at all is written (to_chars) within Price::kMaxChars, as to_string.
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "core/price.hpp"
#include "fuzz/fuzz_support.hpp"

using backstop::Price;
using backstop::fuzz::printable;

namespace {

__extension__ using Wide = __int128;

// Independent reading of the documented grammar, wide enough never to overflow: returns the
// value in units when `text` is well formed (ignoring range), nullopt otherwise.
std::optional<Wide> reference(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  bool neg = false;
  if (!s.empty() && (s.front() == '-' || s.front() == '+')) {
    neg = s.front() == '-';
    s.remove_prefix(1);
  }
  std::string whole, frac;
  bool dot = false;
  std::vector<std::size_t> groups;  // digit counts between commas
  std::size_t run = 0;
  bool comma = false;
  for (char c : s) {
    if (c == '.') {
      if (dot) return std::nullopt;
      dot = true;
      continue;
    }
    if (c == ',') {
      if (dot) return std::nullopt;
      comma = true;
      groups.push_back(run);
      run = 0;
      continue;
    }
    if (c < '0' || c > '9') return std::nullopt;
    if (dot) frac += c;
    else {
      whole += c;
      ++run;
    }
  }
  if (whole.empty() && frac.empty()) return std::nullopt;
  if (frac.size() > 8) return std::nullopt;
  if (comma) {
    groups.push_back(run);
    if (groups.front() < 1 || groups.front() > 3) return std::nullopt;
    for (std::size_t i = 1; i < groups.size(); ++i)
      if (groups[i] != 3) return std::nullopt;
  }
  // Whole parts beyond 20 digits are out of range anyway; cap to keep the reference exact.
  std::size_t lead = 0;
  while (lead < whole.size() && whole[lead] == '0') ++lead;
  if (whole.size() - lead > 20) return Wide(std::numeric_limits<std::int64_t>::max()) * 4;
  Wide v = 0;
  for (char c : whole) v = v * 10 + (c - '0');
  Wide f = 0;
  for (char c : frac) f = f * 10 + (c - '0');
  for (std::size_t i = frac.size(); i < 8; ++i) f *= 10;
  v = v * Price::kScale + f;
  return neg ? -v : v;
}

// Largest whole part Price accepts (price.cpp: int64 max / scale - 1).
constexpr std::int64_t kMaxWhole = std::numeric_limits<std::int64_t>::max() / Price::kScale - 1;

void round_trip(Price p, const char* what) {
  const std::string text = p.to_string();
  Price back;
  std::string why;
  FUZZ_CHECK(Price::try_parse(text, back, &why), "%s: to_string gave \"%s\", which does not parse: %s", what,
             text.c_str(), why.c_str());
  FUZZ_CHECK(back == p, "%s: \"%s\" parsed to %lld units, expected %lld", what, text.c_str(),
             static_cast<long long>(back.units()), static_cast<long long>(p.units()));
  FUZZ_CHECK(back.to_string() == text, "%s: to_string not canonical: \"%s\" vs \"%s\"", what, text.c_str(),
             back.to_string().c_str());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  Price p;
  std::string why;
  const bool ok = Price::try_parse(text, p, &why);
  bool threw = false;
  Price q;
  try {
    q = Price::parse(text);
  } catch (const backstop::ParseError& e) {
    threw = true;
    // what() is a C string: compare up to a NUL the input may hold.
    FUZZ_CHECK(std::string(e.what()) == std::string(why.c_str()), "parse and try_parse disagree on the reason");
  }
  FUZZ_CHECK(ok != threw, "parse %s but try_parse %s for \"%s\"", threw ? "threw" : "accepted",
             ok ? "accepted" : "refused", printable(text).c_str());

  const auto ref = reference(text);
  if (ok) {
    FUZZ_CHECK(q == p, "parse and try_parse disagree on the value");
    FUZZ_CHECK(ref.has_value(), "accepted \"%s\", which the grammar refuses", printable(text).c_str());
    FUZZ_CHECK(*ref == Wide(p.units()), "\"%s\" parsed to %lld units; reference %lld", printable(text).c_str(),
               static_cast<long long>(p.units()), static_cast<long long>(*ref));
    round_trip(p, "parsed");
  } else {
    FUZZ_CHECK(why.rfind("malformed price \"", 0) == 0, "refusal does not name the input: %s", why.c_str());
    // Refused well-formed text must be out of range.
    if (ref) {
      const Wide whole = (*ref < 0 ? -*ref : *ref) / Price::kScale;
      FUZZ_CHECK(whole > kMaxWhole, "refused well-formed \"%s\" (%s)", printable(text).c_str(), why.c_str());
    }
  }

  // Formatting: any unit count whose whole part is in the parseable range round-trips, and any
  // unit count at all is written within Price::kMaxChars, as to_string writes it.
  if (size >= 8) {
    std::int64_t units;
    std::memcpy(&units, data, 8);
    char chars[Price::kMaxChars + 1];
    chars[Price::kMaxChars] = '#';
    const char* end = Price::from_units(units).to_chars(chars);
    FUZZ_CHECK(chars[Price::kMaxChars] == '#' && end - chars <= static_cast<long>(Price::kMaxChars),
               "to_chars wrote %ld characters for %lld units", static_cast<long>(end - chars), static_cast<long long>(units));
    FUZZ_CHECK(std::string(static_cast<const char*>(chars), end) == Price::from_units(units).to_string(),
               "to_chars and to_string differ for %lld units", static_cast<long long>(units));
    const std::int64_t whole = units / Price::kScale;
    if (whole <= kMaxWhole && whole >= -kMaxWhole) round_trip(Price::from_units(units), "from_units");
  }
  return 0;
}
