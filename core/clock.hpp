#pragma once
// Time comes from a Clock so that tests drive 30-second and 5-minute timers instantly.
#include <chrono>
#include <cstdint>
#include <string>

namespace backstop {

// Nanoseconds since the Unix epoch. One integer type for every timestamp in the journal.
using Timestamp = std::int64_t;
using Duration = std::chrono::nanoseconds;

constexpr Timestamp to_ns(Duration d) { return d.count(); }

// Microseconds from 2020-01-01 to `t` (0 before it): where a counter of ids starts when nothing of
// an earlier run of the same program is kept, so that a venue or an emulated broker started
// afresh never hands out an id its previous run did (a journal that outlives it would match the
// new order to the old one). 15 digits until 2051: "E" and the id still fit a string's own buffer.
constexpr std::uint64_t microseconds_since_2020(Timestamp t) {
  constexpr Timestamp k2020 = 1'577'836'800'000'000'000;  // ns since the epoch
  return t > k2020 ? static_cast<std::uint64_t>(t - k2020) / 1'000 : 0;
}

class Clock {
 public:
  virtual ~Clock() = default;
  virtual Timestamp now() const = 0;
  // Block until `t` (a real clock sleeps; a manual clock jumps there at once).
  virtual void sleep_until(Timestamp t) = 0;
  // False for a manual clock: an idle event loop jumps it to the next timer instead of waiting.
  virtual bool advances_by_itself() const { return true; }
};

class SystemClock final : public Clock {
 public:
  Timestamp now() const override;
  void sleep_until(Timestamp t) override;
};

// Deterministic time for tests and simulated sessions.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(Timestamp start = 1'700'000'000'000'000'000) : now_(start) {}
  Timestamp now() const override { return now_; }
  void sleep_until(Timestamp t) override {
    if (t > now_) now_ = t;
  }
  bool advances_by_itself() const override { return false; }
  void advance(Duration d) { now_ += d.count(); }
  void set(Timestamp t) { now_ = t; }

 private:
  Timestamp now_;
};

// ISO-8601 UTC with microseconds ("2026-11-24T02:10:58.123456Z").
std::string format_timestamp(Timestamp t);
// Accepts the forms brokers send: "2026-11-24T02:10:58Z", with fractional seconds, or with
// "+00:00"/"-05:00" offsets. Throws ParseError naming the text.
Timestamp parse_timestamp(const std::string& text);

}  // namespace backstop
