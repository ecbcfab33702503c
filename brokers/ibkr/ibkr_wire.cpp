#include "brokers/ibkr/ibkr_wire.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <stdexcept>

#include "core/utf8.hpp"

namespace backstop::ibkr {

using nlohmann::json;

namespace {
std::string upper(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}
// Price as a JSON number. The value is a decimal of at most 8 places, so the double's shortest
// round-trip form (what nlohmann prints) is that same decimal; preview() decodes the printed
// body back into a Price, so any drift would show in the stop lint.
json wire_price(Price p) { return p.to_double(); }
// A double's shortest round-trip text in plain decimal notation: the decimal it was written
// from when that had at most 15 significant digits. Not nlohmann's dump(): its Grisu2 output is
// not always the shortest ("693583.2438065601" for 693583.24380656, about 0.1% of 5-decimal
// prices) and it uses exponents ("1e-05"), either of which Price::try_parse refuses.
std::string decimal_text(double d) {
  char buf[400];  // fixed notation of any finite double fits
  const auto r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::fixed);
  return r.ec == std::errc() ? std::string(buf, r.ptr) : std::string();
}
}  // namespace

const json* field(const json& obj, std::string_view key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

bool json_flag(const json& obj, std::string_view key) {
  const json* f = field(obj, key);
  return f && f->is_boolean() && f->get<bool>();
}

std::string json_text(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_number_integer()) return std::to_string(j.get<std::int64_t>());
  if (j.is_number_unsigned()) return std::to_string(j.get<std::uint64_t>());
  if (j.is_number_float()) return j.dump();
  if (j.is_boolean()) return j.get<bool>() ? "true" : "false";
  return {};
}

std::optional<Price> json_price(const json& j) {
  std::string text;
  if (j.is_string()) {
    text = j.get<std::string>();
  } else if (j.is_number_float()) {
    text = decimal_text(j.get<double>());
  } else if (j.is_number()) {
    text = j.dump();  // exact for integers
  } else {
    return std::nullopt;
  }
  // Field 31 carries a prefix: C = previous close, H = halted (api-notes 1.15).
  while (!text.empty() && std::isalpha(static_cast<unsigned char>(text.front()))) text.erase(0, 1);
  Price p;
  if (text.empty() || !Price::try_parse(text, p)) return std::nullopt;
  return p;
}

std::optional<std::int64_t> json_quantity(const json& j) {
  if (j.is_number_integer()) return j.get<std::int64_t>();
  if (j.is_number_unsigned()) return static_cast<std::int64_t>(j.get<std::uint64_t>());
  if (j.is_number_float()) {
    const double d = j.get<double>();
    if (!(d > -9.2e18 && d < 9.2e18)) return std::nullopt;  // llround's result is unspecified beyond int64
    return static_cast<std::int64_t>(std::llround(d));
  }
  if (auto p = json_price(j)) return p->units() / Price::kScale;
  return std::nullopt;
}

MappedStatus map_status(std::string_view status, std::string_view why_held, std::int64_t filled) {
  const auto working = filled > 0 ? OrderState::partially_filled : OrderState::submitted;
  if (status == "PendingSubmit") return {OrderState::pending, true};
  // PreSubmitted: accepted and held by IB until the stop is elected (api-notes 1.7, 4 #6): a
  // resting order, not a stuck one.
  if (status == "PreSubmitted" || status == "Submitted") return {working, true};
  // WarnState: working, with a warning attached (SPEC229 status enum).
  if (status == "WarnState") return {working, true};
  if (status == "Filled") return {OrderState::filled, true};
  if (status == "PendingCancel") return {OrderState::pending_cancel, true};
  if (status == "Cancelled" || status == "ApiCancelled") return {OrderState::cancelled, true};
  if (status == "Inactive") {
    // Inactive = rejected, except a short waiting for a locate (api-notes 4 #7, nautilus #3603).
    if (upper(why_held).find("LOCATE") != std::string::npos) return {working, true};
    return {OrderState::rejected, true};
  }
  return {working, false};
}

std::string why_held_of(const json& order) {
  for (const char* key : {"whyHeld", "why_held"})
    if (const json* f = field(order, key)) return json_text(*f);
  return {};
}

