#pragma once
// What is traded. Each broker names the same instrument differently (TradeStation "ESZ26",
// IBKR conid 495512557 found by lookup); the mapping lives with the instrument so that routing
// translates once, in one place.
#include <map>
#include <optional>
#include <string>

#include "core/price.hpp"

namespace backstop {

enum class AssetClass { stock, future };

struct Instrument {
  std::string symbol;  // Backstop's own name, used by strategies ("AAPL", "ES-2026-12")
  AssetClass asset_class = AssetClass::stock;
  TickSize tick_size{Price::parse("0.01")};
  std::int64_t multiplier = 1;  // contract size; notional = qty * price * multiplier
  std::string exchange;         // "SMART", "CME", ...
  std::string currency = "USD";
  std::string expiry;           // futures only: "YYYYMM" or "YYYYMMDD"
  // broker name -> that broker's symbol (or a lookup key the adapter resolves, such as
  // "ES:CME:202612" for an IBKR conid search).
  std::map<std::string, std::string> broker_symbols;

  bool is_future() const { return asset_class == AssetClass::future; }
  // US futures at IBKR need manualIndicator; knowing the market here keeps the lint generic.
  bool is_us_future() const { return is_future() && currency == "USD"; }
  // The broker's symbol, or the Backstop symbol when no mapping is configured.
  const std::string& symbol_at(const std::string& broker) const {
    auto it = broker_symbols.find(broker);
    return it == broker_symbols.end() ? symbol : it->second;
  }
};

const char* to_string(AssetClass a);
std::optional<AssetClass> asset_class_from_string(const std::string& s);

}  // namespace backstop
