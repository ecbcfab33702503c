#include "api/api_json.hpp"

#include <algorithm>
#include <set>

namespace backstop::api_json {

namespace {

std::string join_path(const std::string& path, const std::string& key) { return path.empty() ? key : path + "." + key; }

std::string json_quoted(const std::string& s) { return json(s).dump(); }

// An object at a path whose keys must all be known: a misspelt "stop_prize" is an error, not an
// order sent without a stop price.
class Reader {
 public:
  Reader(const json& j, std::string path, std::initializer_list<const char*> keys) : j_(j), path_(std::move(path)) {
    if (!j_.is_object()) throw BadRequest(where() + ": must be a JSON object");
    for (const char* k : keys) keys_.insert(k);
    for (const auto& [k, v] : j_.items()) {
      if (keys_.count(k)) continue;
      std::string allowed;
      for (const auto& a : keys_) allowed += (allowed.empty() ? "" : ", ") + a;
      throw BadRequest(join_path(path_, k) + ": unknown field (allowed: " + allowed + ")");
    }
  }
  std::string where() const { return path_.empty() ? "body" : path_; }
  std::string at(const std::string& key) const { return join_path(path_, key); }
  const json* get(const std::string& key) const {
    auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }
  const json& need(const std::string& key) const {
    const json* v = get(key);
    if (!v) throw BadRequest(at(key) + ": required");
    return *v;
  }
  std::optional<std::string> string(const std::string& key, bool required) const {
    const json* v = required ? &need(key) : get(key);
    if (!v) return std::nullopt;
    if (!v->is_string()) throw BadRequest(at(key) + ": must be a string");
    if (v->get<std::string>().empty()) throw BadRequest(at(key) + ": must not be empty");
    return v->get<std::string>();
  }
  std::optional<std::int64_t> positive_integer(const std::string& key, bool required) const {
    const json* v = required ? &need(key) : get(key);
    if (!v) return std::nullopt;
    // 10.0 and "10" are refused as well: a quantity is a count, and a client sending floats has
    // a bug worth hearing about.
    if (!v->is_number_integer() || (v->is_number_unsigned() && v->get<std::uint64_t>() > INT64_MAX) ||
        v->get<std::int64_t>() <= 0)
      throw BadRequest(at(key) + ": must be a positive integer");
    return v->get<std::int64_t>();
  }
  std::optional<bool> boolean(const std::string& key) const {
    const json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) throw BadRequest(at(key) + ": must be true or false");
    return v->get<bool>();
  }
  // Prices are decimal strings ("101.25"): a JSON number would pass through a double.
  std::optional<Price> price(const std::string& key, const Instrument* inst) const {
    const json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_string())
      throw BadRequest(at(key) + ": must be a decimal string such as \"101.25\" (prices are exact; JSON numbers are not)");
    Price p;
    std::string why;
    if (!Price::try_parse(v->get<std::string>(), p, &why)) throw BadRequest(at(key) + ": " + why);
    if (p.units() <= 0) throw BadRequest(at(key) + ": must be positive");
    if (inst && !inst->tick_size.is_on_tick(p))
      throw BadRequest(at(key) + ": " + p.to_string() + " is not a multiple of " + inst->symbol + "'s tick size " +
                       inst->tick_size.value().to_string());
    return p;
  }

 private:
  const json& j_;
  std::string path_;
  std::set<std::string> keys_;
};

std::string check_strategy(const Reader& r, const Config& config) {
  std::string strategy = *r.string("strategy", true);
  if (!config.route_for(strategy)) {
    std::string names;
    for (const auto& route : config.routes) names += (names.empty() ? "" : ", ") + route.strategy;
    throw BadRequest(r.at("strategy") + ": no route for strategy " + json_quoted(strategy) + " (routed strategies: " +
                     names + ")");
  }
  return strategy;
}

