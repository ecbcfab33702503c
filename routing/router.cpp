#include "routing/router.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdint>

namespace backstop {

// [[gnu::hot]] marks the functions every order runs through (here, in OrderManager, Journal,
// EventLoop and core/order): GCC optimizes them for speed and places them together in .text.hot,
// so the submit path, which runs from cold caches after the loop has slept, touches fewer pages
// and cache lines; [[gnu::cold]] and [[unlikely]] move the refusals' code away from it
// (bench/PERFORMANCE.md, 2026-12-07 session 22).

namespace {
// Price of the order used for the notional check: its own limit or stop price, else the market.
std::optional<Price> order_price(const OrderSpec& s, const std::map<std::string, Price>& reference) {
  if (s.limit_price) return s.limit_price;
  if (s.stop_price) return s.stop_price;
  auto it = reference.find(s.symbol);
  if (it == reference.end()) return std::nullopt;
  return it->second;
}
}  // namespace

Router::Router(EventLoop& loop, OrderManager& orders, BrokerHealth& health, Journal& journal, RiskConfig risk,
               std::map<std::string, Instrument> instruments)
    : loop_(loop),
      orders_(orders),
      health_(health),
      journal_(journal),
      risk_(risk),
      instruments_(std::move(instruments)) {}

void Router::add_route(const RouteConfig& route) {
  if (route.brokers.empty()) throw ConfigError("route of strategy " + route.strategy + ": no broker");
  if (route.mode == RouteMode::dual && route.brokers.size() != 2)
    throw ConfigError("route of strategy " + route.strategy + ": dual mode needs exactly two brokers");
  std::vector<BrokerLane*> lanes;
  for (const auto& b : route.brokers) {
    if (!orders_.broker(b)) throw ConfigError("route of strategy " + route.strategy + ": no broker named " + b);
    auto it = lanes_.find(b);
    if (it == lanes_.end()) {
      it = lanes_.emplace(b, BrokerLane{nullptr, {}, health_.view(b)}).first;
      it->second.name = &it->first;
    }
    lanes.push_back(&it->second);
  }
  routes_[route.strategy] = RouteState{route, std::move(lanes)};
}

void Router::hold_stops(const std::string& strategy) { state(strategy).hold_stops = true; }

const RouteConfig* Router::route(const std::string& strategy) const {
  auto it = routes_.find(strategy);
  return it == routes_.end() ? nullptr : &it->second.config;
}

[[gnu::hot]] Router::RouteState& Router::state(const std::string& strategy) {
  auto it = routes_.find(strategy);
  if (it == routes_.end()) throw ConfigError("strategy " + strategy + " has no route");
  return it->second;
}

void Router::on_quote(const Quote& q) {
  if (q.last)
    reference_prices_[q.symbol] = *q.last;
  else if (q.bid && q.ask)
    reference_prices_[q.symbol] = Price::from_units((q.bid->units() + q.ask->units()) / 2);
}

std::string Router::current_broker(const std::string& strategy) const {
  auto it = routes_.find(strategy);
  return it == routes_.end() ? std::string() : it->second.config.brokers[it->second.active];
}

std::optional<std::string> Router::partner(const std::string& coid) const {
  auto it = partners_.find(coid);
  if (it == partners_.end()) return std::nullopt;
  return it->second;
}

[[gnu::cold]] std::string Router::why_none(const RouteState& r) const {
  std::string why;
  for (const auto& b : r.config.brokers)
    why += (why.empty() ? "" : ", ") + b + " " + to_string(health_.state(b)) + " (circuit " +
           to_string(health_.circuit(b)) + ")";
  return "no broker of the route takes orders: " + why;
}

[[gnu::hot]] Router::BrokerLane* Router::choose_broker(RouteState& r, const std::string& strategy) {
  const auto& brokers = r.config.brokers;
  const std::size_t n = brokers.size();
  // Back to the primary when allowed; otherwise stay where the route is until that broker fails.
  const std::size_t start = r.config.return_to_primary ? 0 : r.active;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t idx = (start + i) % n;
    if (!r.lanes[idx]->health.takes_orders()) continue;
    if (idx != r.active) {
      RouteSwitch sw{strategy, brokers[r.active], brokers[idx], loop_.now(),
                     idx < r.active ? "primary healthy again" : brokers[r.active] + " does not take orders"};
      spdlog::warn("route {}: new orders now go to {} (was {}): {}", strategy, sw.to, sw.from, sw.reason);
      journal_.record_event({sw.at, sw.to, "route_switch", {},
                             nlohmann::json{{"strategy", strategy}, {"from", sw.from}, {"to", sw.to},
                                            {"reason", sw.reason}}
                                 .dump()});
      switches_.push_back(std::move(sw));
      r.active = idx;
    }
    return r.lanes[idx];
  }
  return nullptr;
}

