#include "brokers/tradestation/ts_wire.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <limits>

#include "core/json_text.hpp"

namespace backstop::tradestation {

using nlohmann::json;

namespace {
std::string upper(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}
}  // namespace

SymbolMap::SymbolMap(std::map<std::string, std::string> to_broker) : to_broker_(std::move(to_broker)) {
  for (const auto& [b, t] : to_broker_) to_backstop_[t] = b;
}
std::string SymbolMap::to_broker(const std::string& s) const {
  auto it = to_broker_.find(s);
  return it == to_broker_.end() ? s : it->second;
}
std::string_view SymbolMap::broker_view(const std::string& s) const {
  auto it = to_broker_.find(s);
  return it == to_broker_.end() ? std::string_view(s) : std::string_view(it->second);
}
std::string SymbolMap::to_backstop(const std::string& s) const {
  auto it = to_backstop_.find(s);
  return it == to_backstop_.end() ? s : it->second;
}

namespace {
const char* duration_wire(TimeInForce tif, bool outside_rth) {
  switch (tif) {
    case TimeInForce::day: return outside_rth ? "DYP" : "DAY";
    case TimeInForce::gtc: return outside_rth ? "GCP" : "GTC";
    case TimeInForce::ioc: return "IOC";
    case TimeInForce::fok: return "FOK";
  }
  return "DAY";
}
}  // namespace

std::string duration_for(TimeInForce tif, bool outside_rth) { return duration_wire(tif, outside_rth); }

std::optional<ParsedDuration> parse_duration(std::string_view text) {
  std::string s = upper(text);
  while (!s.empty() && s.back() == ' ') s.pop_back();
  ParsedDuration d;
  // Response spellings (api-notes section 3): "DAY+", "GTC+", "GTD+" = extended hours,
  // "1 min" = request "1".
  if (s.size() > 4 && s.ends_with(" MIN")) s.resize(s.size() - 4);
  if (!s.empty() && s.back() == '+') {
    d.extended_hours = true;
    s.pop_back();
  }
  if (s == "DAY") d.tif = TimeInForce::day;
  else if (s == "DYP") { d.tif = TimeInForce::day; d.extended_hours = true; }
  else if (s == "GTC" || s == "GTD") d.tif = TimeInForce::gtc;
  else if (s == "GCP" || s == "GDP") { d.tif = TimeInForce::gtc; d.extended_hours = true; }
  else if (s == "IOC") d.tif = TimeInForce::ioc;
  else if (s == "FOK") d.tif = TimeInForce::fok;
  else if (s == "OPG" || s == "CLO") d.tif = TimeInForce::day;
  else if (s == "1" || s == "3" || s == "5") { d.tif = TimeInForce::day; d.minutes = s[0] - '0'; }
  else return std::nullopt;
  return d;
}

const char* order_type_wire(OrderType t) {
  switch (t) {
    case OrderType::market: return "Market";
    case OrderType::limit: return "Limit";
    case OrderType::stop: return "StopMarket";
    case OrderType::stop_limit: return "StopLimit";
  }
  return "Market";
}

std::optional<OrderType> order_type_from_wire(std::string_view text) {
  const std::string s = upper(text);
  if (s == "MARKET") return OrderType::market;
  if (s == "LIMIT") return OrderType::limit;
  if (s == "STOPMARKET") return OrderType::stop;
  if (s == "STOPLIMIT") return OrderType::stop_limit;
  return std::nullopt;
}

std::optional<Side> side_from_wire(std::string_view text) {
  const std::string s = upper(text);
  if (s.starts_with("BUY")) return Side::buy;    // BUY, BUYTOCOVER, BUYTOOPEN, BUYTOCLOSE
  if (s.starts_with("SELL")) return Side::sell;  // SELL, SELLSHORT, SELLTOOPEN, SELLTOCLOSE
  return std::nullopt;
}

namespace {
enum class Category { open, pending_cancel, partial, filled, cancelled, rejected };
// The spec's Status enum with TradeStation's own category headings (api-notes section 4).
// Departures from the headings, each for a stated reason:
//  - UCN/CSN/ECN: "Cancel Sent"/"Expiration Cancel Request": pending_cancel, the order may still fill.
//  - FPR: partially filled and alive.
//  - BRF "Bracket Filled": filled ([LEAN] maps it to Filled).
//  - DOA "Dead": listed under Open but dead orders do not work (api-notes: "look terminal");
//    cancelled, so a stop in that state is never taken for a working one.
//  - FLP "Partial Fill (UROut)": partially filled then done: cancelled (remaining quantity gone).
const std::map<std::string, Category, std::less<>>& categories() {
  static const std::map<std::string, Category, std::less<>> m = {
      {"ACK", Category::open}, {"ASS", Category::open}, {"BRC", Category::open},
      {"BRF", Category::filled}, {"BRO", Category::open}, {"CHG", Category::open},
      {"CND", Category::open}, {"COR", Category::open}, {"CSN", Category::pending_cancel},
      {"DIS", Category::open}, {"DOA", Category::cancelled}, {"DON", Category::open},
      {"ECN", Category::pending_cancel}, {"EXE", Category::open}, {"FPR", Category::partial},
      {"LAT", Category::open}, {"OPN", Category::open}, {"OSO", Category::open},
      {"OTHER", Category::open}, {"PLA", Category::open}, {"REC", Category::open},
      {"RJC", Category::open}, {"RPD", Category::open}, {"RSN", Category::open},
      {"STP", Category::open}, {"STT", Category::open}, {"SUS", Category::open},
      {"UCN", Category::pending_cancel}, {"CAN", Category::cancelled}, {"EXP", Category::cancelled},
      {"OUT", Category::cancelled}, {"RJR", Category::cancelled}, {"SCN", Category::cancelled},
      {"TSC", Category::cancelled}, {"UCH", Category::cancelled}, {"REJ", Category::rejected},
      {"FLL", Category::filled}, {"FLP", Category::cancelled},
  };
  return m;
}
}  // namespace

bool is_known_status(std::string_view code) { return categories().count(upper(code)) > 0; }

std::optional<OrderState> state_for_status(std::string_view code, std::int64_t filled, std::int64_t ordered) {
  auto it = categories().find(upper(code));
  if (it == categories().end()) return std::nullopt;
  switch (it->second) {
    case Category::open: return filled > 0 ? OrderState::partially_filled : OrderState::submitted;
    case Category::pending_cancel: return OrderState::pending_cancel;
    case Category::partial: return OrderState::partially_filled;
    case Category::filled: return OrderState::filled;
    case Category::cancelled: return OrderState::cancelled;
    case Category::rejected: return OrderState::rejected;
  }
  (void)ordered;
  return std::nullopt;
}

namespace {
// "" when `value` may be sent as `field`, else why not (the body is then not written at all).
std::string refuse_unprintable(const OrderSpec& spec, const char* field, std::string_view value) {
  const std::string why = unprintable_ascii_problem(field, value);
  if (why.empty()) return {};
  return "order " + order_name_for_messages(spec) + ": " + why +
         "; TradeStation symbols, account ids and order ids are ASCII: not sent";
}

void append_quoted_price(std::string& out, const char* member, const Price& p) {
  out += member;
  out += '"';
  out += p.to_string();
  out += '"';
}

// THE wire form of one order: the OrderRequest object, appended to `out`. Members in the byte
// order of their names (what nlohmann::json, a std::map, wrote before: the body is unchanged
// byte for byte). `osos`, when not empty, is the text of the OSOs array, written as that member.
// Returns "" or why nothing was written (`out` is then unchanged).
std::string append_order(std::string& out, const OrderSpec& spec, const std::string& account,
                         const SymbolMap& symbols, std::string_view osos = {}) {
  const std::string_view symbol = symbols.broker_view(spec.symbol);
  if (auto why = refuse_unprintable(spec, "AccountID", account); !why.empty()) return why;
  if (auto why = refuse_unprintable(spec, "Symbol", symbol); !why.empty()) return why;
  if (auto why = refuse_unprintable(spec, "OrderConfirmID", spec.client_order_id); !why.empty()) return why;
  out += "{\"AccountID\":";
  append_json_string(out, account);
  if ((spec.type == OrderType::limit || spec.type == OrderType::stop_limit) && spec.limit_price)
    append_quoted_price(out, ",\"LimitPrice\":", *spec.limit_price);
  if (!osos.empty()) {
    out += ",\"OSOs\":";
    out += osos;
  }
  if (!spec.client_order_id.empty()) {
    out += ",\"OrderConfirmID\":";
    append_json_string(out, spec.client_order_id);
  }
  out += ",\"OrderType\":\"";
  out += order_type_wire(spec.type);
  out += "\",\"Quantity\":\"";
  char digits[24];
  const auto q = std::to_chars(digits, digits + sizeof digits, spec.quantity);
  out.append(digits, q.ptr);
  out += '"';
  // TradeStation reads the stop from StopPrice for both StopMarket and StopLimit (OrderRequest).
  if (spec.is_stop() && spec.stop_price) append_quoted_price(out, ",\"StopPrice\":", *spec.stop_price);
  out += ",\"Symbol\":";
  append_json_string(out, symbol);
  // Always explicit: the stop guard requires a named time in force, never a broker default.
  out += ",\"TimeInForce\":{\"Duration\":\"";
  out += duration_wire(spec.tif, spec.outside_rth);
  // Equities and futures take BUY/SELL; SELLSHORT/BUYTOCOVER are not needed for futures and
  // Backstop's Side has no short intent (documented limitation).
  out += spec.side == Side::buy ? "\"},\"TradeAction\":\"BUY\"}" : "\"},\"TradeAction\":\"SELL\"}";
  return {};
}

constexpr std::size_t kOrderTextReserve = 320;  // one order's object with long names fits
}  // namespace

RequestBody order_request(const OrderSpec& spec, const std::string& account, const SymbolMap& symbols) {
  RequestBody b;
  b.text.reserve(kOrderTextReserve);
  b.error = append_order(b.text, spec, account, symbols);
  if (!b.error.empty()) b.text.clear();
  return b;
}

RequestBody bracket_request(const BracketSpec& bracket, const std::string& account, const SymbolMap& symbols) {
  RequestBody b;
  // Entry with exit bracket: OSOs [{Type BRK, Orders [...]}] ("Long Entry with Exit Bracket").
  std::string osos;
  osos.reserve(2 * kOrderTextReserve + 40);
  osos += "[{\"Orders\":[";
  b.error = append_order(osos, bracket.take_profit, account, symbols);
  if (b.error.empty()) {
    osos += ',';
    b.error = append_order(osos, bracket.protective_stop, account, symbols);
  }
  if (b.error.empty()) {
    osos += "],\"Type\":\"BRK\"}]";
    b.text.reserve(osos.size() + kOrderTextReserve);
    b.error = append_order(b.text, bracket.entry, account, symbols, osos);
  }
  if (!b.error.empty()) b.text.clear();
  return b;
}

RequestBody group_request(std::string_view type, const std::vector<OrderSpec>& orders, const std::string& account,
                          const SymbolMap& symbols) {
  RequestBody b;
  b.text.reserve(orders.size() * kOrderTextReserve + 40);
  b.text += "{\"Orders\":[";
  for (std::size_t i = 0; i < orders.size() && b.error.empty(); ++i) {
    if (i > 0) b.text += ',';
    b.error = append_order(b.text, orders[i], account, symbols);
  }
  if (!b.error.empty()) {
    b.text.clear();
    return b;
  }
  b.text += "],\"Type\":";
  append_json_string(b.text, type);
  b.text += '}';
  return b;
}

std::string replace_request(const OrderSpec& spec) {
  std::string out;
  out.reserve(96);
  out += '{';
  if ((spec.type == OrderType::limit || spec.type == OrderType::stop_limit) && spec.limit_price)
    append_quoted_price(out, "\"LimitPrice\":", *spec.limit_price), out += ',';
  out += "\"Quantity\":\"";
  out += std::to_string(spec.quantity);
  out += '"';
  if (spec.is_stop() && spec.stop_price) append_quoted_price(out, ",\"StopPrice\":", *spec.stop_price);
  out += '}';
  return out;
}

namespace {
// SAX handler behind read_place_answer. Depth 0 is outside the top-level value; the top-level
// object's members are at depth 1, the Orders/Errors elements at depth 2 and their members at
// depth 3. Everything else is skipped by depth alone (no stack, no document).
class PlaceAnswerReader {
 public:
  struct Entry {
    std::string order_id, error, message;
  };
  std::vector<Entry> orders, errors;  // the last Orders / Errors arrays of the top-level object

