#include "core/order.hpp"

#include <charconv>
#include <cstring>
#include <cstdio>

#include "core/instrument.hpp"

namespace backstop {

// [[gnu::hot]]: on every order's submit path (see routing/router.cpp).

const char* to_string(AssetClass a) { return a == AssetClass::stock ? "stock" : "future"; }
std::optional<AssetClass> asset_class_from_string(const std::string& s) {
  if (s == "stock") return AssetClass::stock;
  if (s == "future") return AssetClass::future;
  return std::nullopt;
}

Side opposite(Side s) { return s == Side::buy ? Side::sell : Side::buy; }
const char* to_string(Side s) { return s == Side::buy ? "buy" : "sell"; }
const char* to_string(OrderType t) {
  switch (t) {
    case OrderType::market: return "market";
    case OrderType::limit: return "limit";
    case OrderType::stop: return "stop";
    case OrderType::stop_limit: return "stop_limit";
  }
  return "?";
}
const char* to_string(TimeInForce t) {
  switch (t) {
    case TimeInForce::day: return "day";
    case TimeInForce::gtc: return "gtc";
    case TimeInForce::ioc: return "ioc";
    case TimeInForce::fok: return "fok";
  }
  return "?";
}
std::optional<Side> side_from_string(const std::string& s) {
  if (s == "buy") return Side::buy;
  if (s == "sell") return Side::sell;
  return std::nullopt;
}
std::optional<OrderType> order_type_from_string(const std::string& s) {
  for (auto t : {OrderType::market, OrderType::limit, OrderType::stop, OrderType::stop_limit})
    if (s == to_string(t)) return t;
  return std::nullopt;
}
std::optional<TimeInForce> tif_from_string(const std::string& s) {
  for (auto t : {TimeInForce::day, TimeInForce::gtc, TimeInForce::ioc, TimeInForce::fok})
    if (s == to_string(t)) return t;
  return std::nullopt;
}

OrderSpec market_order(std::string symbol, Side side, std::int64_t qty, TimeInForce tif) {
  OrderSpec o;
  o.symbol = std::move(symbol);
  o.side = side;
  o.quantity = qty;
  o.type = OrderType::market;
  o.tif = tif;
  return o;
}

OrderSpec limit_order(std::string symbol, Side side, std::int64_t qty, Price limit, TimeInForce tif) {
  OrderSpec o = market_order(std::move(symbol), side, qty, tif);
  o.type = OrderType::limit;
  o.limit_price = limit;
  return o;
}

OrderSpec stop_order(std::string symbol, Side side, std::int64_t qty, Price stop, TimeInForce tif) {
  OrderSpec o = market_order(std::move(symbol), side, qty, tif);
  o.type = OrderType::stop;
  o.stop_price = stop;
  return o;
}

std::string unprintable_ascii_problem(std::string_view field, std::string_view value) {
  for (std::size_t i = 0; i < value.size(); ++i) {
    const auto c = static_cast<unsigned char>(value[i]);
    if (c >= 0x20 && c <= 0x7e) continue;
    char detail[96];
    std::snprintf(detail, sizeof detail, " has a byte outside printable ASCII (0x%02X at offset %zu)",
                  static_cast<unsigned>(c), i);
    return std::string(field) + detail;
  }
  return {};
}

std::string order_name_for_messages(const OrderSpec& spec) {
  if (spec.client_order_id.empty()) return "(no id)";
  if (!unprintable_ascii_problem({}, spec.client_order_id).empty()) return "(id not printable)";
  return spec.client_order_id;
}

[[gnu::hot]] std::string validate(const OrderSpec& o) {
  // Runs on every order's send path: the message (and its allocation) only when there is a problem.
  auto problem = [&o](const std::string& what) { return "order " + order_name_for_messages(o) + ": " + what; };
  if (o.client_order_id.empty()) return problem("client_order_id is empty");
  if (o.client_order_id.size() > kMaxClientOrderIdLength) return problem("client_order_id is longer than 22 characters");
  // Sent to every broker (IBKR cOID, TradeStation OrderConfirmID) inside JSON bodies, and answers
  // are matched on it.
  if (auto why = unprintable_ascii_problem("client_order_id", o.client_order_id); !why.empty()) return problem(why);
  if (o.symbol.empty()) return problem("symbol is empty");
  if (o.quantity <= 0) return problem("quantity must be positive");
  const bool needs_limit = o.type == OrderType::limit || o.type == OrderType::stop_limit;
  const bool needs_stop = o.is_stop();
  if (needs_limit && !o.limit_price)
    return problem(std::string("limit_price is required for a ") + to_string(o.type) + " order");
  if (!needs_limit && o.limit_price)
    return problem(std::string("limit_price is not allowed on a ") + to_string(o.type) + " order");
  if (needs_stop && !o.stop_price)
    return problem(std::string("stop_price is required for a ") + to_string(o.type) + " order");
  if (!needs_stop && o.stop_price)
    return problem(std::string("stop_price is not allowed on a ") + to_string(o.type) + " order");
  if (o.limit_price && o.limit_price->units() <= 0) return problem("limit_price must be positive");
  if (o.stop_price && o.stop_price->units() <= 0) return problem("stop_price must be positive");
  return {};
}

std::string validate(const BracketSpec& b) {
  for (const OrderSpec* o : {&b.entry, &b.take_profit, &b.protective_stop})
    if (auto e = validate(*o); !e.empty()) return e;
  const std::string who = "bracket " + b.entry.client_order_id;
  if (b.take_profit.side != opposite(b.entry.side) || b.protective_stop.side != opposite(b.entry.side))
    return who + ": exits must be on the opposite side of the entry";
  if (b.take_profit.quantity != b.entry.quantity || b.protective_stop.quantity != b.entry.quantity)
    return who + ": exit quantities must equal the entry quantity";
  if (b.take_profit.type != OrderType::limit) return who + ": take_profit must be a limit order";
  if (!b.protective_stop.is_stop()) return who + ": protective_stop must be a stop or stop_limit";
  if (b.take_profit.symbol != b.entry.symbol || b.protective_stop.symbol != b.entry.symbol)
    return who + ": all legs must trade the same symbol";
  // Exits must sit on either side of the market: above/below depending on direction.
  const Price tp = *b.take_profit.limit_price;
  const Price sp = *b.protective_stop.stop_price;
  if (b.entry.side == Side::buy && !(tp > sp))
    return who + ": for a long bracket take_profit.limit_price must be above protective_stop.stop_price";
  if (b.entry.side == Side::sell && !(tp < sp))
    return who + ": for a short bracket take_profit.limit_price must be below protective_stop.stop_price";
  return {};
}

ClientOrderIdGenerator::ClientOrderIdGenerator(std::string prefix) : prefix_(std::move(prefix)) {
  if (prefix_.size() > 10) prefix_.resize(10);
}

std::string ClientOrderIdGenerator::time_prefix(Timestamp now) {
  // Base-36 of the milliseconds since the epoch: 8 characters until the year 2059.
  static constexpr char kDigits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
  std::uint64_t ms = static_cast<std::uint64_t>(now / 1'000'000);
  std::string out;
  do {
    out.insert(out.begin(), kDigits[ms % 36]);
    ms /= 36;
  } while (ms != 0);
  return "B" + out;
}

[[gnu::hot]] std::string ClientOrderIdGenerator::next() {
  // Written into a buffer and made a string once: the prefix (at most 10), its dash and at most
  // 20 digits fit 32 bytes.
  char text[32];
  std::memcpy(text, prefix_.data(), prefix_.size());
  text[prefix_.size()] = '-';
  const auto end = std::to_chars(text + prefix_.size() + 1, text + sizeof text, ++sequence_).ptr;
  return std::string(text, end);
}

}  // namespace backstop