std::optional<std::string> Router::choose(const std::string& strategy) {
  if (const BrokerLane* lane = choose_broker(state(strategy), strategy)) return *lane->name;
  return std::nullopt;
}

namespace {
// 128-bit: quantity * price units * multiplier can pass 2^63 for large futures orders.
__extension__ using Wide = __int128;  // GCC/Clang builtin; __extension__ keeps -Wpedantic quiet

// The notional in the refusal, exact like every price: a double would round it past 2^53 units.
std::string notional_text(Wide units) {
  if (units >= INT64_MIN && units <= INT64_MAX) return Price::from_units(static_cast<std::int64_t>(units)).to_string();
  return units < 0 ? "below -92233720368.54775808 (overflow)" : "above 92233720368.54775807 (overflow)";
}
}  // namespace

// The refusals' texts, built out of line and marked cold: the checks run on every order and
// refuse almost none, so their message-building code is kept off the cache lines the accepted
// order runs through (the submit path is instruction-cache bound: bench/PERFORMANCE.md).
namespace {
[[gnu::cold, gnu::noinline]] std::string quantity_refusal(std::int64_t quantity, std::int64_t limit) {
  return "quantity " + std::to_string(quantity) + " exceeds risk.max_order_quantity " + std::to_string(limit);
}
[[gnu::cold, gnu::noinline]] std::string instrument_refusal(const OrderSpec& spec, const std::string& broker,
                                                             bool unknown) {
  if (unknown) return "unknown instrument " + spec.symbol;
  return "instrument " + spec.symbol + " has no symbol at broker " + broker + " (instruments[].broker_symbols)";
}
[[gnu::cold, gnu::noinline]] std::string no_price_refusal(const OrderSpec& spec) {
  return "no market price for " + spec.symbol + " yet: the notional of a market order cannot be checked";
}
[[gnu::cold, gnu::noinline]] std::string notional_refusal(Wide notional, Price price, Price limit) {
  if (notional < 0) return "notional " + notional_text(notional) + " is negative (price " + price.to_string() + ")";
  return "notional " + notional_text(notional) + " exceeds risk.max_notional " + limit.to_string();
}
}  // namespace

[[gnu::hot]] std::string Router::check(const std::string& broker, const OrderSpec& spec) const {
  if (spec.quantity > risk_.max_order_quantity) [[unlikely]]
    return quantity_refusal(spec.quantity, risk_.max_order_quantity);
  auto inst = instruments_.find(spec.symbol);
  if (inst == instruments_.end()) [[unlikely]]
    return instrument_refusal(spec, broker, true);
  if (!inst->second.broker_symbols.empty() && !inst->second.broker_symbols.count(broker)) [[unlikely]]
    return instrument_refusal(spec, broker, false);
  const auto price = order_price(spec, reference_prices_);
  if (!price) [[unlikely]]
    return no_price_refusal(spec);
  const Wide notional = static_cast<Wide>(price->units()) * spec.quantity * inst->second.multiplier;
  if (notional < 0 || notional > static_cast<Wide>(risk_.max_notional.units())) [[unlikely]]
    return notional_refusal(notional, *price, risk_.max_notional);
  return {};
}

[[gnu::hot]] bool Router::take_budget(Budget& b) {
  const double rate = risk_.max_orders_per_second;
  const double capacity = std::max(1.0, rate);
  const Timestamp now = loop_.now();
  if (!b.started) {
    b.started = true;
    b.tokens = capacity;
  } else {
    b.tokens = std::min(capacity, b.tokens + rate * static_cast<double>(now - b.refilled_at) / 1e9);
  }
  b.refilled_at = now;
  if (b.tokens < 1.0) return false;
  b.tokens -= 1.0;
  return true;
}

// The limit as configured ("3", "0.5"), not std::to_string's "3.000000".
[[gnu::cold]] std::string Router::rate_refusal(const std::string& broker) const {
  return fmt::format("more than risk.max_orders_per_second ({}) order requests to {}", risk_.max_orders_per_second,
                     broker);
}

