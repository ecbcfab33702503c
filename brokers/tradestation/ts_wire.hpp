#pragma once
// TradeStation Web API v3 wire format, adapter side: request bodies, spellings, status codes and
// the order-stream frame mapper. Written from ../shared/specs/tradestation-v3.openapi.json and
// ../shared/api-notes/TRADESTATION.md ("api-notes" below); it shares nothing with the emulator.
// No I/O here, so tests and the benchmark drive it directly.
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "brokers/broker.hpp"

namespace backstop::tradestation {

// Backstop symbol <-> TradeStation symbol. Unmapped symbols pass through unchanged.
class SymbolMap {
 public:
  SymbolMap() = default;
  explicit SymbolMap(std::map<std::string, std::string> to_broker);
  std::string to_broker(const std::string& backstop_symbol) const;
  // As to_broker, without a copy: a view of the mapped symbol or of `backstop_symbol` itself.
  std::string_view broker_view(const std::string& backstop_symbol) const;
  std::string to_backstop(const std::string& broker_symbol) const;

 private:
  std::map<std::string, std::string> to_broker_, to_backstop_;
};

// Request spelling of a time in force (api-notes section 3: DAY, DYP, GTC, GCP, IOC, FOK).
std::string duration_for(TimeInForce tif, bool outside_rth);

struct ParsedDuration {
  TimeInForce tif = TimeInForce::day;
  bool extended_hours = false;  // DYP/GCP/GDP and the response spellings DAY+/GTC+/GTD+
  int minutes = 0;              // 1, 3, 5 ("1 min"): reported as tif day (Backstop has no such tif)
};
// Accepts request and response spellings alike: GTC and "GTC+", 1 and "1 min" (api-notes
// section 3, "Order responses use different spellings"). nullopt for anything else.
std::optional<ParsedDuration> parse_duration(std::string_view text);

// OrderType spelling ("Market", "Limit", "StopMarket", "StopLimit") and back.
const char* order_type_wire(OrderType t);
std::optional<OrderType> order_type_from_wire(std::string_view text);
// TradeAction / Legs[].BuyOrSell, case-insensitive (api-notes section 3 and 4: "Buy", "SELLSHORT").
std::optional<Side> side_from_wire(std::string_view text);

// Every status code of the spec's Status enum, mapped onto the lifecycle. Unknown codes give
// nullopt: the caller logs and keeps the broker's text, never drops the order.
std::optional<OrderState> state_for_status(std::string_view code, std::int64_t filled, std::int64_t ordered);
bool is_known_status(std::string_view code);

// Request bodies are written as JSON text directly (no nlohmann::json built and dumped: that was
// a third of the adapter's own instructions per order, bench/PERFORMANCE.md). One writer makes an
// order's object; the bracket and group bodies are composed from it, so an order reads the same
// on the wire whichever way it is sent.
//
// AccountID, Symbol (as mapped) and OrderConfirmID must be printable ASCII (0x20-0x7E): broker
// symbols, accounts and client order ids are, and a byte outside that range is refused here,
// naming the field, rather than sent escaped into something else or as text the broker may read
// differently. `"` and `\` are escaped.
struct RequestBody {
  std::string text;   // the JSON body; empty when `error` is set
  std::string error;  // why the body cannot be written (names the order and the field)
  bool ok() const { return error.empty(); }
};

// The OrderRequest object for one order: AccountID, Symbol, Quantity, OrderType, TradeAction,
// TimeInForce{Duration}, LimitPrice/StopPrice, OrderConfirmID. Numbers are strings (api-notes
// section 2). Members are written sorted by name, as nlohmann::json (a std::map) wrote them
// before this was text: the bytes sent are unchanged.
RequestBody order_request(const OrderSpec& spec, const std::string& account, const SymbolMap& symbols);
// POST /orderexecution/orders for a bracket: the entry's object with
// "OSOs":[{"Type":"BRK","Orders":[take profit, stop]}] ("Long Entry with Exit Bracket").
RequestBody bracket_request(const BracketSpec& bracket, const std::string& account, const SymbolMap& symbols);
// POST /orderexecution/ordergroups: {"Type": type, "Orders": [...]} (type OCO, BRK or NORMAL).
RequestBody group_request(std::string_view type, const std::vector<OrderSpec>& orders, const std::string& account,
                          const SymbolMap& symbols);
// The PUT body for a replace: only the fields the order type uses (Quantity, LimitPrice,
// StopPrice: numbers only, nothing to refuse).
std::string replace_request(const OrderSpec& spec);
// Decodes a request body as TradeStation reads it (preview() and the stop guard's lint). Off the
// hot path: parse the text first (nlohmann::json::parse(order_request(...).text)).
WireOrderView wire_view(const nlohmann::json& request);

// The 200 answer to an order placement (POST orders or ordergroups), read without building a
// document: {"Orders":[{"OrderID","Message","Error"?}],"Errors":[{"OrderID","Error","Message"}]}
// (emulators/tradestation/SPEC_DEFECTS.md #1: the spec says array). Reads exactly what the
// document reader it replaces read:
//  - `parsed` false: not JSON (nlohmann's grammar, trailing text refused); nothing else is set;
//  - `errors`: each Errors entry's Message (else Error, else ""), then each Orders entry with a
//    non-empty Error as its Message (else that Error), joined by "; " (a leading empty text adds
//    no separator);
//  - `order_ids`: every other Orders entry's OrderID, in order ("" when it is not a string, or
//    the entry is not an object);
//  - only string members count (a number or object where a string belongs reads as ""), only
//    Orders/Errors that are arrays of a top-level object count, and a repeated key counts with
//    its last value, as in a parsed document.
// Never throws.
struct PlaceAnswer {
  bool parsed = false;
  std::vector<std::string> order_ids;
  std::string errors;
};
PlaceAnswer read_place_answer(std::string_view body);

// A JSON value that may be a string ("232.86") or a number: numbers are strings on this API, but
// a read must not fail on a number.
std::optional<Price> json_price(const nlohmann::json& obj, const char* key);
std::int64_t json_int(const nlohmann::json& obj, const char* key, std::int64_t fallback = 0);
std::string json_string(const nlohmann::json& obj, const char* key);

// A 429's Retry-After in seconds, honoured from 1 up to the adapter's longest back-off (60 s): a
// garbled or hostile value must not hold every order of a quota group for hours. nullopt for
// anything that is not a whole number (an HTTP date, text): the group's own back-off applies.
std::optional<int> retry_after_seconds(std::string_view header);

// One order as read from GET /brokerage/accounts/{ids}/orders or an order-stream frame.
struct WireOrder {
  BrokerOrder order;                // symbol mapped back, state mapped (unknown code: kept)
  bool status_known = true;
  std::int64_t exec_quantity = 0;   // cumulative over legs
  std::optional<Price> exec_price;  // average: FilledPrice, else the leg's ExecutionPrice
  std::string closed_at;            // ClosedDateTime ("" while open)
  std::string opened_at;            // OpenedDateTime (to the second), as sent: read only when an
                                    // order of unknown outcome is looked for, not per stream frame
  std::string reject_reason;
  std::string status_description;
};
// `previous_state` is kept for an unknown status code. Throws nlohmann/ParseError on garbage.
WireOrder parse_order(const nlohmann::json& o, const SymbolMap& symbols,
                      std::optional<OrderState> previous_state = std::nullopt);

// Turns order objects (stream frames or reads) into OrderEvents. ExecQuantity is cumulative, so
// fills are deltas over the last known cumulative quantity, with execution id
// "<OrderID>-<cumulative>" (stable whether the fill is seen on the stream, in the reconnect
// snapshot or through list_fills). Repeated frames (a status already reported, terminal frames
// re-sent with ClosedDateTime, duplicates differing in leg order) produce nothing.
class OrderFrameMapper {
 public:
  struct Known {
    std::string status;
    OrderState state = OrderState::submitted;
    std::int64_t cumulative = 0;
    std::int64_t notional_units_x_qty = 0;  // sum of fill qty * price units, for delta prices
    std::vector<Fill> fills;
    std::string client_order_id;
  };

  OrderFrameMapper(std::string broker_name, SymbolMap symbols)
      : broker_(std::move(broker_name)), symbols_(std::move(symbols)) {}

  // Appends the events for one order object to `out`. `now` stamps events and fills.
  void on_order(const nlohmann::json& o, Timestamp now, std::vector<OrderEvent>& out);
  // Fills implied by a read of the order (list_fills): records them so the stream will not
  // report them again, and returns every fill known for the order.
  std::vector<Fill> reconcile_fills(const WireOrder& w, Timestamp now);

  void set_client_order_id(const std::string& order_id, const std::string& client_order_id);
  const Known* find(const std::string& order_id) const;
  std::size_t unknown_status_frames() const { return unknown_status_frames_; }
  std::function<void(const std::string&)> on_unknown_status;  // logging hook

 private:
  std::optional<Fill> advance(Known& k, const WireOrder& w, Timestamp now);

  std::string broker_;
  SymbolMap symbols_;
  std::map<std::string, Known> orders_;
  std::size_t unknown_status_frames_ = 0;
};

}  // namespace backstop::tradestation