  bool null() { return value(Kind::scalar); }
  bool boolean(bool) { return value(Kind::scalar); }
  bool number_integer(json::number_integer_t) { return value(Kind::scalar); }
  bool number_unsigned(json::number_unsigned_t) { return value(Kind::scalar); }
  bool number_float(json::number_float_t, const json::string_t&) { return value(Kind::scalar); }
  bool binary(json::binary_t&) { return value(Kind::scalar); }
  bool string(json::string_t& v) {
    if (depth_ == 3 && field_) {  // a member we read, as text
      *field_ = std::move(v);
      field_ = nullptr;
      return true;
    }
    return value(Kind::scalar);
  }
  bool start_object(std::size_t) {
    value(Kind::object);
    ++depth_;
    return true;
  }
  bool start_array(std::size_t) {
    value(Kind::array);
    ++depth_;
    return true;
  }
  bool key(json::string_t& k) {
    if (depth_ == 1 && root_object_) {
      pending_ = k == "Orders" ? &orders : k == "Errors" ? &errors : nullptr;
      // A repeated key counts with its last value, as in a document: forget the earlier one.
      if (pending_) pending_->clear();
    } else if (depth_ == 3 && in_entry_) {
      Entry& e = list_->back();
      field_ = k == "OrderID" ? &e.order_id : k == "Error" ? &e.error : k == "Message" ? &e.message : nullptr;
    }
    return true;
  }
  bool end_object() {
    if (--depth_ == 2) in_entry_ = false;
    return true;
  }
  bool end_array() {
    if (--depth_ == 1) list_ = nullptr;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) { return false; }