[[gnu::hot]] std::string Router::refusal(BrokerLane& lane, const OrderSpec& spec) {
  if (auto why = check(*lane.name, spec); !why.empty()) [[unlikely]]
    return why;
  if (!take_budget(lane.budget)) [[unlikely]]
    return rate_refusal(*lane.name);
  return {};
}

[[gnu::cold]] std::string Router::refuse(const std::string& broker, OrderSpec spec, const std::string& why,
                           const SubmitCallback& done) {
  ++refused_;
  spdlog::warn("order refused before sending to {}: {}", broker, why);
  const std::string coid = orders_.record_refused(broker, std::move(spec), "refused by router: " + why);
  if (done) done(CommandResult::failed("refused by router: " + why));
  return coid;
}

[[gnu::cold]] BracketIds Router::refuse_bracket(const std::string& broker, const BracketSpec& b, const std::string& why,
                                  const SubmitCallback& done) {
  ++refused_;  // one request: the three legs would have gone together
  spdlog::warn("bracket refused before sending to {}: {}", broker, why);
  const std::string reason = "refused by router: " + why;
  for (const OrderSpec* leg : {&b.entry, &b.take_profit, &b.protective_stop}) orders_.record_refused(broker, *leg, reason);
  if (done) done(CommandResult::failed(reason));
  return {b.entry.client_order_id, b.take_profit.client_order_id, b.protective_stop.client_order_id};
}

void Router::submit_answered(const std::string& broker, Timestamp sent_at, const CommandResult& r) {
  switch (r.outcome) {
    case Outcome::accepted:
    case Outcome::rejected:  // a business answer: the broker is up
      health_.request_succeeded(broker, Duration(loop_.now() - sent_at));
      break;
    case Outcome::unknown:
    case Outcome::failed_locally:
      health_.request_failed(broker, r.message);
      break;
  }
}

[[gnu::hot]] std::string Router::send_one(BrokerLane& lane, OrderSpec&& spec, SubmitCallback&& done, bool hold) {
  const std::string& broker = *lane.name;
  if (hold) {
    // Held, not sent: the same limits as an order (it will be one when it triggers), but no
    // request to the broker now, so no rate budget.
    if (auto why = check(broker, spec); !why.empty()) return refuse(broker, std::move(spec), why, done);
    return orders_.hold(broker, std::move(spec), std::move(done));
  }
  if (auto why = refusal(lane, spec); !why.empty()) [[unlikely]]
    return refuse(broker, std::move(spec), why, done);
  return orders_.submit(broker, std::move(spec), std::move(done), this);
}

BracketIds Router::send_bracket(BrokerLane& lane, BracketSpec b, SubmitCallback done) {
  const std::string& broker = *lane.name;
  std::string why;
  for (const OrderSpec* leg : {&b.entry, &b.take_profit, &b.protective_stop})
    if (why.empty()) why = check(broker, *leg);
  // One bracket is one request at either broker (TradeStation ordergroups, IBKR parent+children).
  if (why.empty() && !take_budget(lane.budget))
    why = rate_refusal(broker);
  if (!why.empty()) return refuse_bracket(broker, b, why, done);  // legs' ids: given by submit_bracket
  return orders_.submit_bracket(broker, std::move(b), std::move(done), this);
}

void Router::record_pair(const std::string& strategy, const std::vector<std::pair<std::string, std::string>>& sides) {
  nlohmann::json orders = nlohmann::json::object();
  for (const auto& [broker, coid] : sides) orders[broker] = coid;
  journal_.record_event({loop_.now(), sides.front().first, "dual_pair", sides.front().second,
                         nlohmann::json{{"pair", sides.front().second}, {"strategy", strategy}, {"orders", orders}}
                             .dump()});
  partners_[sides.front().second] = sides.back().second;
}

std::size_t Router::restore_pairs() {
  std::size_t restored = 0;
  for (const JournalEvent& ev : journal_.events("dual_pair")) {
    const OrderRecord* first = orders_.find(ev.client_order_id);
    if (!first || first->is_terminal()) continue;  // nothing left to cancel or replace
    const auto detail = nlohmann::json::parse(ev.detail, nullptr, false);
    const auto orders = detail.is_object() ? detail.find("orders") : detail.end();
    if (!detail.is_object() || orders == detail.end() || !orders->is_object()) {
      spdlog::error("journal event dual_pair of order {}: detail has no \"orders\" object; its twin will not "
                    "follow a cancel or replace",
                    ev.client_order_id);
      continue;
    }
    for (const auto& [broker, coid] : orders->items())
      if (coid.is_string() && coid.get_ref<const std::string&>() != ev.client_order_id) {
        partners_[ev.client_order_id] = coid.get<std::string>();
        ++restored;
      }
  }
  if (restored > 0) spdlog::info("router: {} dual-run pairs of an earlier run restored", restored);
  return restored;
}