// One order at `path`. `expect_type`, when set, is the only type allowed (bracket legs).
OrderSpec read_order(const json& j, const std::string& path, const Config& config) {
  Reader r(j, path,
           {"client_order_id", "symbol", "side", "quantity", "type", "limit_price", "stop_price", "tif", "outside_rth"});
  OrderSpec o;
  if (auto id = r.string("client_order_id", false)) {
    // Clients may name their orders, which makes a retried POST safe: the same id is refused
    // as a duplicate instead of sending a second order.
    if (id->size() > kMaxClientOrderIdLength)
      throw BadRequest(r.at("client_order_id") + ": longer than " + std::to_string(kMaxClientOrderIdLength) +
                       " characters");
    if (!std::all_of(id->begin(), id->end(), [](unsigned char c) { return std::isalnum(c) || c == '-' || c == '_'; }))
      throw BadRequest(r.at("client_order_id") + ": only letters, digits, '-' and '_' are allowed");
    o.client_order_id = *id;
  }
  o.symbol = *r.string("symbol", true);
  const Instrument* inst = config.find_instrument(o.symbol);
  if (!inst) {
    std::string names;
    for (const auto& i : config.instruments) names += (names.empty() ? "" : ", ") + i.symbol;
    throw BadRequest(r.at("symbol") + ": unknown instrument " + json_quoted(o.symbol) + " (configured: " + names + ")");
  }
  const std::string side = *r.string("side", true);
  auto s = side_from_string(side);
  if (!s) throw BadRequest(r.at("side") + ": must be \"buy\" or \"sell\", not " + json_quoted(side));
  o.side = *s;
  o.quantity = *r.positive_integer("quantity", true);
  const std::string type = r.string("type", false).value_or("market");
  auto t = order_type_from_string(type);
  if (!t) throw BadRequest(r.at("type") + ": must be one of market, limit, stop, stop_limit, not " + json_quoted(type));
  o.type = *t;
  o.limit_price = r.price("limit_price", inst);
  o.stop_price = r.price("stop_price", inst);
  const bool needs_limit = o.type == OrderType::limit || o.type == OrderType::stop_limit;
  if (needs_limit && !o.limit_price) throw BadRequest(r.at("limit_price") + ": required for a " + type + " order");
  if (!needs_limit && o.limit_price) throw BadRequest(r.at("limit_price") + ": not allowed on a " + type + " order");
  if (o.is_stop() && !o.stop_price) throw BadRequest(r.at("stop_price") + ": required for a " + type + " order");
  if (!o.is_stop() && o.stop_price) throw BadRequest(r.at("stop_price") + ": not allowed on a " + type + " order");
  // A stop's default is GTC (a DAY stop silently expiring overnight is a stop that stopped
  // working); everything else defaults to DAY, as the strategies' builders do.
  o.tif = o.is_stop() ? TimeInForce::gtc : TimeInForce::day;
  if (auto tif = r.string("tif", false)) {
    auto v = tif_from_string(*tif);
    if (!v) throw BadRequest(r.at("tif") + ": must be one of day, gtc, ioc, fok, not " + json_quoted(*tif));
    o.tif = *v;
  }
  if (auto v = r.boolean("outside_rth")) o.outside_rth = *v;
  return o;
}

}  // namespace

json parse_body(const std::string& body) {
  if (body.empty()) throw BadRequest("body: required (a JSON object)");
  json j;
  try {
    j = json::parse(body);
  } catch (const json::parse_error& e) {
    throw BadRequest("body: not valid JSON (at byte " + std::to_string(e.byte) + ")");
  }
  if (!j.is_object()) throw BadRequest("body: must be a JSON object");
  return j;
}

OrderRequest read_order_request(const json& body, const Config& config) {
  Reader r(body, "", {"strategy", "order"});
  OrderRequest req;
  req.strategy = check_strategy(r, config);
  req.order = read_order(r.need("order"), "order", config);
  return req;
}

BracketRequest read_bracket_request(const json& body, const Config& config) {
  Reader r(body, "", {"strategy", "entry", "take_profit", "protective_stop"});
  BracketRequest req;
  req.strategy = check_strategy(r, config);
  BracketSpec& b = req.bracket;
  b.entry = read_order(r.need("entry"), "entry", config);
  b.take_profit = read_order(r.need("take_profit"), "take_profit", config);
  b.protective_stop = read_order(r.need("protective_stop"), "protective_stop", config);
  const char* entry_side = to_string(b.entry.side);
  for (auto [leg, name] : {std::pair{&b.take_profit, "take_profit"}, std::pair{&b.protective_stop, "protective_stop"}}) {
    if (leg->symbol != b.entry.symbol)
      throw BadRequest(std::string(name) + ".symbol: must be the entry's symbol " + json_quoted(b.entry.symbol));
    if (leg->side != opposite(b.entry.side))
      throw BadRequest(std::string(name) + ".side: must be the opposite of entry.side (" + entry_side + ")");
    if (leg->quantity != b.entry.quantity)
      throw BadRequest(std::string(name) + ".quantity: must equal entry.quantity (" + std::to_string(b.entry.quantity) +
                       ")");
  }
  if (b.take_profit.type != OrderType::limit) throw BadRequest("take_profit.type: must be limit");
  if (!b.protective_stop.is_stop()) throw BadRequest("protective_stop.type: must be stop or stop_limit");
  const Price tp = *b.take_profit.limit_price;
  const Price sp = *b.protective_stop.stop_price;
  if (b.entry.side == Side::buy && !(tp > sp))
    throw BadRequest("take_profit.limit_price: must be above protective_stop.stop_price for a long bracket");
  if (b.entry.side == Side::sell && !(tp < sp))
    throw BadRequest("take_profit.limit_price: must be below protective_stop.stop_price for a short bracket");
  return req;
}