 private:
  enum class Kind { scalar, object, array };
  // Every value but a string read into a member, at the depth it sits at (before a container
  // is entered).
  bool value(Kind kind) {
    switch (depth_) {
      case 0:
        root_object_ = kind == Kind::object;
        break;
      case 1:  // a member of the top-level object: Orders/Errors count only as arrays
        if (kind == Kind::array && pending_) list_ = pending_;
        pending_ = nullptr;
        break;
      case 2:  // an element of Orders/Errors: an entry whatever its type (a non-object has no members)
        if (list_) {
          list_->emplace_back();
          in_entry_ = kind == Kind::object;
        }
        break;
      case 3:  // a member we read given a number, object or array reads as "" (json_string),
               // replacing any earlier value of the same key
        if (field_) field_->clear();
        field_ = nullptr;
        break;
      default:
        break;
    }
    return true;
  }

  int depth_ = 0;
  bool root_object_ = false;
  bool in_entry_ = false;                  // inside an object element of list_ (its members at depth 3)
  std::vector<Entry>* pending_ = nullptr;  // the top-level key just read, if Orders/Errors
  std::vector<Entry>* list_ = nullptr;     // the Orders/Errors array being read (depth >= 2)
  std::string* field_ = nullptr;           // the entry member whose value comes next
};
}  // namespace

PlaceAnswer read_place_answer(std::string_view body) {
  PlaceAnswer out;
  PlaceAnswerReader r;
  try {
    if (!json::sax_parse(body, &r)) return out;
  } catch (const std::exception&) {
    return out;  // as a failed parse (memory)
  }
  out.parsed = true;
  // Errors first, then Orders, whatever their order in the text (as the document reader did).
  for (auto& e : r.errors) {
    const std::string& m = e.message.empty() ? e.error : e.message;
    if (!out.errors.empty()) out.errors += "; ";
    out.errors += m;
  }
  for (auto& o : r.orders) {
    if (!o.error.empty()) {
      if (!out.errors.empty()) out.errors += "; ";
      out.errors += o.message.empty() ? o.error : o.message;
    } else {
      out.order_ids.push_back(std::move(o.order_id));
    }
  }
  return out;
}

std::optional<Price> json_price(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::nullopt;
  Price p;
  if (it->is_string()) {
    const auto& s = it->get_ref<const std::string&>();
    if (s.empty() || !Price::try_parse(s, p)) return std::nullopt;
    return p;
  }
  // Through the text, which is range-checked: from_integer would overflow past 9.2e10.
  if (it->is_number_integer()) return Price::try_parse(it->dump(), p) ? std::optional<Price>(p) : std::nullopt;
  if (it->is_number()) {
    // A JSON number (not what the API sends): go through its shortest decimal text, never a double
    // compare. Not dump(): Grisu2 is not always shortest ("693583.2438065601") and uses exponents.
    char buf[400];  // fixed notation of any finite double fits
    const auto r = std::to_chars(buf, buf + sizeof buf, it->get<double>(), std::chars_format::fixed);
    if (r.ec != std::errc() || !Price::try_parse(std::string_view(buf, r.ptr - buf), p)) return std::nullopt;
    return p;
  }
  return std::nullopt;
}

std::int64_t json_int(const json& obj, const char* key, std::int64_t fallback) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  if (it->is_number_integer()) return it->get<std::int64_t>();
  if (it->is_string()) {
    Price p;  // quantities are strings like "100" (or "100.0" for some assets)
    if (Price::try_parse(it->get_ref<const std::string&>(), p)) return p.units() / Price::kScale;
  }
  if (it->is_number()) {
    const double d = it->get<double>();
    // Out of int64's range the cast is undefined: such a quantity is garbage.
    if (!(d > -9.2e18 && d < 9.2e18)) return fallback;
    return static_cast<std::int64_t>(d);
  }
  return fallback;
}

