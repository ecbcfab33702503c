#include "brokers/sim/price_path.hpp"

#include <fstream>
#include <sstream>

#include "core/error.hpp"

namespace backstop {

RandomWalkPath::RandomWalkPath(RandomWalkParams params, std::uint64_t seed)
    : p_(std::move(params)), rng_(seed), bid_(p_.tick.round_down(p_.start)) {}

std::optional<Quote> RandomWalkPath::next(Timestamp now) {
  const auto step = std::uniform_int_distribution<int>(-p_.max_step_ticks, p_.max_step_ticks)(rng_);
  bid_ = bid_ + p_.tick.value() * step;
  // Keep the walk positive: a price path through zero would be a bug in the test, not a market.
  if (bid_.units() <= p_.tick.value().units()) bid_ = p_.tick.value() * 10;
  std::uniform_int_distribution<std::int64_t> size(1, p_.max_size);
  Quote q;
  q.symbol = p_.symbol;
  q.bid = bid_;
  q.ask = bid_ + p_.tick.value() * p_.spread_ticks;
  q.last = (step >= 0) ? *q.ask : *q.bid;
  q.bid_size = size(rng_);
  q.ask_size = size(rng_);
  q.last_size = size(rng_);
  q.at = now;
  q.source = "sim";
  return q;
}

namespace {
std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> out;
  std::string cell;
  std::istringstream in(line);
  while (std::getline(in, cell, ',')) out.push_back(cell);
  if (!line.empty() && line.back() == ',') out.emplace_back();
  return out;
}
}  // namespace

CsvReplayPath::CsvReplayPath(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ParseError(path + ": cannot open quote file");
  std::string line;
  std::size_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    if (line_no == 1 && line.rfind("timestamp", 0) == 0) continue;  // header
    const auto cells = split_csv(line);
    const std::string where = path + ":" + std::to_string(line_no) + ": ";
    if (cells.size() < 5) throw ParseError(where + "expected at least 5 columns (timestamp,symbol,bid,ask,last)");
    try {
      Quote q;
      const auto& ts = cells[0];
      q.at = ts.find('T') != std::string::npos ? parse_timestamp(ts) : std::stoll(ts);
      q.symbol = cells[1];
      if (!cells[2].empty()) q.bid = Price::parse(cells[2]);
      if (!cells[3].empty()) q.ask = Price::parse(cells[3]);
      if (!cells[4].empty()) q.last = Price::parse(cells[4]);
      if (cells.size() > 5 && !cells[5].empty()) q.bid_size = std::stoll(cells[5]);
      if (cells.size() > 6 && !cells[6].empty()) q.ask_size = std::stoll(cells[6]);
      if (cells.size() > 7 && !cells[7].empty()) q.last_size = std::stoll(cells[7]);
      q.source = "replay";
      quotes_.push_back(std::move(q));
    } catch (const ParseError& e) {
      throw ParseError(where + e.what());
    } catch (const std::exception& e) {
      throw ParseError(where + "bad number: " + e.what());
    }
  }
}

std::optional<Quote> CsvReplayPath::next(Timestamp) {
  if (index_ >= quotes_.size()) return std::nullopt;
  return quotes_[index_++];
}

}  // namespace backstop
