#include "apps/order_report.hpp"

#include <fmt/format.h>

#include <map>

namespace backstop {

namespace {
std::string relative(Timestamp t, Timestamp origin) {
  if (t == 0) return "-";
  if (origin == 0) return format_timestamp(t);
  return fmt::format("+{:.3f}s", static_cast<double>(t - origin) / 1e9);
}

std::string price_text(const std::optional<Price>& p) { return p ? p->to_string() : ""; }
}  // namespace

nlohmann::json order_to_json(const OrderRecord& o, const std::vector<TransitionRow>& transitions,
                             const std::vector<Fill>& fills) {
  nlohmann::json j;
  const auto& s = o.spec;
  j["client_order_id"] = s.client_order_id;
  j["broker"] = o.broker;
  j["broker_order_id"] = o.broker_order_id;
  j["symbol"] = s.symbol;
  j["side"] = to_string(s.side);
  j["quantity"] = s.quantity;
  j["type"] = to_string(s.type);
  j["limit_price"] = s.limit_price ? nlohmann::json(s.limit_price->to_string()) : nlohmann::json(nullptr);
  j["stop_price"] = s.stop_price ? nlohmann::json(s.stop_price->to_string()) : nlohmann::json(nullptr);
  j["time_in_force"] = to_string(s.tif);
  j["outside_rth"] = s.outside_rth;
  j["parent_client_order_id"] = s.parent_client_order_id;
  j["oco_group"] = s.oco_group;
  j["strategy"] = s.strategy;
  j["state"] = to_string(o.state);
  j["filled_quantity"] = o.filled_quantity;
  j["average_fill_price"] = o.average_fill_price.to_string();
  j["last_message"] = o.last_message;
  nlohmann::json times = nlohmann::json::object();
  for (std::size_t i = 0; i < kOrderStateCount; ++i) {
    const auto st = static_cast<OrderState>(i);
    if (o.time_of(st) != 0) times[timestamp_name(st)] = format_timestamp(o.time_of(st));
  }
  j["timestamps"] = times;
  j["transitions"] = nlohmann::json::array();
  for (const auto& t : transitions)
    j["transitions"].push_back({{"from", t.from_state}, {"to", t.to_state}, {"at", format_timestamp(t.at)},
                                {"reason", t.reason}, {"applied", t.applied}});
  j["fills"] = nlohmann::json::array();
  for (const auto& f : fills)
    j["fills"].push_back({{"execution_id", f.execution_id}, {"quantity", f.quantity},
                          {"price", f.price.to_string()}, {"at", format_timestamp(f.at)}});
  return j;
}

nlohmann::json journal_orders_json(Journal& journal) {
  std::map<std::string, std::vector<TransitionRow>> transitions;
  for (auto& t : journal.transitions()) transitions[t.client_order_id].push_back(std::move(t));
  std::map<std::string, std::vector<Fill>> fills;
  for (auto& f : journal.fills()) fills[f.client_order_id].push_back(std::move(f));
  nlohmann::json out = nlohmann::json::array();
  for (const auto& o : journal.orders())
    out.push_back(order_to_json(o, transitions[o.spec.client_order_id], fills[o.spec.client_order_id]));
  return out;
}

void print_order_table(std::ostream& out, const std::vector<OrderRecord>& orders, Timestamp origin) {
  out << fmt::format("  {:<20} {:<4} {:<4} {:>5} {:<10} {:>9} {:<16} {:>9} {:>9} {:>9} {:>9}  {}\n", "ORDER", "LEG",
                     "SIDE", "QTY", "TYPE", "PRICE", "STATE", "CREATED", "SUBMITTED", "FILLED", "CANCELLED", "NOTE");
  for (const auto& o : orders) {
    const auto& s = o.spec;
    // Bracket exits carry their entry as parent: SL is the protective stop, TP the take-profit.
    const std::string leg = s.parent_client_order_id.empty() ? "" : (s.is_stop() ? "SL" : "TP");
    const std::string price = s.stop_price ? price_text(s.stop_price) : price_text(s.limit_price);
    Timestamp ended = o.time_of(OrderState::cancelled);
    if (ended == 0) ended = o.time_of(OrderState::rejected);
    if (ended == 0) ended = o.time_of(OrderState::failed);
    out << fmt::format("  {:<20} {:<4} {:<4} {:>5} {:<10} {:>9} {:<16} {:>9} {:>9} {:>9} {:>9}  {}\n",
                       s.client_order_id, leg,
                       to_string(s.side), s.quantity, to_string(s.type), price, to_string(o.state),
                       relative(o.time_of(OrderState::pre_sent), origin),
                       relative(o.time_of(OrderState::submitted), origin),
                       relative(o.time_of(OrderState::filled), origin), relative(ended, origin),
                       o.last_message.substr(0, 60));
  }
}

void print_fills(std::ostream& out, const std::vector<Fill>& fills, Timestamp origin) {
  for (const auto& f : fills)
    out << fmt::format("  {:<24} {:<20} {:<4} {:>5} @ {:<9} {}\n", f.execution_id, f.client_order_id,
                       to_string(f.side), f.quantity, f.price.to_string(), relative(f.at, origin));
}

}  // namespace backstop
