#pragma once
// Where simulated market prices come from: a seeded random walk, or a replay of recorded quotes.
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "core/market_data.hpp"
#include "core/price.hpp"

namespace backstop {

class PricePath {
 public:
  virtual ~PricePath() = default;
  // The next quote at or after `now`; nullopt when a replay has run out.
  virtual std::optional<Quote> next(Timestamp now) = 0;
};

struct RandomWalkParams {
  std::string symbol;
  Price start;
  TickSize tick;
  int spread_ticks = 1;
  int max_step_ticks = 2;  // each quote moves the mid by a uniform number of ticks in [-max, max]
  std::int64_t max_size = 500;  // displayed size per side is uniform in [1, max_size]
};

class RandomWalkPath final : public PricePath {
 public:
  RandomWalkPath(RandomWalkParams params, std::uint64_t seed);
  std::optional<Quote> next(Timestamp now) override;

 private:
  RandomWalkParams p_;
  std::mt19937_64 rng_;
  Price bid_;
};

// Replays a CSV of quotes: header `timestamp,symbol,bid,ask,last[,bid_size,ask_size,last_size]`,
// timestamps in ISO-8601 or integer nanoseconds. Malformed rows throw ParseError naming the
// file and line.
class CsvReplayPath final : public PricePath {
 public:
  explicit CsvReplayPath(const std::string& path);
  std::optional<Quote> next(Timestamp now) override;
  std::size_t size() const { return quotes_.size(); }

 private:
  std::vector<Quote> quotes_;
  std::size_t index_ = 0;
};

}  // namespace backstop
