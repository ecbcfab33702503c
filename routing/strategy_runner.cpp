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
  if (!router_.route(route_name_)) throw ConfigError("strategy " + strategy_.name() + ": no route " + route_name_);
  strategy_.on_start(*this);
}

void StrategyRunner::stop() {
  strategy_.on_stop(*this);
  stopped_ = true;
}

std::string StrategyRunner::submit(OrderSpec order) {
  if (order.client_order_id.empty()) order.client_order_id = router_.orders().next_client_order_id();
  owned_.insert(order.client_order_id);  // before sending: updates can arrive during submit
  const std::string coid =
      router_.submit(route_name_, std::move(order), [name = strategy_.name()](const CommandResult& r) {
        if (r.outcome != Outcome::accepted) spdlog::info("{}: order {}: {}", name, to_string(r.outcome), r.message);
      });
  if (const OrderRecord* o = router_.orders().find(coid)) brokers_.insert(o->broker);
  return coid;
}

BracketIds StrategyRunner::submit_bracket(BracketSpec bracket) {
  for (OrderSpec* leg : {&bracket.entry, &bracket.take_profit, &bracket.protective_stop}) {
    if (leg->client_order_id.empty()) leg->client_order_id = router_.orders().next_client_order_id();
    owned_.insert(leg->client_order_id);
  }
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
