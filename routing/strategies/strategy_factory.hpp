#pragma once
// Builds a strategy from its config entry. `params` is free-form in the config file; each
// strategy's parameters are checked here, with the config path in every error.
#include <memory>

#include "config/config.hpp"
#include "routing/strategy.hpp"

namespace backstop {

// Throws ConfigError ("strategies[breakout].params.lookback_ticks: expected a positive integer").
std::unique_ptr<Strategy> make_strategy(const StrategyConfig& config);

}  // namespace backstop