std::optional<OrderType> parse_order_type(std::string_view text) {
  std::string t = upper(text);
  std::replace(t.begin(), t.end(), ' ', '_');
  if (t == "MKT" || t == "MARKET") return OrderType::market;
  if (t == "LMT" || t == "LIMIT") return OrderType::limit;
  if (t == "STP" || t == "STOP") return OrderType::stop;
  if (t == "STOP_LIMIT" || t == "STP_LMT" || t == "STOPLIMIT" || t == "STP_LIMIT") return OrderType::stop_limit;
  return std::nullopt;
}

std::optional<TimeInForce> parse_tif(std::string_view text) {
  const std::string t = upper(text);
  if (t == "DAY") return TimeInForce::day;
  if (t == "GTC") return TimeInForce::gtc;
  if (t == "IOC") return TimeInForce::ioc;
  return std::nullopt;
}

std::optional<Side> parse_side(std::string_view text) {
  const std::string t = upper(text);
  if (t == "BUY" || t == "B") return Side::buy;
  if (t == "SELL" || t == "S") return Side::sell;
  return std::nullopt;
}

BrokerOrder order_from_json(const json& o, const std::map<std::int64_t, std::string>& symbol_of) {
  BrokerOrder b;
  auto text = [&](std::initializer_list<const char*> keys) -> std::string {
    for (const char* k : keys)
      if (const json* f = field(o, k)) return json_text(*f);
    return {};
  };
  auto price = [&](std::initializer_list<const char*> keys) -> std::optional<Price> {
    for (const char* k : keys)
      if (const json* f = field(o, k))
        if (auto p = json_price(*f)) return p;
    return std::nullopt;
  };
  auto qty = [&](std::initializer_list<const char*> keys) -> std::optional<std::int64_t> {
    for (const char* k : keys)
      if (const json* f = field(o, k))
        if (auto q = json_quantity(*f)) return q;
    return std::nullopt;
  };
  // Live orders and sor say orderId/status/order_ref; single status says order_id/order_status.
  b.broker_order_id = text({"orderId", "order_id"});
  b.client_order_id = text({"order_ref", "cOID"});
  const auto conid = qty({"conid"});
  if (conid) {
    auto it = symbol_of.find(*conid);
    if (it != symbol_of.end()) b.symbol = it->second;
  }
  if (b.symbol.empty()) b.symbol = text({"ticker", "symbol"});
  if (auto s = parse_side(text({"side"}))) b.side = *s;
  const std::string type_text = text({"origOrderType", "orderType", "order_type"});
  if (auto t = parse_order_type(type_text)) b.type = *t;
  else if (auto t2 = parse_order_type(text({"orderType", "order_type"}))) b.type = *t2;
  if (auto t = parse_tif(text({"timeInForce", "tif"}))) b.tif = *t;
  if (const json* f = field(o, "outsideRTH")) b.outside_rth = f->is_boolean() ? f->get<bool>() : json_text(*f) == "true";
  else if (const json* g = field(o, "outside_rth")) b.outside_rth = g->is_boolean() ? g->get<bool>() : json_text(*g) == "true";
  b.filled_quantity = qty({"filledQuantity", "cum_fill"}).value_or(0);
  const auto remaining = qty({"remainingQuantity", "size"});
  if (auto total = qty({"totalSize", "total_size"})) b.quantity = *total;
  // A garbled remaining quantity that overflows with the filled one is ignored.
  else if (__builtin_add_overflow(b.filled_quantity, remaining.value_or(0), &b.quantity)) b.quantity = b.filled_quantity;
  if (auto avg = price({"avgPrice", "average_price"}); avg && b.filled_quantity > 0) b.average_fill_price = avg;
  b.parent_broker_order_id = text({"parentId", "parent_id"});
  // Prices: the single-status answer names them (limit_price/stop_price). The list reads the
  // way the order was sent: STP's stop in `price`, STOP_LIMIT's stop in `auxPrice` (api-notes
  // 1.4).
  auto limit = price({"limit_price", "lmtPrice"});
  auto stop = price({"stop_price", "stopPrice"});
  const auto plain = price({"price"});
  const auto aux = price({"auxPrice", "aux_price"});
  switch (b.type) {
    case OrderType::market: break;
    case OrderType::limit: if (!limit) limit = plain; break;
    case OrderType::stop: if (!stop) stop = plain ? plain : aux; break;
    case OrderType::stop_limit:
      if (!limit) limit = plain;
      if (!stop) stop = aux;
      break;
  }
  if (b.type == OrderType::limit || b.type == OrderType::stop_limit) b.limit_price = limit;
  if (b.type == OrderType::stop || b.type == OrderType::stop_limit) b.stop_price = stop;
  b.broker_status = text({"status", "order_status"});
  b.state = map_status(b.broker_status, why_held_of(o), b.filled_quantity).state;
  return b;
}

