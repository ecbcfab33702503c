#include "emulators/tradestation/emulator_state.hpp"

#include "brokers/sim/venue_state.hpp"
#include "core/error.hpp"

namespace backstop::tradestation_emulator {
namespace {

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

// TsOrder::last is kept whole, not looked up in the venue on restore: emulator-only orders
// (silent rejects, FOK kills) never reached the venue.
json ts_order_to_json(const TsOrder& o) {
  return {{"meta", meta_json(o.meta)},
          {"last", venue_order_to_json(o.last)},
          {"status_override", o.status_override},
          {"reject_reason", o.reject_reason},
          {"closed_at", o.closed_at},
          {"cancel_pending", o.cancel_pending},
          {"readback_stop_price", price_json(o.readback_stop_price)}};
}

TsOrder ts_order_from_json(const json& j) {
  TsOrder o;
  o.meta = meta_from(j.at("meta"));
  o.last = venue_order_from_json(j.at("last"));
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