std::string json_string(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) return {};
  return it->get<std::string>();
}

std::optional<int> retry_after_seconds(std::string_view header) {
  constexpr int kLongest = 60;
  while (!header.empty() && (header.front() == ' ' || header.front() == '\t')) header.remove_prefix(1);
  while (!header.empty() && (header.back() == ' ' || header.back() == '\t')) header.remove_suffix(1);
  std::int64_t secs = 0;
  const auto r = std::from_chars(header.data(), header.data() + header.size(), secs);
  if (header.empty() || r.ptr != header.data() + header.size()) return std::nullopt;
  if (r.ec == std::errc::result_out_of_range) return header.front() == '-' ? 1 : kLongest;
  if (r.ec != std::errc()) return std::nullopt;
  return static_cast<int>(std::clamp<std::int64_t>(secs, 1, kLongest));
}

WireOrderView wire_view(const json& r) {
  WireOrderView v;
  v.stop_price = json_price(r, "StopPrice");
  v.limit_price = json_price(r, "LimitPrice");
  auto tif = r.find("TimeInForce");
  if (tif != r.end() && tif->is_object()) {
    const std::string d = json_string(*tif, "Duration");
    if (auto p = parse_duration(d)) {
      v.tif_explicit = true;
      v.tif = p->tif;
      v.outside_rth = p->extended_hours;
    }
  }
  v.request = r.dump();
  return v;
}

