#include "apps/cli.hpp"

namespace backstop::cli {

bool Args::flag(const std::string& name) {
  for (auto it = args_.begin(); it != args_.end(); ++it) {
    if (*it == name) {
      args_.erase(it);
      return true;
    }
  }
  return false;
}

std::optional<std::string> Args::value(const std::string& name) {
  for (auto it = args_.begin(); it != args_.end(); ++it) {
    if (*it == name) {
      if (it + 1 == args_.end()) throw UsageError(name + " needs a value");
      std::string v = *(it + 1);
      args_.erase(it, it + 2);
      return v;
    }
    if (it->rfind(name + "=", 0) == 0) {
      std::string v = it->substr(name.size() + 1);
      args_.erase(it);
      return v;
    }
  }
  return std::nullopt;
}

void Args::expect_no_more() const {
  if (!args_.empty()) throw UsageError("unexpected argument \"" + args_.front() + "\" (see --help)");
}

Duration parse_duration(const std::string& text) {
  std::size_t pos = 0;
  double value = 0;
  try {
    value = std::stod(text, &pos);
  } catch (const std::exception&) {
    throw UsageError("malformed duration \"" + text + "\" (examples: 20s, 500ms, 2m)");
  }
  const std::string unit = text.substr(pos);
  double scale = 0;
  if (unit == "ms") scale = 1e6;
  else if (unit == "s" || unit.empty()) scale = 1e9;
  else if (unit == "m") scale = 60e9;
  else if (unit == "h") scale = 3600e9;
  else throw UsageError("malformed duration \"" + text + "\": unknown unit \"" + unit + "\" (use ms, s, m or h)");
  if (value < 0) throw UsageError("duration \"" + text + "\" is negative");
  return Duration(static_cast<std::int64_t>(value * scale));
}

}  // namespace backstop::cli
