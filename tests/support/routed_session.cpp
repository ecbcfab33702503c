#include "routed_session.hpp"

#include <algorithm>

namespace backstop::testing_support {

using namespace std::chrono_literals;

namespace {
std::map<std::string, Instrument> aapl() {
  Instrument i;
  i.symbol = "AAPL";
  return {{"AAPL", i}};
}
RiskConfig risk(double orders_per_second) {
  RiskConfig r;
  r.max_orders_per_second = orders_per_second;
  return r;
}
}  // namespace

RoutedSession::RoutedSession(const EmulatedBrokers& brokers, EventLoop& l, RoutedSessionOptions o)
    : loop(l),
      loop_io(loop),
      journal((o.dir / "journal.db").string()),
      ids(o.id_prefix),
      orders(loop, journal, ids, o.orders),
      ts(brokers.tradestation_adapter(loop, o.ts_url, o.dir, o.timeouts, &loop_io)),
      ib(brokers.ibkr_adapter(loop, o.ib_url, o.timeouts, &loop_io)),
      health(loop, journal, o.health),
      monitor(o.monitor ? std::make_unique<HealthMonitor>(loop, health, *o.monitor) : nullptr),
      router(loop, orders, health, journal, risk(o.max_orders_per_second), aapl()) {
  orders.add_broker(*ts);
  orders.add_broker(*ib);
  if (monitor) {
    monitor->watch(*ts);
    monitor->watch(*ib);
  }
}

void RoutedSession::stop() {
  if (stopped_) return;
  stopped_ = true;
  if (monitor) monitor->stop();
  ts->stop();
  ib->stop();
  run_for(30ms);
}

bool RoutedSession::connect(Duration limit) {
  ts->start();
  ib->start();
  const bool connected = run_until([&] {
    return ts->health().connectivity == Connectivity::connected && ib->health().connectivity == Connectivity::connected;
  }, limit);
  if (monitor) monitor->start();
  return connected;
}

bool RoutedSession::run_until(const std::function<bool()>& done, Duration limit) {
  const Timestamp deadline = loop.now() + to_ns(limit);
  while (!done() && loop.now() < deadline) loop.run_until(std::min(deadline, loop.now() + to_ns(5ms)));
  return done();
}

void RoutedSession::run_for(Duration d) {
  const Timestamp end = loop.now() + to_ns(d);
  run_until([&] { return loop.now() >= end; }, d + 1s);
}

}  // namespace backstop::testing_support
