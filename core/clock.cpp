#include "core/clock.hpp"

#include <ctime>
#include <thread>

#include "core/error.hpp"

namespace backstop {

Timestamp SystemClock::now() const {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void SystemClock::sleep_until(Timestamp t) {
  const auto remaining = t - now();
  if (remaining > 0) std::this_thread::sleep_for(std::chrono::nanoseconds(remaining));
}

std::string format_timestamp(Timestamp t) {
  std::time_t secs = static_cast<std::time_t>(t / 1'000'000'000);
  long long nanos = t % 1'000'000'000;
  if (nanos < 0) {
    nanos += 1'000'000'000;
    --secs;
  }
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, nanos / 1000);
  return buf;
}

Timestamp parse_timestamp(const std::string& text) {
  int y, mo, d, h, mi, s;
  int consumed = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &s, &consumed) !=
          6 ||
      mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60)
    throw ParseError("malformed timestamp \"" + text + "\": expected YYYY-MM-DDTHH:MM:SS");
  std::size_t i = static_cast<std::size_t>(consumed);
  long long nanos = 0;
  if (i < text.size() && text[i] == '.') {
    ++i;
    int digits = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      if (digits < 9) {
        nanos = nanos * 10 + (text[i] - '0');
        ++digits;
      }
      ++i;
    }
    for (; digits < 9; ++digits) nanos *= 10;
  }
  long long offset_secs = 0;
  if (i < text.size()) {
    if (text[i] == 'Z' && i + 1 == text.size()) {
      // UTC
    } else if ((text[i] == '+' || text[i] == '-') && text.size() - i == 6 && text[i + 3] == ':') {
      const int oh = std::stoi(text.substr(i + 1, 2));
      const int om = std::stoi(text.substr(i + 4, 2));
      offset_secs = (oh * 3600 + om * 60) * (text[i] == '+' ? 1 : -1);
    } else {
      throw ParseError("malformed timestamp \"" + text + "\": bad zone suffix");
    }
  }
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  const long long secs = static_cast<long long>(timegm(&tm)) - offset_secs;
  return secs * 1'000'000'000LL + nanos;
}

}  // namespace backstop
