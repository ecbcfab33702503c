// Venue::save_state / restore_state: the venue's record as JSON, prices as exact units.
#include "brokers/sim/venue_state.hpp"

#include "core/error.hpp"

namespace backstop {

using nlohmann::json;

json price_json(const std::optional<Price>& p) { return p ? json(p->units()) : json(nullptr); }

std::optional<Price> price_from(const json& j, const char* key) {
  const json& v = j.at(key);
  if (v.is_null()) return std::nullopt;
  return Price::from_units(v.get<std::int64_t>());
}

namespace {

std::optional<VenueStatus> venue_status_from_string(const std::string& s) {
  for (auto st : {VenueStatus::held, VenueStatus::working, VenueStatus::triggered, VenueStatus::filled,
                  VenueStatus::cancelled, VenueStatus::rejected})
    if (s == to_string(st)) return st;
  return std::nullopt;
}

template <typename T>
T known(std::optional<T> v, const char* what, const std::string& text) {
  if (!v) throw Error(std::string("unknown ") + what + " \"" + text + "\"");
  return *v;
}

}  // namespace

json venue_order_to_json(const VenueOrder& o) {
  return {{"id", o.id},
          {"client_order_id", o.client_order_id},
          {"account", o.account},
          {"symbol", o.symbol},
          {"side", to_string(o.side)},
          {"quantity", o.quantity},
          {"type", to_string(o.type)},
          {"limit_price", price_json(o.limit_price)},
          {"stop_price", price_json(o.stop_price)},
          {"tif", to_string(o.tif)},
          {"outside_rth", o.outside_rth},
          {"parent_id", o.parent_id},
          {"oco_group", o.oco_group},
          {"status", to_string(o.status)},
          {"filled_quantity", o.filled_quantity},
          {"average_fill_price", o.average_fill_price.units()},
          {"reason", o.reason},
          {"ghost", o.ghost},
          {"ghost_crossed_logged", o.ghost_crossed_logged},
          {"created_at", o.created_at},
          {"updated_at", o.updated_at},
          {"triggered_at", o.triggered_at}};
}

VenueOrder venue_order_from_json(const json& j) {
  VenueOrder o;
  o.id = j.at("id").get<std::string>();
  o.client_order_id = j.at("client_order_id").get<std::string>();
  o.account = j.at("account").get<std::string>();
  o.symbol = j.at("symbol").get<std::string>();
  const auto side = j.at("side").get<std::string>(), type = j.at("type").get<std::string>(),
             tif = j.at("tif").get<std::string>(), status = j.at("status").get<std::string>();
  o.side = known(side_from_string(side), "side", side);
  o.quantity = j.at("quantity").get<std::int64_t>();
  o.type = known(order_type_from_string(type), "order type", type);
  o.limit_price = price_from(j, "limit_price");
  o.stop_price = price_from(j, "stop_price");
  o.tif = known(tif_from_string(tif), "time in force", tif);
  o.outside_rth = j.at("outside_rth").get<bool>();
  o.parent_id = j.at("parent_id").get<std::string>();
  o.oco_group = j.at("oco_group").get<std::string>();
  o.status = known(venue_status_from_string(status), "venue status", status);
  o.filled_quantity = j.at("filled_quantity").get<std::int64_t>();
  o.average_fill_price = Price::from_units(j.at("average_fill_price").get<std::int64_t>());
  o.reason = j.at("reason").get<std::string>();
  o.ghost = j.at("ghost").get<bool>();
  o.ghost_crossed_logged = j.at("ghost_crossed_logged").get<bool>();
  o.created_at = j.at("created_at").get<Timestamp>();
  o.updated_at = j.at("updated_at").get<Timestamp>();
  o.triggered_at = j.at("triggered_at").get<Timestamp>();
  return o;
}

nlohmann::json Venue::save_state() const {
  json orders = json::array(), fills = json::array(), positions = json::array(), arrivals = json::array(),
       quotes = json::array();
  for (const auto& o : orders_) orders.push_back(venue_order_to_json(o));
  for (const auto& f : fills_)
    fills.push_back({{"execution_id", f.execution_id}, {"order_id", f.order_id}, {"quantity", f.quantity},
                     {"price", f.price.units()}, {"at", f.at}});
  for (const auto& [symbol, p] : positions_)
    positions.push_back({{"symbol", symbol}, {"quantity", p.quantity}, {"average_price", p.average_price.units()}});
  for (const auto& a : arrivals_)
    arrivals.push_back({{"at", a.at}, {"client_order_id", a.client_order_id}, {"order_id", a.order_id},
                        {"duplicate", a.duplicate}});
  for (const auto& [symbol, q] : last_quotes_)
    quotes.push_back({{"symbol", symbol}, {"bid", price_json(q.bid)}, {"ask", price_json(q.ask)},
                      {"last", price_json(q.last)}, {"bid_size", q.bid_size}, {"ask_size", q.ask_size},
                      {"last_size", q.last_size}, {"at", q.at}, {"source", q.source}});
  return {{"orders", orders},
          {"fills", fills},
          {"positions", positions},
          {"arrivals", arrivals},
          {"last_quotes", quotes},
          {"next_order_id", next_order_id_},
          {"next_execution_id", next_execution_id_}};
}

void Venue::restore_state(const nlohmann::json& state) {
  // Parsed whole before anything is replaced: a bad file leaves the venue as it was.
  std::deque<VenueOrder> orders;
  std::vector<VenueFill> fills;
  std::map<std::string, VenuePosition> positions;
  std::vector<VenueArrival> arrivals;
  std::map<std::string, Quote> quotes;
  std::uint64_t next_order_id = 0, next_execution_id = 0;
  const char* part = "orders";
  try {
    for (const auto& j : state.at("orders")) orders.push_back(venue_order_from_json(j));
    part = "fills";
    for (const auto& j : state.at("fills"))
      fills.push_back({j.at("execution_id").get<std::string>(), j.at("order_id").get<std::string>(),
                       j.at("quantity").get<std::int64_t>(), Price::from_units(j.at("price").get<std::int64_t>()),
                       j.at("at").get<Timestamp>()});
    part = "positions";
    for (const auto& j : state.at("positions")) {
      const auto symbol = j.at("symbol").get<std::string>();
      positions[symbol] = {symbol, j.at("quantity").get<std::int64_t>(),
                           Price::from_units(j.at("average_price").get<std::int64_t>())};
    }
    part = "arrivals";
    for (const auto& j : state.at("arrivals"))
      arrivals.push_back({j.at("at").get<Timestamp>(), j.at("client_order_id").get<std::string>(),
                          j.at("order_id").get<std::string>(), j.at("duplicate").get<bool>()});
    part = "last_quotes";
    for (const auto& j : state.at("last_quotes")) {
      Quote q;
      q.symbol = j.at("symbol").get<std::string>();
      q.bid = price_from(j, "bid");
      q.ask = price_from(j, "ask");
      q.last = price_from(j, "last");
      q.bid_size = j.at("bid_size").get<std::int64_t>();
      q.ask_size = j.at("ask_size").get<std::int64_t>();
      q.last_size = j.at("last_size").get<std::int64_t>();
      q.at = j.at("at").get<Timestamp>();
      q.source = j.at("source").get<std::string>();
      quotes[q.symbol] = std::move(q);
    }
    part = "counters";
    next_order_id = state.at("next_order_id").get<std::uint64_t>();
    next_execution_id = state.at("next_execution_id").get<std::uint64_t>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("venue state: ") + part + ": " + e.what());
  } catch (const Error& e) {
    throw Error(std::string("venue state: ") + part + ": " + e.what());
  }
  orders_ = std::move(orders);
  fills_ = std::move(fills);
  positions_ = std::move(positions);
  arrivals_ = std::move(arrivals);
  last_quotes_ = std::move(quotes);
  next_order_id_ = next_order_id;
  next_execution_id_ = next_execution_id;
  by_id_.clear();
  by_client_id_.clear();
  for (std::size_t i = 0; i < orders_.size(); ++i) {
    by_id_[orders_[i].id] = i;
    if (!orders_[i].client_order_id.empty()) by_client_id_[orders_[i].client_order_id] = i;
  }
}

}  // namespace backstop