json build_ticket(const TicketInput& in) {
  const OrderSpec& s = *in.spec;
  json t = json::object();
  t["acctId"] = in.account;
  t["conid"] = in.conid;
  t["side"] = s.side == Side::buy ? "BUY" : "SELL";
  t["quantity"] = s.quantity;
  switch (s.type) {
    case OrderType::market: t["orderType"] = "MKT"; break;
    case OrderType::limit:
      if (!s.limit_price) throw std::invalid_argument("limit order without limit_price");
      t["orderType"] = "LMT";
      t["price"] = wire_price(*s.limit_price);
      break;
    case OrderType::stop:
      if (!s.stop_price) throw std::invalid_argument("stop order without stop_price");
      // The documented trap: Client Portal STP reads its stop from `price`; `auxPrice` is the
      // TWS API's field and is ignored here (api-notes 1.4, 4 #1).
      t["orderType"] = "STP";
      t["price"] = wire_price(*s.stop_price);
      break;
    case OrderType::stop_limit:
      if (!s.stop_price || !s.limit_price) throw std::invalid_argument("stop_limit order needs stop_price and limit_price");
      // STOP_LIMIT, not STP_LIMIT (api-notes 1.4): `price` = limit, `auxPrice` = stop.
      t["orderType"] = "STOP_LIMIT";
      t["price"] = wire_price(*s.limit_price);
      t["auxPrice"] = wire_price(*s.stop_price);
      break;
  }
  // Always explicit: an omitted tif falls back to a preset (DAY) and a stop silently expires
  // (api-notes 4 #4).
  switch (s.tif) {
    case TimeInForce::day: t["tif"] = "DAY"; break;
    case TimeInForce::gtc: t["tif"] = "GTC"; break;
    case TimeInForce::ioc: t["tif"] = "IOC"; break;
    case TimeInForce::fok: throw std::invalid_argument("IBKR Client Portal has no FOK time in force");
  }
  t["outsideRTH"] = s.outside_rth;
  if (in.include_client_order_id && !s.client_order_id.empty()) t["cOID"] = s.client_order_id;
  if (!s.parent_client_order_id.empty() && in.include_client_order_id) t["parentId"] = s.parent_client_order_id;
  if (in.us_future) {
    // CME Rule 536-B: US futures orders without manualIndicator are rejected; extOperator goes
    // with it (api-notes 1.4, CAMPUS).
    t["manualIndicator"] = in.manual_indicator;
    t["extOperator"] = in.ext_operator;
  }
  return t;
}

WireOrderView view_of_ticket(const json& ticket, bool us_future) {
  WireOrderView v;
  v.request = ticket.dump();
  const json* type_field = field(ticket, "orderType");
  const std::string type = type_field ? json_text(*type_field) : "";
  const json* price = field(ticket, "price");
  const json* aux = field(ticket, "auxPrice");
  if (type == "LMT") {
    if (price) v.limit_price = json_price(*price);
  } else if (type == "STP") {
    if (price) v.stop_price = json_price(*price);  // what IBKR reads for STP
  } else if (type == "STOP_LIMIT") {
    if (price) v.limit_price = json_price(*price);
    if (aux) v.stop_price = json_price(*aux);
  }
  if (const json* tif = field(ticket, "tif")) {
    v.tif_explicit = true;
    v.tif = parse_tif(json_text(*tif));
  }
  if (const json* rth = field(ticket, "outsideRTH"); rth && rth->is_boolean()) v.outside_rth = rth->get<bool>();
  v.manual_indicator_required = us_future;
  v.manual_indicator_set = field(ticket, "manualIndicator") != nullptr;
  return v;
}

