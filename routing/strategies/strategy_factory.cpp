#include "routing/strategies/strategy_factory.hpp"

#include <set>

#include "core/error.hpp"
#include "routing/strategies/bracket_breakout.hpp"
#include "routing/strategies/mean_reversion.hpp"

namespace backstop {

namespace {

class Params {
 public:
  Params(const StrategyConfig& c, std::set<std::string> known) : c_(c), known_(std::move(known)) {
    for (const auto& [key, value] : c.params.items())
      if (!known_.count(key)) throw ConfigError(path(key) + ": unknown parameter for " + c.kind);
  }
  int ticks(const std::string& key, int fallback) const { return static_cast<int>(positive(key, fallback)); }
  Duration millis(const std::string& key, Duration fallback) const {
    return std::chrono::milliseconds(positive(key, fallback.count() / 1'000'000));
  }
  std::int64_t positive(const std::string& key, std::int64_t fallback) const {
    if (!c_.params.contains(key)) return fallback;
    const auto& v = c_.params.at(key);
    if (!v.is_number_integer() || v.get<std::int64_t>() <= 0) throw ConfigError(path(key) + ": expected a positive integer");
    return v.get<std::int64_t>();
  }

 private:
  std::string path(const std::string& key) const { return "strategies[" + c_.name + "].params." + key; }
  const StrategyConfig& c_;
  std::set<std::string> known_;
};

}  // namespace

std::unique_ptr<Strategy> make_strategy(const StrategyConfig& c) {
  if (c.kind == "bracket_breakout") {
    Params p(c, {"lookback_ticks", "entry_offset_ticks", "target_ticks", "stop_ticks", "entry_timeout_ms", "cooldown_ms"});
    BracketBreakoutParams b;
    b.symbol = c.instrument;
    b.quantity = c.quantity;
    b.lookback = static_cast<std::size_t>(p.ticks("lookback_ticks", static_cast<int>(b.lookback)));
    b.entry_offset_ticks = p.ticks("entry_offset_ticks", b.entry_offset_ticks);
    b.take_profit_ticks = p.ticks("target_ticks", b.take_profit_ticks);
    b.stop_loss_ticks = p.ticks("stop_ticks", b.stop_loss_ticks);
    b.entry_timeout = p.millis("entry_timeout_ms", b.entry_timeout);
    b.cooldown = p.millis("cooldown_ms", b.cooldown);
    return std::make_unique<BracketBreakout>(b, c.name);
  }
  if (c.kind == "mean_reversion") {
    Params p(c, {"lookback_ticks", "entry_distance_ticks", "stop_ticks", "trail_ticks", "cooldown_ms"});
    MeanReversionParams m;
    m.symbol = c.instrument;
    m.quantity = c.quantity;
    m.lookback = static_cast<std::size_t>(p.ticks("lookback_ticks", static_cast<int>(m.lookback)));
    m.entry_distance_ticks = p.ticks("entry_distance_ticks", m.entry_distance_ticks);
    m.stop_loss_ticks = p.ticks("stop_ticks", m.stop_loss_ticks);
    m.trail_ticks = p.ticks("trail_ticks", m.trail_ticks);
    m.cooldown = p.millis("cooldown_ms", m.cooldown);
    return std::make_unique<MeanReversion>(m, c.name);
  }
  throw ConfigError("strategies[" + c.name + "].kind: unknown strategy kind \"" + c.kind + "\"");
}

}  // namespace backstop
