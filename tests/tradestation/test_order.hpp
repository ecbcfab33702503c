#pragma once
// The OrderSpec the TradeStation tests place: AAPL.US (the symbol map's name for the emulator's
// AAPL), prices as text, exact.
#include <cstdint>
#include <optional>
#include <string>

#include "core/order.hpp"

namespace backstop::tradestation::testing {

inline OrderSpec test_order(std::string coid, OrderType type, Side side, std::int64_t qty,
                            std::optional<std::string> limit = {}, std::optional<std::string> stop = {},
                            TimeInForce tif = TimeInForce::day, bool outside_rth = false) {
  OrderSpec o;
  o.client_order_id = std::move(coid);
  o.symbol = "AAPL.US";
  o.side = side;
  o.quantity = qty;
  o.type = type;
  if (limit) o.limit_price = Price::parse(*limit);
  if (stop) o.stop_price = Price::parse(*stop);
  o.tif = tif;
  o.outside_rth = outside_rth;
  return o;
}

}  // namespace backstop::tradestation::testing
