#include "emulators/tradestation/wire_format.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <map>

namespace backstop::tradestation_emulator {

namespace {

std::string upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// Numbers arrive as JSON strings ([SPEC]), though the official examples also send plain
// numbers for leg quantities ("Quantity": 100 in ConfirmOrder); accept both.
std::optional<std::string> number_text(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number_integer()) return std::to_string(it->get<std::int64_t>());
  if (it->is_number()) return it->dump();
  return std::string("<not a number>");
}

bool parse_price(const json& j, const char* key, std::optional<Price>& out, std::string& error) {
  auto text = number_text(j, key);
  if (!text) return true;
  Price p;
  std::string why;
  if (!Price::try_parse(*text, p, &why)) {
    error = std::string(key) + " \"" + *text + "\" is not a valid price";
    return false;
  }
  out = p;
  return true;
}

std::string decimal_text(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.4f", v);
  std::string s = buf;
  while (!s.empty() && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s == "-0" ? "0" : s;
}

}  // namespace

std::string string_field(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::optional<ParsedOrder> parse_order_request(const json& j, std::string& error) {
  if (!j.is_object()) {
    error = "order request must be a JSON object";
    return std::nullopt;
  }
  ParsedOrder out;
  TsOrderMeta& m = out.meta;
  OrderSpec& s = out.spec;
  for (const char* key : {"AccountID", "Symbol", "OrderType", "TradeAction"}) {
    if (string_field(j, key).empty()) {
      error = std::string(key) + " is required";
      return std::nullopt;
    }
  }
  m.account = string_field(j, "AccountID");
  m.symbol = s.symbol = string_field(j, "Symbol");
  if (j.contains("Legs")) {
    error = "multi-leg (option) orders are not supported by the emulator";
    return std::nullopt;
  }

  // TradeAction matching is case-insensitive: the official examples send "Buy", "SellShort"
  // (api-notes section 3).
  const std::string action = upper(string_field(j, "TradeAction"));
  static const std::map<std::string, Side> kActions{{"BUY", Side::buy},
                                                    {"BUYTOCOVER", Side::buy},
                                                    {"SELL", Side::sell},
                                                    {"SELLSHORT", Side::sell}};
  auto act = kActions.find(action);
  if (act == kActions.end()) {
    error = "TradeAction \"" + string_field(j, "TradeAction") + "\" is not supported";
    return std::nullopt;
  }
  m.trade_action = action;
  s.side = act->second;

  const std::string type = upper(string_field(j, "OrderType"));
  static const std::map<std::string, std::pair<std::string, OrderType>> kTypes{
      {"MARKET", {"Market", OrderType::market}},
      {"LIMIT", {"Limit", OrderType::limit}},
      {"STOPMARKET", {"StopMarket", OrderType::stop}},
      {"STOPLIMIT", {"StopLimit", OrderType::stop_limit}}};
  auto ty = kTypes.find(type);
  if (ty == kTypes.end()) {
    // There is no trailing order type: a trailing stop is StopMarket + AdvancedOptions (api-notes
    // 3).
    error = "OrderType \"" + string_field(j, "OrderType") + "\" is invalid";
    return std::nullopt;
  }
  m.order_type = ty->second.first;
  s.type = ty->second.second;

  auto qty = number_text(j, "Quantity");
  if (!qty) {
    error = "Quantity is required";
    return std::nullopt;
  }
  try {
    std::size_t used = 0;
    s.quantity = std::stoll(*qty, &used);
    if (used != qty->size()) throw std::invalid_argument(*qty);
  } catch (const std::exception&) {
    error = "Quantity \"" + *qty + "\" is not a whole number";
    return std::nullopt;
  }
  if (s.quantity <= 0) {
    error = "Quantity must be positive";
    return std::nullopt;
  }

  auto tif = j.find("TimeInForce");
  if (tif == j.end() || !tif->is_object() || string_field(*tif, "Duration").empty()) {
    error = "TimeInForce.Duration is required";
    return std::nullopt;
  }
  m.duration = upper(string_field(*tif, "Duration"));
  static const std::map<std::string, std::pair<TimeInForce, bool>> kDurations{
      {"DAY", {TimeInForce::day, false}}, {"DYP", {TimeInForce::day, true}},
      {"GTC", {TimeInForce::gtc, false}}, {"GCP", {TimeInForce::gtc, true}},
      {"GTD", {TimeInForce::gtc, false}}, {"GDP", {TimeInForce::gtc, true}},
      {"IOC", {TimeInForce::ioc, false}}, {"FOK", {TimeInForce::fok, false}},
      {"1", {TimeInForce::day, false}},   {"3", {TimeInForce::day, false}},
      {"5", {TimeInForce::day, false}}};
  auto du = kDurations.find(m.duration);
  if (du == kDurations.end()) {
    error = "Duration \"" + string_field(*tif, "Duration") + "\" is not supported by the emulator";
    return std::nullopt;
  }
  s.tif = du->second.first;
  s.outside_rth = du->second.second;
  if ((m.duration == "GTD" || m.duration == "GDP") && !tif->contains("Expiration")) {
    error = "TimeInForce.Expiration is required for " + m.duration;
    return std::nullopt;
  }

  const bool needs_limit = s.type == OrderType::limit || s.type == OrderType::stop_limit;
  const bool needs_stop = s.type == OrderType::stop || s.type == OrderType::stop_limit;
  std::optional<Price> limit, stop;
  if (!parse_price(j, "LimitPrice", limit, error) || !parse_price(j, "StopPrice", stop, error))
    return std::nullopt;
  if (needs_limit && !limit) {
    error = "LimitPrice is required for " + m.order_type + " orders";
    return std::nullopt;
  }
  if (needs_stop && !stop) {
    error = "StopPrice is required for " + m.order_type + " orders";
    return std::nullopt;
  }
  // Prices that the order type does not use are ignored, as the API ignores StopPrice when a
  // TrailingStop is given (api-notes section 3).
  if (needs_limit) s.limit_price = limit;
  if (needs_stop) s.stop_price = stop;

  if (auto adv = j.find("AdvancedOptions"); adv != j.end() && adv->is_object()) {
    for (const char* key : {"TrailingStop", "MarketActivationRules", "TimeActivationRules"})
      if (adv->contains(key)) {
        error = std::string("AdvancedOptions.") + key + " is not supported by the emulator";
        return std::nullopt;
      }
  }
  if (auto route = string_field(j, "Route"); !route.empty()) m.route = route;

  if (j.contains("OrderConfirmID")) {
    const auto& id = j["OrderConfirmID"];
    // 1 to 22 characters ([SPEC] OrderRequest.OrderConfirmID).
    if (!id.is_string() || id.get<std::string>().empty() || id.get<std::string>().size() > 22) {
      error = "OrderConfirmID must be a string of 1 to 22 characters";
      return std::nullopt;
    }
    m.confirm_id = id.get<std::string>();
  }
  s.client_order_id = m.confirm_id;
  return out;
}

std::string status_code(const TsOrder& o) {
  if (!o.status_override.empty()) return o.status_override;
  const bool some_filled = o.last.filled_quantity > 0;
  switch (o.last.status) {
    // Held bracket exits: DON is "held on the TradeStation Order Execution Network … placed
    // automatically at the correct time" ([LEAN] descriptions, api-notes section 4).
    case VenueStatus::held:
      return "DON";
    case VenueStatus::working:
      return some_filled ? "FPR" : "ACK";
    // STP: "Stop Market order has hit the stop price but the order is not yet filled".
    case VenueStatus::triggered:
      return some_filled ? "FPR" : "STP";
    case VenueStatus::filled:
      return "FLL";
    case VenueStatus::cancelled:
      // FLP: partially filled, then done (UROut).
      if (some_filled) return "FLP";
      return o.meta.kill_status.empty() ? "CAN" : o.meta.kill_status;
    case VenueStatus::rejected:
      return "REJ";
  }
  return "OTHER";
}

std::string status_description(const std::string& code) {
  // TradeStation's own descriptions (Status enum, api-notes section 4).
  static const std::map<std::string, std::string> kText{
      {"ACK", "Received"},    {"OPN", "Sent"},
      {"DON", "Queued"},      {"FPR", "Partial Fill (Alive)"},
      {"FLL", "Filled"},      {"FLP", "Partial Fill (UROut)"},
      {"OUT", "UROut"},       {"REJ", "Rejected"},
      {"CAN", "Canceled"},    {"EXP", "Expired"},
      {"UCN", "Cancel Sent"}, {"STP", "Stop Hit"},
      {"BRO", "Broken"},      {"OSO", "OSO Order"},
      {"UCH", "Replaced"}};
  auto it = kText.find(code);
  return it == kText.end() ? code : it->second;
}

bool is_terminal_code(const std::string& c) {
  return c == "FLL" || c == "FLP" || c == "OUT" || c == "REJ" || c == "CAN" || c == "EXP" ||
         c == "BRO" || c == "UCH" || c == "TSC" || c == "SCN" || c == "RJR";
}

namespace {

// Order responses spell durations differently from requests: DAY+, GTC+, GTD+, "1 min"
// ([LEAN] TradeStationDuration vs PlaceOrderDuration; api-notes section 3).
std::string response_duration(const std::string& request_code) {
  static const std::map<std::string, std::string> kSpelling{{"DYP", "DAY+"}, {"GCP", "GTC+"},
                                                            {"GDP", "GTD+"}, {"1", "1 min"},
                                                            {"3", "3 min"},  {"5", "5 min"}};
  auto it = kSpelling.find(request_code);
  return it == kSpelling.end() ? request_code : it->second;
}

std::string buy_or_sell(const std::string& action) {
  if (action == "BUY") return "Buy";
  if (action == "SELL") return "Sell";
  if (action == "SELLSHORT") return "SellShort";
  return "BuyToCover";
}

}  // namespace

json render_order(const TsOrder& o, const std::string& status, bool with_closed_time) {
  const VenueOrder& v = o.last;
  const TsOrderMeta& m = o.meta;
  json j;
  j["AccountID"] = m.account;
  j["OrderID"] = v.id;
  j["Status"] = status;
  j["StatusDescription"] = status_description(status);
  j["OrderType"] = m.order_type;
  j["Duration"] = response_duration(m.duration);
  j["OpenedDateTime"] = ts_time(v.created_at);
  j["CommissionFee"] = "0";
  j["Currency"] = "USD";
  j["Routing"] = m.route;
  j["UnbundledRouteFee"] = "0";
  if (m.duration == "GTC" || m.duration == "GCP") {
    // GTC orders have a maximum lifespan of 90 days ([SPEC] Duration).
    const Timestamp day = 86'400'000'000'000;
    j["GoodTillDate"] = ts_time((v.created_at / day + 90) * day);
  }
  if (v.limit_price) j["LimitPrice"] = v.limit_price->to_string();
  const std::optional<Price> stop = o.readback_stop_price ? o.readback_stop_price : v.stop_price;
  if (stop) j["StopPrice"] = stop->to_string();
  if (auto p = v.limit_price ? v.limit_price : stop)
    j["PriceUsedForBuyingPower"] = p->to_string();
  if (v.filled_quantity > 0) j["FilledPrice"] = v.average_fill_price.to_string();
  // Order objects carry AdvancedOptions as a string: "STPTRG=STT;OCA=2706452145;" ([SPEC]
  // examples).
  std::string advanced;
  if (v.stop_price) advanced += "STPTRG=STT;";
  if (!m.oca.empty()) advanced += "OCA=" + m.oca + ";";
  if (!advanced.empty()) j["AdvancedOptions"] = advanced;
  if (!m.group_name.empty()) j["GroupName"] = m.group_name;
  if (!m.relations.empty()) {
    json rel = json::array();
    for (const auto& [id, kind] : m.relations)
      rel.push_back({{"OrderID", id}, {"Relationship", kind}});
    j["ConditionalOrders"] = rel;
  }
  if (status == "REJ") j["RejectReason"] = o.reject_reason.empty() ? v.reason : o.reject_reason;
  if (with_closed_time) {
    if (o.closed_at != 0 && is_terminal_code(status)) j["ClosedDateTime"] = ts_time(o.closed_at);
    // STP frames can carry ClosedDateTime though the order is still open (api-notes section 5).
    if (status == "STP" && v.triggered_at != 0) j["ClosedDateTime"] = ts_time(v.triggered_at);
  }
  json leg;
  leg["AssetType"] = m.future ? "FUTURE" : "STOCK";
  leg["BuyOrSell"] = buy_or_sell(m.trade_action);
  leg["OpenOrClose"] =
      (m.trade_action == "BUY" || m.trade_action == "SELLSHORT") ? "Open" : "Close";
  leg["QuantityOrdered"] = std::to_string(v.quantity);
  leg["ExecQuantity"] = std::to_string(v.filled_quantity);  // cumulative (api-notes section 5)
  leg["QuantityRemaining"] =
      std::to_string(std::max<std::int64_t>(0, v.quantity - v.filled_quantity));
  if (v.filled_quantity > 0) leg["ExecutionPrice"] = v.average_fill_price.to_string();
  leg["Symbol"] = m.symbol;
  j["Legs"] = json::array({leg});
  return j;
}

std::string display_price(Price p) {
  std::string s = p.to_string();
  auto dot = s.find('.');
  if (dot == std::string::npos) return s + ".00";
  while (s.size() - dot - 1 < 2) s += '0';
  return s;
}

std::string sent_order_message(const TsOrderMeta& m, const OrderSpec& spec) {
  static const std::map<std::string, std::string> kAction{{"BUY", "Buy"},
                                                          {"SELL", "Sell"},
                                                          {"SELLSHORT", "Sell Short"},
                                                          {"BUYTOCOVER", "Buy To Cover"}};
  static const std::map<std::string, std::string> kType{{"Market", "Market"},
                                                        {"Limit", "Limit"},
                                                        {"StopMarket", "Stop Market"},
                                                        {"StopLimit", "Stop Limit"}};
  std::string msg = "Sent order: " + kAction.at(m.trade_action) + " " +
                    std::to_string(spec.quantity) + " " + m.symbol + " @ ";
  if (spec.stop_price)
    msg += display_price(*spec.stop_price) + " ";
  else if (spec.limit_price)
    msg += display_price(*spec.limit_price) + " ";
  return msg + kType.at(m.order_type);
}

json render_quote(const Quote& q, const DayStats& day) {
  json j;
  j["Symbol"] = q.symbol;
  if (q.bid) j["Bid"] = q.bid->to_string();
  if (q.ask) j["Ask"] = q.ask->to_string();
  if (q.last) j["Last"] = q.last->to_string();
  j["BidSize"] = std::to_string(q.bid_size);
  j["AskSize"] = std::to_string(q.ask_size);
  j["LastSize"] = std::to_string(q.last_size);
  j["TradeTime"] = ts_time(q.at);
  j["Open"] = day.open.to_string();
  j["High"] = day.high.to_string();
  j["Low"] = day.low.to_string();
  j["PreviousClose"] = day.previous_close.to_string();
  j["Volume"] = std::to_string(day.volume);
  if (q.last) {
    j["Close"] = q.last->to_string();
    const Price change = *q.last - day.previous_close;
    j["NetChange"] = change.to_string();
    if (!day.previous_close.is_zero())
      j["NetChangePct"] = decimal_text(change.to_double() / day.previous_close.to_double() * 100.0);
  }
  j["MarketFlags"] = {
      {"IsBats", false}, {"IsDelayed", false}, {"IsHalted", false}, {"IsHardToBorrow", false}};
  return j;
}

json render_position(const PositionView& p) {
  const auto& pos = p.position;
  json j;
  j["AccountID"] = p.account;
  j["PositionID"] = p.position_id;
  j["Symbol"] = pos.symbol;
  j["AssetType"] = p.future ? "FUTURE" : "STOCK";
  j["Quantity"] = std::to_string(pos.quantity);  // negative when short (api-notes section 4)
  j["LongShort"] = pos.quantity >= 0 ? "Long" : "Short";
  j["AveragePrice"] = pos.average_price.to_string();
  j["MarkToMarketPrice"] = pos.average_price.to_string();
  j["ConversionRate"] = "1";
  j["DayTradeRequirement"] = "0";
  j["InitialRequirement"] = "0";
  j["MaintenanceMargin"] = "0";
  j["Timestamp"] = ts_time(p.opened_at);
  const Price total_cost = pos.average_price * pos.quantity * p.multiplier;
  j["TotalCost"] = total_cost.to_string();
  const Price last = p.quote && p.quote->last ? *p.quote->last : pos.average_price;
  if (p.quote) {
    if (p.quote->bid) j["Bid"] = p.quote->bid->to_string();
    if (p.quote->ask) j["Ask"] = p.quote->ask->to_string();
  }
  j["Last"] = last.to_string();
  j["MarketValue"] = (last * pos.quantity * p.multiplier).to_string();
  const Price pnl = (last - pos.average_price) * pos.quantity * p.multiplier;
  j["UnrealizedProfitLoss"] = pnl.to_string();
  j["TodaysProfitLoss"] = pnl.to_string();
  j["UnrealizedProfitLossQty"] =
      (pos.quantity >= 0 ? last - pos.average_price : pos.average_price - last).to_string();
  if (!total_cost.is_zero())
    j["UnrealizedProfitLossPercent"] =
        decimal_text(pnl.to_double() / std::abs(total_cost.to_double()) * 100.0);
  return j;
}

json error_body(const std::string& error, const std::string& message) {
  return {{"Error", error}, {"Message", message}};
}

std::string ts_time(Timestamp t) {
  const std::time_t secs = static_cast<std::time_t>(t / 1'000'000'000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace backstop::tradestation_emulator
