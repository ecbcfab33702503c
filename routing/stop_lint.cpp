#include "routing/stop_lint.hpp"

namespace backstop {

std::string LintFinding::to_string() const {
  return "order " + client_order_id + ": " + field + ": " + problem + "; fix: " + fix;
}

std::vector<LintFinding> lint_stop(const OrderSpec& o, const Instrument& inst, const Broker& broker,
                                   const std::optional<Quote>& market, const StopLintPolicy& policy) {
  std::vector<LintFinding> out;
  auto find = [&](std::string field, std::string problem, std::string fix) {
    out.push_back({o.client_order_id, std::move(field), std::move(problem), std::move(fix)});
  };
  if (!o.is_stop()) return out;
  if (!o.stop_price) {
    find("stop_price", "missing", "set the stop price");
    return out;
  }
  if (!inst.tick_size.is_on_tick(*o.stop_price))
    find("stop_price", o.stop_price->to_string() + " is not a multiple of the tick " + inst.tick_size.value().to_string(),
         "round it to " + inst.tick_size.nearest(*o.stop_price).to_string());
  if (o.tif != policy.required_tif)
    find("time_in_force", std::string("is ") + backstop::to_string(o.tif) + ", the route requires " +
                              backstop::to_string(policy.required_tif),
         std::string("send it as ") + backstop::to_string(policy.required_tif));
  if (o.outside_rth != policy.outside_rth)
    find("outside_rth", o.outside_rth ? "set, the route does not allow it" : "not set, the route requires it",
         std::string("set outside_rth to ") + (policy.outside_rth ? "true" : "false"));

  if (const auto wire = broker.preview(o)) {
    if (wire->stop_price != o.stop_price)
      find("stop_price", broker.name() + " would read the stop as " +
                             (wire->stop_price ? wire->stop_price->to_string() : std::string("absent")) + " from " +
                             wire->request,
           "put the stop price in the field " + broker.name() + " reads for this order type");
    if (!wire->tif_explicit)
      find("time_in_force", "not explicit on the wire; " + broker.name() + " would apply its default",
           "send the time in force explicitly");
    else if (wire->tif && *wire->tif != o.tif)
      find("time_in_force", broker.name() + " would read " + backstop::to_string(*wire->tif), "fix the adapter's mapping");
    if (wire->outside_rth && *wire->outside_rth != o.outside_rth)
      find("outside_rth", broker.name() + " would read it differently from the order", "fix the adapter's mapping");
    if (wire->manual_indicator_required && !wire->manual_indicator_set)
      find("manual_indicator", broker.name() + " requires it for " + inst.symbol + " (US futures)",
           "set manualIndicator (and extOperator) on the request");
  }

  if (market) {
    // A sell stop must sit below the market (it protects a long), a buy stop above it.
    const bool sell = o.side == Side::sell;
    const std::optional<Price> ref = sell ? (market->bid ? market->bid : market->last)
                                          : (market->ask ? market->ask : market->last);
    if (ref && (sell ? *o.stop_price >= *ref : *o.stop_price <= *ref) && !policy.allow_marketable)
      find("stop_price",
           std::string(sell ? "sell" : "buy") + " stop " + o.stop_price->to_string() + " is already through the market (" +
               (sell ? "bid " : "ask ") + ref->to_string() + ") and would trigger at once",
           std::string("place it ") + (sell ? "below the bid" : "above the ask") +
               ", or allow marketable stops in the protection config");
  }
  return out;
}

}  // namespace backstop