WireOrder parse_order(const json& o, const SymbolMap& symbols, std::optional<OrderState> previous_state) {
  WireOrder w;
  BrokerOrder& b = w.order;
  b.broker_order_id = json_string(o, "OrderID");
  b.broker_status = json_string(o, "Status");
  w.status_description = json_string(o, "StatusDescription");
  w.reject_reason = json_string(o, "RejectReason");
  w.closed_at = json_string(o, "ClosedDateTime");
  w.opened_at = json_string(o, "OpenedDateTime");
  if (auto t = order_type_from_wire(json_string(o, "OrderType"))) b.type = *t;
  if (auto d = parse_duration(json_string(o, "Duration"))) {
    b.tif = d->tif;
    b.outside_rth = d->extended_hours;
  }
  b.limit_price = json_price(o, "LimitPrice");
  b.stop_price = json_price(o, "StopPrice");
  std::int64_t ordered = 0, exec = 0;
  std::optional<Price> leg_price;
  auto legs = o.find("Legs");
  if (legs != o.end() && legs->is_array()) {
    for (const auto& leg : *legs) {
      if (b.symbol.empty()) b.symbol = symbols.to_backstop(json_string(leg, "Symbol"));
      if (auto s = side_from_wire(json_string(leg, "BuyOrSell"))) b.side = *s;
      if (__builtin_add_overflow(ordered, json_int(leg, "QuantityOrdered"), &ordered) ||
          __builtin_add_overflow(exec, json_int(leg, "ExecQuantity"), &exec))  // cumulative (api-notes section 5)
        throw ParseError("order " + b.broker_order_id + ": leg quantities out of range");
      if (!leg_price) leg_price = json_price(leg, "ExecutionPrice");
    }
  }
  b.quantity = ordered;
  b.filled_quantity = exec;
  w.exec_quantity = exec;
  auto filled_price = json_price(o, "FilledPrice");
  if (filled_price && filled_price->is_zero()) filled_price.reset();
  if (leg_price && leg_price->is_zero()) leg_price.reset();
  w.exec_price = filled_price ? filled_price : leg_price;
  if (exec > 0) b.average_fill_price = w.exec_price;
  // The mapper works with price units x cumulative quantity in 64 bits: beyond that is garbage.
  std::int64_t notional = 0;
  if (w.exec_price && exec > 0 && __builtin_mul_overflow(w.exec_price->units(), exec, &notional))
    throw ParseError("order " + b.broker_order_id + ": fill notional out of range");
  auto state = state_for_status(b.broker_status, exec, ordered);
  w.status_known = state.has_value();
  b.state = state ? *state : previous_state.value_or(exec > 0 ? OrderState::partially_filled : OrderState::submitted);
  // ConditionalOrders: Relationship OSP names the parent of a bracket child (api-notes section 4).
  auto cond = o.find("ConditionalOrders");
  if (cond != o.end() && cond->is_array())
    for (const auto& c : *cond)
      if (upper(json_string(c, "Relationship")) == "OSP") b.parent_broker_order_id = json_string(c, "OrderID");
  return w;
}

