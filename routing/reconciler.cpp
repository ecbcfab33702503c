#include "routing/reconciler.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <set>

namespace backstop {

Reconciler::Reconciler(EventLoop& loop, OrderManager& orders, Journal& journal, ReconcilerSettings settings)
    : loop_(loop), orders_(orders), journal_(journal), settings_(settings) {}

void Reconciler::report(Divergence d) {
  spdlog::warn("divergence at {}: {} {} {}", d.broker, d.kind, d.client_order_id, d.detail);
  journal_.record_event({d.at, d.broker, "divergence", d.client_order_id,
                         nlohmann::json{{"kind", d.kind}, {"detail", d.detail}}.dump()});
  divergences_.push_back(std::move(d));
}

std::size_t Reconciler::count(const std::string& broker, const std::string& kind) const {
  std::size_t n = 0;
  for (const auto& d : divergences_) n += d.broker == broker && (kind.empty() || d.kind == kind);
  return n;
}

void Reconciler::start(std::function<void()> ready) {
  running_ = true;
  // Collect the brokers from the manager's orders and registrations.
  auto remaining = std::make_shared<int>(0);
  auto finish = [remaining, ready] {
    if (--*remaining == 0 && ready) ready();
  };
  std::set<std::string> brokers;
  for (const OrderRecord* o : orders_.orders()) brokers.insert(o->broker);
  for (const auto& name : orders_.broker_names()) brokers.insert(name);
  *remaining = static_cast<int>(brokers.size()) * 2 + 1;
  for (const auto& b : brokers) {
    if (!orders_.broker(b)) {
      finish();
      finish();
      continue;
    }
    reconcile_orders(b, finish);
    reconcile_positions(b, finish);
  }
  finish();
  schedule_positions();
  schedule_orders();
}

void Reconciler::stop() { running_ = false; }

void Reconciler::schedule_positions() {
  loop_.call_after(settings_.positions_interval, lifetime_.while_alive([this] {
    if (!running_) return;
    for (const auto& b : orders_.broker_names()) reconcile_positions(b, {});
    schedule_positions();
  }));
}

void Reconciler::schedule_orders() {
  loop_.call_after(settings_.orders_interval, lifetime_.while_alive([this] {
    if (!running_) return;
    for (const auto& b : orders_.broker_names()) reconcile_orders(b, {});
    schedule_orders();
  }));
}

void Reconciler::reconcile_positions(const std::string& broker, std::function<void()> done) {
  Broker* b = orders_.broker(broker);
  if (!b) {
    if (done) done();
    return;
  }
  b->list_positions(lifetime_.while_alive([this, broker, done](PositionsResult r) {
    if (r.outcome != Outcome::accepted) {
      spdlog::warn("reconcile positions at {}: query {}: {}", broker, to_string(r.outcome), r.message);
      if (done) done();
      return;
    }
    std::map<std::string, std::int64_t> theirs;
    for (const auto& p : r.positions) theirs[p.symbol] += p.quantity;
    std::map<std::string, std::int64_t> ours;
    for (const auto& [key, p] : orders_.positions())
      if (key.first == broker) ours[key.second] += p.quantity;
    std::set<std::string> symbols;
    for (const auto& [s, q] : theirs) symbols.insert(s);
    for (const auto& [s, q] : ours) symbols.insert(s);
    for (const auto& s : symbols) {
      const auto mine = ours[s], broker_says = theirs[s];
      if (mine != broker_says)
        report({loop_.now(), broker, "position_size", {},
                s + ": Backstop has " + std::to_string(mine) + ", broker reports " + std::to_string(broker_says)});
    }
    if (done) done();
  }));
}

void Reconciler::reconcile_orders(const std::string& broker, std::function<void()> done) {
  Broker* b = orders_.broker(broker);
  if (!b) {
    if (done) done();
    return;
  }
  const std::size_t fills_before = orders_.fills_recovered_by_query();
  // Repair first (fills the stream missed, states it did not deliver), then compare lists.
  orders_.resync(lifetime_.while_alive([this, broker, b, done, fills_before] {
    const std::size_t recovered = orders_.fills_recovered_by_query() - fills_before;
    if (recovered > 0)
      report({loop_.now(), broker, "missed_fill", {},
              std::to_string(recovered) + " fill(s) found by query that the stream did not deliver; applied"});
    for (const OrderRecord* o : orders_.stuck_orders())
      if (o->broker == broker)
        report({loop_.now(), broker, "stuck_order", o->spec.client_order_id,
                std::string("in ") + to_string(o->state) + " since " + format_timestamp(o->time_of(o->state))});
    b->list_open_orders(lifetime_.while_alive([this, broker, done](OrdersResult r) {
      if (r.outcome != Outcome::accepted) {
        if (done) done();
        return;
      }
      std::set<std::string> listed;
      for (const auto& bo : r.orders) {
        listed.insert(bo.broker_order_id);
        const OrderRecord* ours = orders_.find(bo.client_order_id);
        if (!ours) ours = orders_.find_by_broker_id(broker, bo.broker_order_id);
        if (!ours)
          report({loop_.now(), broker, "unknown_to_backstop", bo.client_order_id,
                  "broker order " + bo.broker_order_id + " (" + bo.broker_status + ") is not in Backstop's record"});
      }
      for (const OrderRecord* o : orders_.working_orders()) {
        if (o->broker != broker || o->broker_order_id.empty() || listed.count(o->broker_order_id)) continue;
        report({loop_.now(), broker, "missing_at_broker", o->spec.client_order_id,
                std::string("Backstop has it ") + to_string(o->state) + "; the broker's open orders do not list " +
                    o->broker_order_id});
      }
      if (done) done();
    }));
  }));
}

}  // namespace backstop
