#pragma once
// TradeStation v3 spellings and JSON shapes, both directions, for the emulator only: request
// parsing (OrderRequest), and the Order, Position, Quote and error objects it answers with.
// Every number is a JSON string ([SPEC]; api-notes section 2).
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "brokers/sim/venue.hpp"
#include "core/market_data.hpp"
#include "core/order.hpp"

namespace backstop::tradestation_emulator {

using nlohmann::json;

// A request's string field, "" when absent or of another type (nlohmann's value() would throw, and
// the handler's answer would be a 500 instead of the 400 a malformed request earns).
std::string string_field(const json& j, const char* key);

// One order as TradeStation describes it, beyond what the venue knows.
struct TsOrderMeta {
  std::string account;
  std::string symbol;
  std::string trade_action;  // canonical upper case: BUY, SELL, SELLSHORT, BUYTOCOVER
  std::string order_type;    // Market, Limit, StopMarket, StopLimit
  std::string
      duration;  // request code, upper case: DAY, DYP, GTC, GCP, GTD, GDP, IOC, FOK, 1, 3, 5
  std::string route = "Intelligent";
  std::string confirm_id;  // OrderConfirmID as sent; empty when none
  bool future = false;
  std::string group_name;  // "BRK 2700000001" for bracket and OCO members
  std::string oca;         // group number, rendered as AdvancedOptions "OCA=n;"
  std::vector<std::pair<std::string, std::string>> relations;  // (OrderID, BRK|OSP|OSO|OCO)
  std::string
      kill_status;  // what a venue cancel means for this order: OUT (IOC/FOK), EXP (1/3/5 min)
};

struct TsOrder {
  TsOrderMeta meta;
  VenueOrder last;              // latest venue snapshot (fabricated for emulator-only orders)
  std::string status_override;  // UCN while a cancel is pending; REJ for a silent reject
  std::string reject_reason;
  Timestamp closed_at = 0;
  bool cancel_pending = false;
  // Fault ts_alter_stop_readback: the StopPrice this order reads back with (one tick away from
  // what the venue holds); unset = the truth.
  std::optional<Price> readback_stop_price;
};

struct ParsedOrder {
  OrderSpec spec;
  TsOrderMeta meta;
};

// Parses one OrderRequest; on failure returns nullopt and sets `error` to the reason.
std::optional<ParsedOrder> parse_order_request(const json& j, std::string& error);

// Status of an order as TradeStation reports it, from the venue state and emulator overrides.
std::string status_code(const TsOrder& o);
std::string status_description(const std::string& code);
bool is_terminal_code(const std::string& code);

// The Order object of GET /orders and of the order stream (OrderBase + Order in [SPEC]).
json render_order(const TsOrder& o, const std::string& status, bool with_closed_time);
// "Sent order: Sell 1 MSFT @ 232.86 Stop Market" (PlaceOrder example in [SPEC]).
std::string sent_order_message(const TsOrderMeta& m, const OrderSpec& spec);

struct DayStats {
  Price open, high, low, previous_close;
  std::int64_t volume = 0;
  bool seen = false;
};
json render_quote(const Quote& q, const DayStats& day);

struct PositionView {
  std::string account;
  std::string position_id;
  VenuePosition position;
  std::optional<Quote> quote;
  bool future = false;
  std::int64_t multiplier = 1;
  Timestamp opened_at = 0;
};
json render_position(const PositionView& p);

// {"Error":"Unauthorized","Message":"..."}: ErrorResponse in [SPEC].
json error_body(const std::string& error, const std::string& message);
// RFC 3339 to the second, as TradeStation prints it ("2021-03-02T18:01:23Z").
std::string ts_time(Timestamp t);
// Prices in messages show at least two decimals ("230.00").
std::string display_price(Price p);

}  // namespace backstop::tradestation_emulator
