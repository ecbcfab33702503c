#pragma once
// Reconciliation: Backstop's record against each broker's, through the adapters' independent
// queries. Positions every 30 s and orders every 5 minutes by default, once at start-up before
// any new order, and at every stream reconnect. A divergence (position size, an order missing
// at the broker, an order unknown to Backstop, a fill the stream missed) is logged at once as a
// warning, journaled, and counted per broker. Nothing is auto-corrected except missed fills,
// which are applied: the broker's fill record is the truth.
#include <functional>
#include <map>
#include <string>

#include "core/lifetime.hpp"
#include "routing/order_manager.hpp"

namespace backstop {

struct ReconcilerSettings {
  Duration positions_interval{std::chrono::seconds(30)};
  Duration orders_interval{std::chrono::minutes(5)};
};

struct Divergence {
  Timestamp at = 0;
  std::string broker;
  std::string kind;  // position_size, missing_at_broker, unknown_to_backstop, missed_fill, stuck_order
  std::string client_order_id;
  std::string detail;
};

class Reconciler {
 public:
  Reconciler(EventLoop& loop, OrderManager& orders, Journal& journal, ReconcilerSettings settings = {});

  // Reconciles everything once now, then on the intervals. `ready` runs after the first pass:
  // the caller sends nothing new before it.
  void start(std::function<void()> ready = {});
  void stop();
  // A stream reconnected: its snapshot is a reconciliation input, and the broker is re-read.
  void on_reconnect(const std::string& broker) { reconcile_orders(broker, {}); }

  void reconcile_positions(const std::string& broker, std::function<void()> done);
  void reconcile_orders(const std::string& broker, std::function<void()> done);

  const std::vector<Divergence>& divergences() const { return divergences_; }
  std::size_t count(const std::string& broker, const std::string& kind = {}) const;

 private:
  void report(Divergence d);
  void schedule_positions();
  void schedule_orders();

  EventLoop& loop_;
  OrderManager& orders_;
  Journal& journal_;
  ReconcilerSettings settings_;
  std::vector<Divergence> divergences_;
  bool running_ = false;
  // Wraps the timers and the brokers' answers: a reconciler destroyed before they come does
  // nothing with them (the loop and the brokers may outlive it).
  Lifetime lifetime_;
};

}  // namespace backstop
