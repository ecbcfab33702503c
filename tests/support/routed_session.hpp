#pragma once
// A routing core on both emulated brokers through the real adapters: journal, OrderManager,
// BrokerHealth (with an optional HealthMonitor) and Router, built and torn down in the right
// order. Shared by the multi-broker tests and the failover benchmark; each adds its own routes.
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "brokers/net/loop_io.hpp"
#include "emulated_brokers.hpp"
#include "routing/health_monitor.hpp"
#include "routing/router.hpp"

namespace backstop::testing_support {

struct RoutedSessionOptions {
  std::filesystem::path dir;         // journal and TradeStation refresh token file
  std::string id_prefix = "R";       // client order id prefix: unique per session
  std::string ts_url, ib_url;        // the emulator's own root URL or a FaultProxy's
  AdapterTimeouts timeouts;
  OrderManagerOptions orders;
  BrokerHealthSettings health;
  std::optional<HealthMonitorSettings> monitor;  // none: no periodic health checks
  double max_orders_per_second = 1000;
};

class RoutedSession {
 public:
  // Builds everything; starts nothing. Routes take the instrument "AAPL".
  RoutedSession(const EmulatedBrokers& brokers, EventLoop& loop, RoutedSessionOptions options);
  // Stops the monitor and both adapters and lets their last answers land (30 ms of loop). Call it
  // while everything listening to the session (strategy runners, callbacks) is still alive;
  // the destructor calls it if nobody did.
  void stop();
  ~RoutedSession() { stop(); }
  RoutedSession(const RoutedSession&) = delete;
  RoutedSession& operator=(const RoutedSession&) = delete;

  // Starts both adapters and waits for both to connect; then starts the monitor, if any.
  bool connect(Duration limit);
  // Runs the loop until `done` or `limit` (real time: the loop runs on the system clock).
  bool run_until(const std::function<bool()>& done, Duration limit);
  void run_for(Duration d);

  EventLoop& loop;
  net::LoopIo loop_io;  // the adapters' REST on the loop's thread, as `backstop run` has it
  Journal journal;
  ClientOrderIdGenerator ids;
  OrderManager orders;
  std::unique_ptr<tradestation::TradeStationBroker> ts;
  std::unique_ptr<IbkrBroker> ib;
  BrokerHealth health;
  std::unique_ptr<HealthMonitor> monitor;
  Router router;

 private:
  bool stopped_ = false;
};

}  // namespace backstop::testing_support
