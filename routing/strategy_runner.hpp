#pragma once
// Hosts one strategy on one broker: the strategy's context sends every order there through the
// OrderManager, and the broker's quotes and the manager's order updates and fills reach the
// strategy. (Routes across several brokers, failover and dual-run build on the same context.)
#include <map>

#include "routing/order_manager.hpp"
#include "routing/strategy.hpp"

namespace backstop {

class StrategyRunner final : public StrategyContext {
 public:
  StrategyRunner(Strategy& strategy, OrderManager& orders, EventLoop& loop, std::string broker,
                 std::map<std::string, Instrument> instruments);

  void start();  // calls on_start
  void stop();   // calls on_stop; later events no longer reach the strategy
  // Market data, fanned out by the host (which also feeds the stop guard).
  void on_quote(const Quote& q) {
    if (!stopped_) strategy_.on_quote(*this, q);
  }

  Timestamp now() const override { return loop_.now(); }
  std::string submit(OrderSpec order) override;
  BracketIds submit_bracket(BracketSpec bracket) override;
  void cancel(const std::string& client_order_id) override;
  void replace(const std::string& client_order_id, const OrderSpec& updated) override;
  std::int64_t position(const std::string& symbol) const override;
  const OrderRecord* order(const std::string& client_order_id) const override;
  const Instrument* instrument(const std::string& symbol) const override;

 private:
  bool mine(const OrderRecord& o) const { return o.broker == broker_ && !stopped_; }

  Strategy& strategy_;
  OrderManager& orders_;
  EventLoop& loop_;
  std::string broker_;
  std::map<std::string, Instrument> instruments_;
  bool stopped_ = false;
};

}  // namespace backstop
