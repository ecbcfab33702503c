#include "emulators/tradestation/emulator_state.hpp"

#include "core/error.hpp"

namespace backstop::tradestation_emulator {
namespace {

json price_json(const std::optional<Price>& p) { return p ? json(p->units()) : json(nullptr); }

std::optional<Price> price_from(const json& j, const char* key) {
  const json& v = j.at(key);
  if (v.is_null()) return std::nullopt;
  return Price::from_units(v.get<std::int64_t>());
}

template <typename T>
T known(std::optional<T> v, const char* what, const std::string& text) {
  if (!v) throw Error(std::string("unknown ") + what + " \"" + text + "\"");
  return *v;
}

std::optional<VenueStatus> venue_status_from_string(const std::string& s) {
  for (auto st : {VenueStatus::held, VenueStatus::working, VenueStatus::triggered,
                  VenueStatus::filled, VenueStatus::cancelled, VenueStatus::rejected})
    if (s == to_string(st)) return st;
  return std::nullopt;
}

// TsOrder::last is kept whole, not looked up in the venue on restore: emulator-only orders
// (silent rejects, FOK kills) never reached the venue.
json venue_order_json(const VenueOrder& o) {
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

VenueOrder venue_order_from(const json& j) {
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

json meta_json(const TsOrderMeta& m) {
  json relations = json::array();
  for (const auto& [id, kind] : m.relations) relations.push_back({id, kind});
  return {{"account", m.account},       {"symbol", m.symbol},
          {"trade_action", m.trade_action}, {"order_type", m.order_type},
          {"duration", m.duration},     {"route", m.route},
          {"confirm_id", m.confirm_id}, {"future", m.future},
          {"group_name", m.group_name}, {"oca", m.oca},
          {"relations", relations},     {"kill_status", m.kill_status}};
}

TsOrderMeta meta_from(const json& j) {
  TsOrderMeta m;
  m.account = j.at("account").get<std::string>();
  m.symbol = j.at("symbol").get<std::string>();
  m.trade_action = j.at("trade_action").get<std::string>();
  m.order_type = j.at("order_type").get<std::string>();
  m.duration = j.at("duration").get<std::string>();
  m.route = j.at("route").get<std::string>();
  m.confirm_id = j.at("confirm_id").get<std::string>();
  m.future = j.at("future").get<bool>();
  m.group_name = j.at("group_name").get<std::string>();
  m.oca = j.at("oca").get<std::string>();
  for (const auto& r : j.at("relations"))
    m.relations.emplace_back(r.at(0).get<std::string>(), r.at(1).get<std::string>());
  m.kill_status = j.at("kill_status").get<std::string>();
  return m;
}

}  // namespace

json ts_order_to_json(const TsOrder& o) {
  return {{"meta", meta_json(o.meta)},
          {"last", venue_order_json(o.last)},
          {"status_override", o.status_override},
          {"reject_reason", o.reject_reason},
          {"closed_at", o.closed_at},
          {"cancel_pending", o.cancel_pending},
          {"readback_stop_price", price_json(o.readback_stop_price)}};
}

TsOrder ts_order_from_json(const json& j) {
  TsOrder o;
  o.meta = meta_from(j.at("meta"));
  o.last = venue_order_from(j.at("last"));
  o.status_override = j.at("status_override").get<std::string>();
  o.reject_reason = j.at("reject_reason").get<std::string>();
  o.closed_at = j.at("closed_at").get<Timestamp>();
  o.cancel_pending = j.at("cancel_pending").get<bool>();
  o.readback_stop_price = price_from(j, "readback_stop_price");
  return o;
}

json day_stats_to_json(const DayStats& d) {
  return {{"open", d.open.units()},   {"high", d.high.units()},
          {"low", d.low.units()},     {"previous_close", d.previous_close.units()},
          {"volume", d.volume},       {"seen", d.seen}};
}

DayStats day_stats_from_json(const json& j) {
  DayStats d;
  d.open = Price::from_units(j.at("open").get<std::int64_t>());
  d.high = Price::from_units(j.at("high").get<std::int64_t>());
  d.low = Price::from_units(j.at("low").get<std::int64_t>());
  d.previous_close = Price::from_units(j.at("previous_close").get<std::int64_t>());
  d.volume = j.at("volume").get<std::int64_t>();
  d.seen = j.at("seen").get<bool>();
  return d;
}

}  // namespace backstop::tradestation_emulator
