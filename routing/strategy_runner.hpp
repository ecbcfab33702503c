#pragma once
// Hosts one strategy on its route: the strategy's context sends every order through the Router
// (which picks the broker: a single broker, a failover route, or a dual-run pair), and market
// data, order updates and fills reach the strategy. The strategy follows the broker(s) its
// orders went to: on a failover route the orders are at whichever broker took them; on a dual
// route the strategy follows the first broker, the second executes the same intent.
#include <set>

#include "core/lifetime.hpp"
#include "routing/router.hpp"
#include "routing/strategy.hpp"

namespace backstop {

class StrategyRunner final : public StrategyContext {
 public:
  // `route_name` is the strategy's name in the config (the key of its route).
  StrategyRunner(Strategy& strategy, Router& router, EventLoop& loop, std::string route_name);

  // Takes back the orders this route sent in an earlier run (recovered from the journal; those
  // open when it ended, and those open now, are handed to on_resume), then calls on_start.
  void start();
  void stop();   // calls on_stop; later events no longer reach the strategy
  // Market data, fanned out by the host (which also feeds the stop guard and the router).
  void on_quote(const Quote& q) {
    if (!stopped_) strategy_.on_quote(*this, q);
  }

  Timestamp now() const override { return loop_.now(); }
  std::string submit(OrderSpec order) override;
  BracketIds submit_bracket(BracketSpec bracket) override;
  void cancel(const std::string& client_order_id) override;
  void replace(const std::string& client_order_id, const OrderSpec& updated) override;
  // Net over the brokers this strategy's orders went to (its followed side in dual mode).
  std::int64_t position(const std::string& symbol) const override;
  const OrderRecord* order(const std::string& client_order_id) const override;
  const Instrument* instrument(const std::string& symbol) const override;

 private:
  void adopt_recovered_orders();
  // Its orders are those its route sent (the Router stamps the route's name on each, and the
  // journal keeps it, so this holds across a restart); on a dual route, those at the first broker.
  // Nothing reaches the strategy before start(): the session's start-up recovery runs after the
  // runners exist and its updates are summed up by on_resume instead.
  bool mine(const OrderRecord& o) const {
    return started_ && !stopped_ && o.spec.strategy == route_name_ &&
           (followed_broker_.empty() || o.broker == followed_broker_);
  }

  Strategy& strategy_;
  Router& router_;
  EventLoop& loop_;
  std::string route_name_;
  std::string followed_broker_;    // a dual route's first broker; empty on a failover route
  std::set<std::string> brokers_;  // brokers its orders went to
  bool started_ = false;
  bool stopped_ = false;
  Lifetime lifetime_;  // wraps the listeners it leaves with the OrderManager
};

}  // namespace backstop