void OrderFrameMapper::set_client_order_id(const std::string& order_id, const std::string& coid) {
  orders_[order_id].client_order_id = coid;
}

const OrderFrameMapper::Known* OrderFrameMapper::find(const std::string& order_id) const {
  auto it = orders_.find(order_id);
  return it == orders_.end() ? nullptr : &it->second;
}

std::optional<Fill> OrderFrameMapper::advance(Known& k, const WireOrder& w, Timestamp now) {
  if (w.exec_quantity <= k.cumulative) return std::nullopt;
  const std::int64_t delta = w.exec_quantity - k.cumulative;
  Fill f;
  f.broker = broker_;
  f.broker_order_id = w.order.broker_order_id;
  f.client_order_id = k.client_order_id;
  f.symbol = w.order.symbol;
  f.side = w.order.side;
  f.quantity = delta;
  f.at = now;
  f.execution_id = w.order.broker_order_id + "-" + std::to_string(w.exec_quantity);
  f.cumulative_quantity = w.exec_quantity;
  // The delta's price from the average: avg_new * cum_new - (sum of earlier fills).
  // In 128 bits: parse_order refuses notionals beyond 64 bits, but a WireOrder may come from elsewhere.
  __extension__ using Wide = __int128;
  constexpr Wide kMin = std::numeric_limits<std::int64_t>::min(), kMax = std::numeric_limits<std::int64_t>::max();
  const std::int64_t avg = w.exec_price ? w.exec_price->units() : 0;
  const Wide total = static_cast<Wide>(avg) * w.exec_quantity;
  Wide price = k.fills.empty() ? avg : (total - k.notional_units_x_qty) / delta;
  if (price < kMin || price > kMax) price = avg;  // not representable: report the average
  f.price = Price::from_units(static_cast<std::int64_t>(price));
  k.notional_units_x_qty = static_cast<std::int64_t>(std::clamp(total, kMin, kMax));
  k.cumulative = w.exec_quantity;
  k.fills.push_back(f);
  return f;
}

