#include "routing/strategy_runner.hpp"

#include <spdlog/spdlog.h>

namespace backstop {

StrategyRunner::StrategyRunner(Strategy& strategy, Router& router, EventLoop& loop, std::string route_name)
    : strategy_(strategy), router_(router), loop_(loop), route_name_(std::move(route_name)) {
  // The OrderManager keeps its listeners for its whole life, which may be longer than ours.
  router_.orders().on_order_update(lifetime_.while_alive([this](const OrderRecord& o) {
    if (mine(o)) strategy_.on_order_update(*this, o);
  }));
  router_.orders().on_fill(lifetime_.while_alive([this](const Fill& f, const OrderRecord& o) {
    if (!mine(o)) return;
    strategy_.on_fill(*this, f, o);
    if (auto it = router_.orders().positions().find({f.broker, o.spec.symbol}); it != router_.orders().positions().end())
      strategy_.on_position(*this, it->second);
  }));
}

void StrategyRunner::start() {
  const RouteConfig* route = router_.route(route_name_);
  if (!route) throw ConfigError("strategy " + strategy_.name() + ": no route " + route_name_);
  if (route->mode == RouteMode::dual) followed_broker_ = route->brokers.front();
  started_ = true;
  adopt_recovered_orders();
  strategy_.on_start(*this);
}

void StrategyRunner::adopt_recovered_orders() {
  // Orders an earlier process sent for this route (journaled with the route's name, recovered by
  // the OrderManager before strategies start) are this strategy's again: mine() knows them by
  // the name, and their brokers count in its position. Without this a restarted strategy would
  // read a flat position over a position it holds, and open a second one.
  // Handed to on_resume: the orders open when the earlier run ended, as recovery left them (an
  // entry that filled while Backstop was down needs its exits; an exit that filled, its partner
  // cancelled), and any open now (an exit the stop guard sent again for this route).
  std::size_t all = 0, ended = 0;
  std::vector<const OrderRecord*> resumed;
  for (const OrderRecord* o : router_.orders().orders()) {  // in the order they were created
    if (!mine(*o)) continue;
    ++all;
    brokers_.insert(o->broker);
    if (!o->is_terminal()) {
      resumed.push_back(o);
    } else if (router_.orders().open_when_recovered(o->spec.client_order_id)) {
      resumed.push_back(o);
      ++ended;
    }
  }
  if (all == 0) return;
  std::string at;
  for (const auto& b : brokers_) at += (at.empty() ? "" : ", ") + b;
  spdlog::info("strategy {}: {} orders of an earlier run are its own again ({} still open, {} ended while Backstop "
               "was down; brokers: {})",
               strategy_.name(), all, resumed.size() - ended, ended, at);
  if (!resumed.empty()) strategy_.on_resume(*this, resumed);
}

void StrategyRunner::stop() {
  strategy_.on_stop(*this);
  stopped_ = true;
}

std::string StrategyRunner::submit(OrderSpec order) {
  const std::string coid =
      router_.submit(route_name_, std::move(order), [name = strategy_.name()](const CommandResult& r) {
        if (r.outcome != Outcome::accepted) spdlog::info("{}: order {}: {}", name, to_string(r.outcome), r.message);
      });
  if (const OrderRecord* o = router_.orders().find(coid)) brokers_.insert(o->broker);
  return coid;
}

BracketIds StrategyRunner::submit_bracket(BracketSpec bracket) {
  const BracketIds ids =
      router_.submit_bracket(route_name_, std::move(bracket), [name = strategy_.name()](const CommandResult& r) {
        if (r.outcome != Outcome::accepted) spdlog::info("{}: bracket {}: {}", name, to_string(r.outcome), r.message);
      });
  if (const OrderRecord* o = router_.orders().find(ids.entry)) brokers_.insert(o->broker);
  return ids;
}

void StrategyRunner::cancel(const std::string& coid) { router_.cancel(coid); }

void StrategyRunner::replace(const std::string& coid, const OrderSpec& updated) { router_.replace(coid, updated); }

std::int64_t StrategyRunner::position(const std::string& symbol) const {
  // Sum over brokers of the fills of this strategy's own orders' brokers: on a failover route a
  // position opened at the primary and one opened at the secondary are both the strategy's.
  std::int64_t net = 0;
  for (const auto& b : brokers_) net += router_.orders().position(b, symbol);
  return net;
}

const OrderRecord* StrategyRunner::order(const std::string& coid) const { return router_.orders().find(coid); }

const Instrument* StrategyRunner::instrument(const std::string& symbol) const {
  auto it = router_.instruments().find(symbol);
  return it == router_.instruments().end() ? nullptr : &it->second;
}

}  // namespace backstop
