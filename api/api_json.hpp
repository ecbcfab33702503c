#pragma once
// JSON of the local API: request bodies read with path-precise errors, and the records the API
// returns. Internal to api/ (and its tests). Prices travel as decimal strings, never as JSON
// numbers: a double cannot carry every price exactly.
#include <nlohmann/json.hpp>

#include <map>
#include <stdexcept>
#include <string>

#include "config/config.hpp"
#include "core/lifecycle.hpp"
#include "routing/broker_health.hpp"
#include "routing/reconciler.hpp"
#include "routing/stop_guard.hpp"

namespace backstop::api_json {

using nlohmann::json;

// A bad request: what() is "<path>: <problem>", e.g. "order.quantity: must be a positive integer".
class BadRequest : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The body as a JSON object (BadRequest "body: ..." when it is not one).
json parse_body(const std::string& body);

// POST /orders: {"strategy": "...", "order": {...}}. Checks the strategy has a route and the
// symbol is a configured instrument with prices on its tick.
struct OrderRequest {
  std::string strategy;
  OrderSpec order;
};
OrderRequest read_order_request(const json& body, const Config& config);

// POST /brackets: {"strategy": "...", "entry": {...}, "take_profit": {...}, "protective_stop": {...}}.
struct BracketRequest {
  std::string strategy;
  BracketSpec bracket;
};
BracketRequest read_bracket_request(const json& body, const Config& config);

// POST /orders/{id}/replace: {"order": {"quantity"?, "limit_price"?, "stop_price"?, "tif"?}}
// applied onto the working order's spec.
OrderSpec read_replace_request(const json& body, const OrderSpec& current, const Config& config);

// Responses.
json price_json(const std::optional<Price>& p);
json order_json(const OrderRecord& o, const StopRecord* stop);
json stop_json(const StopRecord& s);
json ghost_json(const GhostStop& g);
json divergence_json(const Divergence& d);
json health_change_json(const HealthChange& c);
json fill_json(const Fill& f);
json quote_json(const Quote& q);
json position_json(const Position& p);
json command_result_json(const CommandResult& r);

}  // namespace backstop::api_json
