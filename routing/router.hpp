#pragma once
// The Router sends each strategy's orders where its route says, once, the same way for every
// broker:
//  - pre-trade checks (max order quantity, max notional, max order requests per second per
//    broker) before anything is journaled as sent; a refused order is still recorded (failed,
//    with the reason) so nothing a strategy asked for disappears;
//  - client order ids are assigned here (through the OrderManager's generator), never by an
//    adapter;
//  - failover routes: a new order goes to the first broker of the route whose circuit is closed
//    (BrokerHealth). Orders already sent stay with their broker: an order whose outcome is
//    unknown is resolved there by client order id (OrderManager) and is never sent elsewhere.
//    With return_to_primary the route goes back to the first broker once it is healthy again;
//    without, it stays where it failed over to;
//  - dual routes: each order is sent to both brokers under two client order ids, and the pair
//    is journaled (event "dual_pair") before either is sent, for the reliability comparison.
//    The strategy follows the first broker (its orders, fills, position); the second executes
//    the same intent and cancels and replaces follow the first;
//  - protection `local` (hold_stops): a route's stop orders are held by Backstop instead of
//    sent (OrderManager::hold; the StopGuard sends each as a market order when it triggers).
// Runs on the EventLoop thread.
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "routing/broker_health.hpp"
#include "routing/order_manager.hpp"

namespace backstop {

struct RouteSwitch {
  std::string strategy;
  std::string from, to;
  Timestamp at = 0;
  std::string reason;
};

class Router : private OrderManager::SubmitObserver {
 public:
  using SubmitCallback = OrderManager::SubmitCallback;

  Router(EventLoop& loop, OrderManager& orders, BrokerHealth& health, Journal& journal, RiskConfig risk,
         std::map<std::string, Instrument> instruments);

  // Every broker of the route must be registered with the OrderManager (ConfigError otherwise).
  void add_route(const RouteConfig& route);
  // Protection `local` for a route added before: its stop and stop-limit orders are held by
  // Backstop (OrderManager::hold) after the same pre-trade checks, at the broker the order would
  // have gone to, and never sent as stops. Its brackets are refused: a broker's bracket ties its
  // exits together (one cancels the other) and cannot include a stop the broker does not hold.
  void hold_stops(const std::string& strategy);
  const RouteConfig* route(const std::string& strategy) const;

  // Reference prices for the notional check of market orders.
  void on_quote(const Quote& q);

  // Where a new order of `strategy` goes now (failover), or nullopt when no broker of its route
  // takes orders. Journals a "route_switch" event when the answer changes.
  std::optional<std::string> choose(const std::string& strategy);
  // The pre-trade checks for one order request at one broker: empty when it may go. Does not
  // consume rate budget.
  std::string check(const std::string& broker, const OrderSpec& spec) const;

  // Returns the client order id (of the first broker's order in dual mode). `done` receives the
  // outcome at the chosen (first) broker, or failed_locally with the refusal.
  std::string submit(const std::string& strategy, OrderSpec spec, SubmitCallback done = {});
  BracketIds submit_bracket(const std::string& strategy, BracketSpec bracket, SubmitCallback done = {});
  // By client order id; dual-run partners follow.
  void cancel(const std::string& client_order_id, SubmitCallback done = {});
  void replace(const std::string& client_order_id, const OrderSpec& updated, SubmitCallback done = {});

  // The broker a failover route sends to now (its last choice), or the first of a dual route.
  std::string current_broker(const std::string& strategy) const;
  // Dual-run pairs of an earlier run whose first order is still open, read back from the
  // journal's "dual_pair" events, so that a cancel or replace of it still reaches its twin. Call
  // after the OrderManager's recovery, before strategies start. Returns how many.
  std::size_t restore_pairs();
  // Dual-run partner of an order (the second broker's client order id), if any.
  std::optional<std::string> partner(const std::string& client_order_id) const;
  const std::vector<RouteSwitch>& switches() const { return switches_; }
  std::size_t refused() const { return refused_; }
  OrderManager& orders() { return orders_; }
  const std::map<std::string, Instrument>& instruments() const { return instruments_; }

 private:
  // Per-broker token bucket for order requests.
  struct Budget {
    double tokens = 0;
    Timestamp refilled_at = 0;
    bool started = false;
  };
  // What the router keeps per broker, found once when a route names it (not by name per order).
  struct BrokerLane {
    const std::string* name;  // the key of lanes_
    Budget budget;
    BrokerHealth::View health;
  };
  struct RouteState {
    RouteConfig config;
    std::vector<BrokerLane*> lanes;  // one per config.brokers, same order
    std::size_t active = 0;  // index into config.brokers
    bool hold_stops = false;  // protection `local`
  };
  RouteState& state(const std::string& strategy);
  // choose() without copying the name: the lane of the broker the order goes to.
  BrokerLane* choose_broker(RouteState& r, const std::string& strategy);
  bool take_budget(Budget& b);
  std::string refusal(BrokerLane& lane, const OrderSpec& spec);
  std::string rate_refusal(const std::string& broker) const;
  std::string refuse(const std::string& broker, OrderSpec spec, const std::string& why, const SubmitCallback& done);
  // A refused bracket: its three legs recorded as refused, counted as one refused request.
  BracketIds refuse_bracket(const std::string& broker, const BracketSpec& b, const std::string& why,
                            const SubmitCallback& done);
  // Every answer (or lack of one) to a real request is evidence of the broker's health. Told by
  // the OrderManager for each order this router sends, before the strategy's own callback.
  void submit_answered(const std::string& broker, Timestamp sent_at, const CommandResult& r) override;
  // `hold`: protection `local`, a stop held by Backstop (OrderManager::hold) instead of sent.
  std::string send_one(BrokerLane& lane, OrderSpec&& spec, SubmitCallback&& done, bool hold = false);
  BracketIds send_bracket(BrokerLane& lane, BracketSpec b, SubmitCallback done);
  std::string why_none(const RouteState& r) const;
  void record_pair(const std::string& strategy, const std::vector<std::pair<std::string, std::string>>& sides);

  EventLoop& loop_;
  OrderManager& orders_;
  BrokerHealth& health_;
  Journal& journal_;
  RiskConfig risk_;
  std::map<std::string, Instrument> instruments_;
  std::map<std::string, RouteState> routes_;
  std::map<std::string, Price> reference_prices_;  // by symbol: last trade, else mid
  std::map<std::string, BrokerLane> lanes_;  // nodes never move: routes point at them
  std::map<std::string, std::string> partners_;  // first broker's coid -> second broker's coid
  std::vector<RouteSwitch> switches_;
  std::size_t refused_ = 0;
};

}  // namespace backstop
