#include "routing/strategy_runner.hpp"

#include <spdlog/spdlog.h>

namespace backstop {

StrategyRunner::StrategyRunner(Strategy& strategy, OrderManager& orders, EventLoop& loop, std::string broker,
                               std::map<std::string, Instrument> instruments)
    : strategy_(strategy), orders_(orders), loop_(loop), broker_(std::move(broker)), instruments_(std::move(instruments)) {
  orders_.on_order_update([this](const OrderRecord& o) {
    if (mine(o)) strategy_.on_order_update(*this, o);
  });
  orders_.on_fill([this](const Fill& f, const OrderRecord& o) {
    if (!mine(o)) return;
    strategy_.on_fill(*this, f, o);
    if (auto it = orders_.positions().find({f.broker, o.spec.symbol}); it != orders_.positions().end())
      strategy_.on_position(*this, it->second);
  });
}

void StrategyRunner::start() {
  if (!orders_.broker(broker_)) throw ConfigError("strategy " + strategy_.name() + ": no broker named " + broker_);
  strategy_.on_start(*this);
}

void StrategyRunner::stop() {
  strategy_.on_stop(*this);
  stopped_ = true;
}

std::string StrategyRunner::submit(OrderSpec order) {
  return orders_.submit(broker_, std::move(order), [name = strategy_.name()](const CommandResult& r) {
    if (r.outcome != Outcome::accepted) spdlog::info("{}: order {}: {}", name, to_string(r.outcome), r.message);
  });
}

BracketIds StrategyRunner::submit_bracket(BracketSpec bracket) {
  return orders_.submit_bracket(broker_, std::move(bracket), [name = strategy_.name()](const CommandResult& r) {
    if (r.outcome != Outcome::accepted) spdlog::info("{}: bracket {}: {}", name, to_string(r.outcome), r.message);
  });
}

void StrategyRunner::cancel(const std::string& coid) { orders_.cancel(coid); }

void StrategyRunner::replace(const std::string& coid, const OrderSpec& updated) { orders_.replace(coid, updated); }

std::int64_t StrategyRunner::position(const std::string& symbol) const { return orders_.position(broker_, symbol); }

const OrderRecord* StrategyRunner::order(const std::string& coid) const { return orders_.find(coid); }

const Instrument* StrategyRunner::instrument(const std::string& symbol) const {
  auto it = instruments_.find(symbol);
  return it == instruments_.end() ? nullptr : &it->second;
}

}  // namespace backstop
