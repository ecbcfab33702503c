#pragma once
// A trading session assembled from a Config: every broker (the simulated venue in process, or an
// adapter, optionally against its protocol emulator started here on the configured loopback
// port), the journal, OrderManager, BrokerHealth with its HealthMonitor, the Router with every
// route, the stop guard, the reconciler, and one StrategyRunner per strategy. `backstop demo`
// and `backstop run` are this session plus what they print or serve.
//
// Start-up order follows DESIGN.md: brokers connect, the journal's open orders are resolved with
// their brokers, every broker is reconciled, and only then do strategies start sending.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "apps/demo_brokers.hpp"
#include "config/config.hpp"
#include "routing/broker_health.hpp"
#include "routing/health_monitor.hpp"
#include "routing/order_manager.hpp"
#include "routing/reconciler.hpp"
#include "routing/router.hpp"
#include "routing/stop_guard.hpp"
#include "routing/strategy.hpp"
#include "routing/strategy_runner.hpp"

namespace backstop::net {
class LoopIo;
}  // namespace backstop::net

namespace backstop {

struct SessionOptions {
  std::string journal_path;                 // required
  std::optional<std::uint64_t> seed;        // simulated venues and emulators; default: the config's
  std::optional<std::string> fault_profile; // simulated venues and emulators; default: the config's
  // Start each loopback adapter's protocol emulator in process (demo); otherwise the adapters
  // talk to whatever serves their base_url.
  bool start_emulators = true;
  Duration connect_timeout{std::chrono::seconds(15)};
  // Resolving the journal's open orders and the first reconciliation: a broker with paced
  // queries (IBKR: live orders and trades once per 5 s) needs tens of seconds for a few unknowns.
  Duration recovery_timeout{std::chrono::seconds(120)};
  // Asked while start() waits (connecting, recovering): true ends the wait, and start() returns
  // false. `backstop run` sets it from SIGINT/SIGTERM, which otherwise would wait out start-up
  // (up to connect_timeout + recovery_timeout) before the process stopped.
  std::function<bool()> stop_requested;
  // Each step of wind_down() (the cancelled orders ending, each read-back from the brokers, the
  // flatten orders ending, the brokers' positions) waits at most this long for its answers.
  Duration wind_down_step_timeout{std::chrono::seconds(5)};
};

// What wind_down() could not settle: orders it cancelled or sent that had not ended, and
// positions still open by Backstop's record or by a broker's own answer (or not answered).
struct WindDownResult {
  std::vector<std::string> unsettled_orders;  // "<coid> at <broker>: <state>"
  std::vector<std::string> open_positions;    // "<broker> <symbol> <qty> (...)"
  bool settled() const { return unsettled_orders.empty() && open_positions.empty(); }
  // One line: "orders not ended: ...; positions open: ..." (empty when settled).
  std::string describe() const;
};

class Session {
 public:
  // Made on the thread that then runs `loop` (config `runtime.loop_cpu` pins that thread).
  Session(Config config, EventLoop& loop, Clock& clock, SessionOptions options);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Connects, recovers, reconciles, starts health checks and strategies. Runs the loop while
  // waiting; throws Error when a broker does not connect within the timeout. Returns false when
  // options().stop_requested said so before it was done: nothing new has been sent, what
  // recovery resolved is journaled, and the session is to be stopped.
  bool start();
  // Stops the strategies, lets the guard finish what it started, cancels working and held
  // orders, flattens what is open, and reads everything back. Each step waits for its orders to
  // end (or options().wind_down_step_timeout), not a set time: a slow broker or journal disk
  // must not leave the flatten unsent when the process exits. A stop request does not cut it
  // short (winding down is what the stop asked for). Says what it could not settle.
  WindDownResult wind_down();
  // Stops brokers, checks and reconciliation; flushes the journal.
  void stop();
  void run_for(Duration d);
  // Every quote from every broker, after the router, guard and strategies have seen it (the
  // local API keeps the last one per symbol).
  void on_quote(std::function<void(const Quote&)> l) { quote_listeners_.push_back(std::move(l)); }

  const Config& config() const { return config_; }
  const SessionOptions& options() const { return options_; }
  EventLoop& loop() { return loop_; }
  Journal& journal() { return *journal_; }
  OrderManager& orders() { return *orders_; }
  BrokerHealth& health() { return *health_; }
  HealthMonitor& health_monitor() { return *monitor_; }
  Router& router() { return *router_; }
  StopGuard& guard() { return *guard_; }
  Reconciler& reconciler() { return *reconciler_; }
  const std::vector<std::unique_ptr<DemoBroker>>& brokers() const { return brokers_; }
  DemoBroker* broker(const std::string& name) const;
  std::uint64_t seed() const { return seed_; }
  const std::string& fault_profile_name() const { return fault_profile_name_; }
  Timestamp started_at() const { return started_at_; }
  // The final positions per broker, as each broker's own query reports them (after wind_down).
  const std::map<std::string, PositionsResult>& final_positions() const { return final_positions_; }

 private:
  // Apply config `runtime` (busy polling, thread placement); throw ConfigError naming the key if
  // they cannot. The loop's thread is placed before the journal is opened, its writer after.
  void place_loop_thread();
  void place_journal_writer();
  // Quotes of every configured instrument from every broker, from the start of recovery on.
  void subscribe_quotes();
  // Runs the loop until `done`, the timeout, or options().stop_requested.
  void wait_until(const std::function<bool()>& done, Duration timeout);
  // Runs the loop until `done` or options().wind_down_step_timeout, stop request or not.
  void settle(const std::function<bool()>& done);
  // Every open order and the executions read back from the brokers (OrderManager::resync), waited
  // for as settle() waits.
  void read_back_from_brokers();
  bool stop_requested() const;

  Config config_;
  EventLoop& loop_;
  Clock& clock_;
  SessionOptions options_;
  std::uint64_t seed_ = 7;
  std::string fault_profile_name_;
  Timestamp started_at_ = 0;
  // The adapters' REST requests run on the loop's thread (DESIGN.md, "Runtime shape"); it
  // outlives every broker.
  std::unique_ptr<net::LoopIo> loop_io_;
  std::unique_ptr<Journal> journal_;
  std::unique_ptr<ClientOrderIdGenerator> ids_;
  std::unique_ptr<OrderManager> orders_;
  std::vector<std::unique_ptr<DemoBroker>> brokers_;
  std::unique_ptr<BrokerHealth> health_;
  std::unique_ptr<HealthMonitor> monitor_;
  std::unique_ptr<Router> router_;
  std::unique_ptr<StopGuard> guard_;
  std::unique_ptr<Reconciler> reconciler_;
  std::vector<std::unique_ptr<Strategy>> strategies_;
  std::vector<std::unique_ptr<StrategyRunner>> runners_;
  std::map<std::string, PositionsResult> final_positions_;
  std::vector<std::function<void(const Quote&)>> quote_listeners_;
  bool started_ = false;
  bool stopped_ = false;
};

}  // namespace backstop