void OrderFrameMapper::on_order(const json& o, Timestamp now, std::vector<OrderEvent>& out) {
  const std::string id = json_string(o, "OrderID");
  if (id.empty()) return;
  auto [it, inserted] = orders_.try_emplace(id);
  Known& k = it->second;
  WireOrder w = parse_order(o, symbols_, inserted ? std::nullopt : std::optional<OrderState>(k.state));
  if (!w.status_known) {
    ++unknown_status_frames_;
    if (on_unknown_status) on_unknown_status(w.order.broker_status);
  }
  // An ACK (or DON) can carry fill data before the FLL (api-notes section 5, [LEAN] PRs #81/#87):
  // the cumulative quantity counts wherever it appears, once.
  if (auto fill = advance(k, w, now)) {
    OrderEvent ev;
    ev.kind = OrderEvent::Kind::fill;
    ev.broker_order_id = id;
    ev.client_order_id = k.client_order_id;
    ev.state = w.exec_quantity >= w.order.quantity && w.order.quantity > 0 ? OrderState::filled
                                                                         : OrderState::partially_filled;
    ev.broker_status = w.order.broker_status;
    ev.fill = *fill;
    ev.at = now;
    out.push_back(std::move(ev));
  }
  // Same status again (terminal frames re-sent with ClosedDateTime, duplicate frames) = nothing new.
  // STP frames may carry ClosedDateTime though not terminal: only the status code counts.
  if (!inserted && k.status == w.order.broker_status) return;
  k.status = w.order.broker_status;
  k.state = w.order.state;
  OrderEvent ev;
  ev.broker_order_id = id;
  ev.client_order_id = k.client_order_id;
  ev.state = w.order.state;
  ev.broker_status = w.order.broker_status;
  ev.message = !w.reject_reason.empty() ? w.reject_reason : w.status_description;
  ev.at = now;
  const std::string code = upper(w.order.broker_status);
  if (w.order.state == OrderState::rejected) ev.kind = OrderEvent::Kind::rejected;
  else if (w.order.state == OrderState::cancelled) ev.kind = OrderEvent::Kind::cancelled;
  else if (code == "STP") ev.kind = OrderEvent::Kind::triggered;
  else ev.kind = OrderEvent::Kind::status;
  out.push_back(std::move(ev));
}

std::vector<Fill> OrderFrameMapper::reconcile_fills(const WireOrder& w, Timestamp now) {
  Known& k = orders_[w.order.broker_order_id];
  advance(k, w, now);
  return k.fills;
}

}  // namespace backstop::tradestation
