#pragma once
// The Strategy interface. A strategy names no broker: it asks its context for orders and the
// context (one broker, a failover route, a dual-run pair) decides where they go. The same
// strategy object runs on the simulated venue, on the emulators and on live brokers.
#include <string>
#include <vector>

#include "core/fill.hpp"
#include "core/instrument.hpp"
#include "core/lifecycle.hpp"
#include "core/market_data.hpp"
#include "core/order.hpp"

namespace backstop {

class StrategyContext {
 public:
  virtual ~StrategyContext() = default;
  virtual Timestamp now() const = 0;
  // Returns the client order id (assigned here if the spec has none).
  virtual std::string submit(OrderSpec order) = 0;
  virtual BracketIds submit_bracket(BracketSpec bracket) = 0;
  virtual void cancel(const std::string& client_order_id) = 0;
  virtual void replace(const std::string& client_order_id, const OrderSpec& updated) = 0;
  // Net position of this strategy's route in a symbol.
  virtual std::int64_t position(const std::string& symbol) const = 0;
  virtual const OrderRecord* order(const std::string& client_order_id) const = 0;
  virtual const Instrument* instrument(const std::string& symbol) const = 0;
};

class Strategy {
 public:
  virtual ~Strategy() = default;
  virtual const std::string& name() const = 0;
  // After a restart, before on_start: the orders this strategy sent in an earlier run that were
  // open when that run ended, as recovery left them (resolved against the broker: some filled or
  // ended while Backstop was down, and no update told the strategy so), and any open now; oldest
  // first. A strategy that keeps order ids in memory takes them up here, so that it does not send
  // a second entry, leave a filled entry without its exits, or leave an exit without its
  // one-cancels-other partner. Not called when there are none.
  virtual void on_resume(StrategyContext&, const std::vector<const OrderRecord*>& /*orders*/) {}
  virtual void on_start(StrategyContext&) {}
  virtual void on_quote(StrategyContext&, const Quote&) {}
  virtual void on_bar(StrategyContext&, const Bar&) {}
  virtual void on_order_update(StrategyContext&, const OrderRecord&) {}
  virtual void on_fill(StrategyContext&, const Fill&, const OrderRecord&) {}
  virtual void on_position(StrategyContext&, const Position&) {}
  virtual void on_stop(StrategyContext&) {}
};

}  // namespace backstop