OrderSpec read_replace_request(const json& body, const OrderSpec& current, const Config& config) {
  Reader top(body, "", {"order"});
  Reader r(top.need("order"), "order", {"quantity", "limit_price", "stop_price", "tif"});
  const Instrument* inst = config.find_instrument(current.symbol);
  OrderSpec o = current;
  bool any = false;
  if (auto q = r.positive_integer("quantity", false)) o.quantity = *q, any = true;
  if (auto p = r.price("limit_price", inst)) {
    if (!(o.type == OrderType::limit || o.type == OrderType::stop_limit))
      throw BadRequest(r.at("limit_price") + ": not allowed on a " + std::string(to_string(o.type)) + " order");
    o.limit_price = p, any = true;
  }
  if (auto p = r.price("stop_price", inst)) {
    if (!o.is_stop())
      throw BadRequest(r.at("stop_price") + ": not allowed on a " + std::string(to_string(o.type)) + " order");
    o.stop_price = p, any = true;
  }
  if (auto tif = r.string("tif", false)) {
    auto v = tif_from_string(*tif);
    if (!v) throw BadRequest(r.at("tif") + ": must be one of day, gtc, ioc, fok, not " + json_quoted(*tif));
    o.tif = *v, any = true;
  }
  if (!any) throw BadRequest("order: nothing to replace (give quantity, limit_price, stop_price or tif)");
  return o;
}

json price_json(const std::optional<Price>& p) { return p ? json(p->to_string()) : json(nullptr); }

namespace {
json ts(Timestamp t) { return t ? json(format_timestamp(t)) : json(nullptr); }
}  // namespace

json stop_json(const StopRecord& s) {
  return {{"client_order_id", s.client_order_id},
          {"broker", s.broker},
          {"verification", to_string(s.verification)},
          {"detail", s.detail},
          {"verified_at", ts(s.verified_at)},
          {"verifications", s.verifications},
          {"watching", s.watching},
          {"ghost", s.ghost},
          {"needs_reconfirm", s.needs_reconfirm}};
}

json order_json(const OrderRecord& o, const StopRecord* stop) {
  json times = json::object();
  for (std::size_t i = 0; i < kOrderStateCount; ++i) {
    const auto s = static_cast<OrderState>(i);
    if (o.time_of(s)) times[timestamp_name(s)] = format_timestamp(o.time_of(s));
  }
  return {{"client_order_id", o.spec.client_order_id},
          {"broker", o.broker},
          {"broker_order_id", o.broker_order_id},
          {"symbol", o.spec.symbol},
          {"side", to_string(o.spec.side)},
          {"quantity", o.spec.quantity},
          {"type", to_string(o.spec.type)},
          {"limit_price", price_json(o.spec.limit_price)},
          {"stop_price", price_json(o.spec.stop_price)},
          {"tif", to_string(o.spec.tif)},
          {"outside_rth", o.spec.outside_rth},
          {"parent_client_order_id", o.spec.parent_client_order_id},
          {"oco_group", o.spec.oco_group},
          {"strategy", o.spec.strategy},
          {"state", to_string(o.state)},
          {"working", is_working(o.state)},
          {"filled_quantity", o.filled_quantity},
          {"average_fill_price", o.filled_quantity ? json(o.average_fill_price.to_string()) : json(nullptr)},
          {"last_message", o.last_message},
          {"timestamps", times},
          {"stop", stop ? stop_json(*stop) : json(nullptr)}};
}

json ghost_json(const GhostStop& g) {
  return {{"client_order_id", g.client_order_id}, {"broker", g.broker},
          {"symbol", g.symbol},                   {"side", to_string(g.side)},
          {"stop_price", g.stop_price.to_string()}, {"crossing_price", g.crossing_price.to_string()},
          {"crossed_at", ts(g.crossed_at)},       {"declared_at", ts(g.declared_at)},
          {"source", g.source},                   {"action", g.action},
          {"flatten_order", g.flatten_order}};
}

json divergence_json(const Divergence& d) {
  return {{"at", ts(d.at)}, {"broker", d.broker}, {"kind", d.kind}, {"client_order_id", d.client_order_id},
          {"detail", d.detail}};
}

json health_change_json(const HealthChange& c) {
  return {{"broker", c.broker}, {"from", to_string(c.from)}, {"to", to_string(c.to)},
          {"circuit", to_string(c.circuit)}, {"at", ts(c.at)}, {"reason", c.reason}};
}

json fill_json(const Fill& f) {
  return {{"execution_id", f.execution_id}, {"broker", f.broker},   {"client_order_id", f.client_order_id},
          {"symbol", f.symbol},             {"side", to_string(f.side)}, {"quantity", f.quantity},
          {"price", f.price.to_string()},   {"at", ts(f.at)}};
}

json quote_json(const Quote& q) {
  return {{"symbol", q.symbol}, {"bid", price_json(q.bid)}, {"ask", price_json(q.ask)}, {"last", price_json(q.last)},
          {"at", ts(q.at)},     {"source", q.source}};
}

json position_json(const Position& p) {
  return {{"symbol", p.symbol},
          {"quantity", p.quantity},
          {"average_price", p.quantity ? json(p.average_price.to_string()) : json(nullptr)}};
}

json command_result_json(const CommandResult& r) {
  return {{"outcome", to_string(r.outcome)}, {"message", r.message}, {"broker_order_id", r.broker_order_id}};
}

}  // namespace backstop::api_json