[[gnu::hot]] std::string Router::submit(const std::string& strategy, OrderSpec spec, SubmitCallback done) {
  RouteState& r = state(strategy);
  if (spec.client_order_id.empty()) spec.client_order_id = orders_.next_client_order_id();
  spec.strategy = strategy;  // journaled with the order: the strategy owns it after a restart
  const bool hold = r.hold_stops && spec.is_stop();
  if (r.config.mode == RouteMode::dual) {
    BrokerLane& first = *r.lanes[0];
    BrokerLane& second = *r.lanes[1];
    OrderSpec twin = spec;
    twin.client_order_id = orders_.next_client_order_id();
    // Journaled before either order: the pair is on record even if we stop between the two sends.
    record_pair(strategy, {{*first.name, spec.client_order_id}, {*second.name, twin.client_order_id}});
    const std::string coid = send_one(first, std::move(spec), std::move(done), hold);
    send_one(second, std::move(twin), {}, hold);
    return coid;
  }
  BrokerLane* lane = choose_broker(r, strategy);
  if (!lane) [[unlikely]]
    return refuse(r.config.brokers[r.active], std::move(spec), why_none(r), done);
  return send_one(*lane, std::move(spec), std::move(done), hold);
}

BracketIds Router::submit_bracket(const std::string& strategy, BracketSpec bracket, SubmitCallback done) {
  RouteState& r = state(strategy);
  for (OrderSpec* leg : {&bracket.entry, &bracket.take_profit, &bracket.protective_stop}) {
    if (leg->client_order_id.empty()) leg->client_order_id = orders_.next_client_order_id();
    leg->strategy = strategy;
  }
  if (r.hold_stops)
    return refuse_bracket(r.config.brokers[r.active], bracket,
                          "protection local holds stops in Backstop, and a broker's bracket cannot include a stop it "
                          "does not hold: send the entry, then the exits as single orders",
                          done);
  if (r.config.mode == RouteMode::dual) {
    const std::string& first = r.config.brokers[0];
    const std::string& second = r.config.brokers[1];
    BracketSpec twin = bracket;
    for (OrderSpec* leg : {&twin.entry, &twin.take_profit, &twin.protective_stop})
      leg->client_order_id = orders_.next_client_order_id();
    record_pair(strategy, {{first, bracket.entry.client_order_id}, {second, twin.entry.client_order_id}});
    record_pair(strategy, {{first, bracket.take_profit.client_order_id}, {second, twin.take_profit.client_order_id}});
    record_pair(strategy,
                {{first, bracket.protective_stop.client_order_id}, {second, twin.protective_stop.client_order_id}});
    BracketIds ids = send_bracket(*r.lanes[0], std::move(bracket), std::move(done));
    send_bracket(*r.lanes[1], std::move(twin), {});
    return ids;
  }
  BrokerLane* lane = choose_broker(r, strategy);
  if (!lane) return refuse_bracket(r.config.brokers[r.active], bracket, why_none(r), done);
  return send_bracket(*lane, std::move(bracket), std::move(done));
}

void Router::cancel(const std::string& coid, SubmitCallback done) {
  orders_.cancel(coid, std::move(done));
  if (auto p = partner(coid)) orders_.cancel(*p);
}

void Router::replace(const std::string& coid, const OrderSpec& updated, SubmitCallback done) {
  // A replace can raise quantity or move the price: the same limits apply as to a new order.
  if (const OrderRecord* o = orders_.find(coid)) {
    OrderSpec next = o->spec;
    next.quantity = updated.quantity;
    if (updated.limit_price) next.limit_price = updated.limit_price;
    if (updated.stop_price) next.stop_price = updated.stop_price;
    if (auto why = check(o->broker, next); !why.empty()) {
      ++refused_;
      journal_.record_event({loop_.now(), o->broker, "replace_refused", coid,
                             nlohmann::json{{"reason", why}}.dump()});
      if (done) done(CommandResult::failed("replace refused by router: " + why));
      return;
    }
  }
  orders_.replace(coid, updated, std::move(done));
  if (auto p = partner(coid)) {
    OrderSpec twin = updated;
    twin.client_order_id = *p;
    orders_.replace(*p, twin);
  }
}

}  // namespace backstop