SubmitAnswer parse_submit_answer(std::string_view body) {
  SubmitAnswer a;
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded()) {
    a.text = "unparseable answer";
    return a;
  }
  // Reject: {"error":"..."} (HTTP 200, api-notes 1.4 #3).
  if (j.is_object()) {
    if (const json* e = field(j, "error")) {
      a.kind = SubmitAnswer::Kind::error;
      a.text = json_text(*e);
      return a;
    }
    j = json::array({j});  // some answers come as a bare object; treat as one element
  }
  if (!j.is_array() || j.empty()) {
    a.text = "unrecognised answer";
    return a;
  }
  for (const auto& el : j) {
    if (!el.is_object()) continue;
    if (const json* e = field(el, "error")) {
      a.kind = SubmitAnswer::Kind::error;
      a.text = json_text(*e);
      return a;
    }
    // Reply required: {id, message:[...], messageIds:[...]} (api-notes 1.4 #2).
    const json* id = field(el, "id");
    const json* msg = field(el, "message");
    if (id && msg) {
      a.kind = SubmitAnswer::Kind::question;
      a.reply_id = json_text(*id);
      if (msg->is_array()) {
        for (const auto& m : *msg) {
          if (!a.text.empty()) a.text += " ";
          a.text += json_text(m);
        }
      } else {
        a.text = json_text(*msg);
      }
      if (const json* ids = field(el, "messageIds"); ids && ids->is_array())
        for (const auto& m : *ids) a.message_ids.push_back(json_text(m));
      return a;
    }
    if (const json* oid = field(el, "order_id")) {
      a.kind = SubmitAnswer::Kind::placed;
      a.order_ids.push_back(json_text(*oid));
      if (a.order_status.empty())
        if (const json* st = field(el, "order_status")) a.order_status = json_text(*st);
    }
  }
  if (a.kind != SubmitAnswer::Kind::placed) {
    a.text = "unrecognised answer: " + std::string(body.substr(0, 200));
    make_valid_utf8(a.text);  // an excerpt of raw text (core/utf8.hpp)
  }
  return a;
}

std::vector<std::int64_t> SorMerger::apply(const json& args) {
  std::vector<std::int64_t> touched;
  if (!args.is_array()) return touched;
  touched.reserve(args.size());
  for (const auto& el : args) {
    const json* id = field(el, "orderId");
    if (!id) continue;
    const auto oid = json_quantity(*id);
    if (!oid) continue;
    json& merged = orders_[*oid];
    if (merged.is_null()) merged = json::object();
    // A delta carries only the fields that changed (api-notes 1.16): overwrite those, keep the rest.
    for (auto it = el.begin(); it != el.end(); ++it) merged[it.key()] = it.value();
    touched.push_back(*oid);
  }
  return touched;
}

void SorMerger::seed(const json& row) {
  const json* id = field(row, "orderId");
  if (!id) return;
  if (auto oid = json_quantity(*id)) {
    json& merged = orders_[*oid];
    if (merged.is_null()) merged = json::object();
    for (auto it = row.begin(); it != row.end(); ++it) merged[it.key()] = it.value();
  }
}

bool SorMerger::any_working() const {
  for (const auto& [id, o] : orders_) {
    (void)id;
    const json* st = field(o, "status");
    if (st && !is_terminal(map_status(json_text(*st), "", 0).state)) return true;
  }
  return false;
}

const json* SorMerger::find(std::int64_t order_id) const {
  auto it = orders_.find(order_id);
  return it == orders_.end() ? nullptr : &it->second;
}

Quote quote_from_market_data(const json& j, const std::string& symbol) {
  Quote q;
  q.symbol = symbol;
  if (const json* f = field(j, "84")) q.bid = json_price(*f);
  if (const json* f = field(j, "86")) q.ask = json_price(*f);
  if (const json* f = field(j, "31")) q.last = json_price(*f);
  if (const json* f = field(j, "88")) q.bid_size = json_quantity(*f).value_or(0);
  if (const json* f = field(j, "85")) q.ask_size = json_quantity(*f).value_or(0);
  if (const json* f = field(j, "7059")) q.last_size = json_quantity(*f).value_or(0);
  // ms; a time beyond int64 nanoseconds is garbage and left unset (0) rather than overflowing.
  if (const json* f = field(j, "_updated"))
    if (__builtin_mul_overflow(json_quantity(*f).value_or(0), std::int64_t{1'000'000}, &q.at)) q.at = 0;
  return q;
}

}  // namespace backstop::ibkr
