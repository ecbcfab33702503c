#pragma once
// The stop guard: a broker that acknowledged a stop has not proved the stop works.
// For every protective stop it
//  1. lints it before send (stop_lint.hpp),
//  2. verifies acceptance: reads it back through an independent query within a deadline and
//     compares status and every field with what was sent; re-verifies periodically and after
//     every reconnect,
//  3. watches the trigger (trigger_watchdog.hpp) and declares a ghost stop when price went
//     through it and no fill or trigger arrived within the grace period,
// and applies the protection policy: `verify` (alert only), `guard` (cancel the broker stop and
// flatten with a market order, exactly once), `local` (Backstop holds the stop itself).
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "routing/order_manager.hpp"
#include "routing/stop_lint.hpp"
#include "routing/trigger_watchdog.hpp"

namespace backstop {


struct StopGuardSettings {
  ProtectionPolicy policy = ProtectionPolicy::verify;
  Duration verify_deadline{std::chrono::seconds(5)};
  Duration verify_retry{std::chrono::milliseconds(500)};
  Duration reverify_interval{std::chrono::seconds(60)};
  Duration ghost_grace{std::chrono::seconds(2)};
  TriggerMethod trigger = TriggerMethod::last;
  StopLintPolicy lint;
  // Quotes from this source feed the watchdog; empty = any source. A source other than the
  // broker holding the stop is preferred: a broker that loses a stop may also lose its ticks.
  std::string market_data_source;
};

enum class Verification { pending, verified, mismatch, missing, timeout };
const char* to_string(Verification v);

struct StopRecord {
  std::string client_order_id;
  std::string broker;
  Verification verification = Verification::pending;
  std::string detail;  // mismatching field, or what was missing
  Timestamp verified_at = 0;
  int verifications = 0;  // how many read-backs succeeded
  bool verification_started = false;
  bool watching = false;
  bool ghost = false;
};

struct GhostStop {
  std::string client_order_id;
  std::string broker;
  std::string symbol;
  Side side = Side::sell;
  Price stop_price;
  Price crossing_price;
  Timestamp crossed_at = 0;
  Timestamp declared_at = 0;
  std::string source;
  std::string action;          // what the policy did
  std::string flatten_order;   // the market order sent by `guard`, if any
};

class StopGuard {
 public:
  using GhostListener = std::function<void(const GhostStop&)>;

  StopGuard(EventLoop& loop, OrderManager& orders, Journal& journal, StopGuardSettings settings,
            std::map<std::string, Instrument> instruments);

  // Market data from any feed.
  void on_quote(const Quote& q);
  // Lint a stop for a broker before it is sent (uses the last quote seen for the market check).
  std::vector<LintFinding> lint(const OrderSpec& stop, const std::string& broker) const;
  // Re-verify every working stop at a broker (after a reconnect).
  void reverify(const std::string& broker);

  // `local` policy: Backstop holds the stop and sends a market order when it triggers. The arm
  // is journaled (durably) so it survives a restart; restore_local_stops() re-arms them.
  void arm_local_stop(const std::string& broker, OrderSpec stop);
  void disarm_local_stop(const std::string& client_order_id);
  void restore_local_stops();

  void on_ghost(GhostListener l) { ghost_listeners_.push_back(std::move(l)); }
  const std::map<std::string, StopRecord>& stops() const { return stops_; }
  const std::vector<GhostStop>& ghosts() const { return ghosts_; }
  const StopGuardSettings& settings() const { return settings_; }

 private:
  struct LocalStop {
    std::string broker;
    OrderSpec spec;
  };
  void on_order(const OrderRecord& o);
  void start_verification(const OrderRecord& o);
  void verify_once(const std::string& coid, Timestamp deadline, bool periodic);
  void finish_verification(const std::string& coid, Verification v, const std::string& detail);
  bool protecting(const OrderRecord& stop) const;  // active: no parent, or its parent filled
  void watch(const OrderRecord& stop);
  void unwatch(const std::string& coid);
  void schedule_expiry();
  void declare_ghost(const CrossedStop& c);
  void guard_flatten(std::size_t ghost_index, int attempt);
  void fire_local(const CrossedStop& c);
  void schedule_reverify();

  EventLoop& loop_;
  OrderManager& orders_;
  Journal& journal_;
  StopGuardSettings settings_;
  std::map<std::string, Instrument> instruments_;
  TriggerWatchdog watchdog_;
  std::map<std::string, Quote> last_quotes_;
  std::map<std::string, StopRecord> stops_;
  std::map<std::string, LocalStop> local_stops_;
  std::set<std::string> acted_;  // ghosts the guard has acted on: exactly once
  std::vector<GhostStop> ghosts_;
  std::vector<GhostListener> ghost_listeners_;
  std::vector<CrossedStop> scratch_;  // reused per tick: no allocation on the hot path
  EventLoop::TimerId expiry_timer_ = 0;
  Timestamp expiry_at_ = 0;
  bool reverify_scheduled_ = false;
  std::uint64_t local_stop_sequence_ = 0;  // local stop ids: never sent to a broker
};

}  // namespace backstop
