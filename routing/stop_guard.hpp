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
// flatten with a market order, exactly once), `local` (Backstop holds the stop itself: an order
// in state `held`, watched here and released as a market order when it triggers), `mirror`
// (an offsetting stop at the route's second venue while the primary stop is unverified or its
// broker is down; removed when the primary is verified or the position is flat; a double fill of
// primary and mirror is detected and undone with one market order at the mirror venue).
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/lifetime.hpp"
#include "routing/order_manager.hpp"
#include "routing/stop_lint.hpp"
#include "routing/trigger_watchdog.hpp"

namespace backstop {


struct StopGuardSettings {
  // The policy of a stop whose strategy (OrderSpec::strategy) has no entry in strategy_policies.
  ProtectionPolicy policy = ProtectionPolicy::verify;
  // Each strategy's own policy (config strategies[].protection), by the name its orders carry.
  std::map<std::string, ProtectionPolicy> strategy_policies;
  Duration verify_deadline{std::chrono::seconds(5)};
  Duration verify_retry{std::chrono::milliseconds(500)};
  Duration reverify_interval{std::chrono::seconds(60)};
  Duration ghost_grace{std::chrono::seconds(2)};
  TriggerMethod trigger = TriggerMethod::last;
  StopLintPolicy lint;
  // Quotes from this source feed the watchdog; empty = any source. A source other than the
  // broker holding the stop is preferred: a broker that loses a stop may also lose its ticks.
  std::string market_data_source;
  // `mirror` policy: where a stop's mirror goes. A stop of a strategy listed in strategy_routes
  // (its route's brokers, in order) is mirrored at the first other broker of that route: the
  // second for a stop at the first, the first for a stop at the second after a failover. A stop
  // of any other strategy (or of none) is mirrored by primary broker through mirror_brokers; a
  // broker with no entry there gets no mirrors.
  std::map<std::string, std::vector<std::string>> strategy_routes;
  std::map<std::string, std::string> mirror_brokers;
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
  // What the watchdog judges it by: a replace changes the order's price or quantity, and the
  // stop is then watched again at the new ones (and read back at once).
  std::optional<Price> watched_stop_price;
  std::int64_t watched_quantity = 0;
  bool ghost = false;
  // Its broker came back after being down: the stop must read back again before it is trusted
  // (a broker that was unreachable may have lost it); mirrors stay until then.
  bool needs_reconfirm = false;
};

// One mirror stop placed for a primary stop (each placement is a new order and a new record).
struct MirrorStop {
  std::string primary;        // the primary stop's client order id
  std::string primary_broker;
  std::string mirror;         // the mirror stop's client order id
  std::string mirror_broker;
  std::string placed_because; // "verification pending", "broker down", ...
  std::string removed_because;  // empty while it should stay
  bool removal_requested = false;
  bool replace_in_flight = false;  // moving it to its primary's new price or quantity
  bool fired = false;          // the mirror filled (the primary's job done at the mirror venue)
  bool primary_cancel_done = false;  // after the mirror fired, the primary was cancelled
  std::string restore_order;   // the market order that undid a double fill, if any
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
  ~StopGuard();
  StopGuard(const StopGuard&) = delete;
  StopGuard& operator=(const StopGuard&) = delete;

  // Market data from any feed.
  void on_quote(const Quote& q);
  // Lint a stop for a broker before it is sent (uses the last quote seen for the market check).
  std::vector<LintFinding> lint(const OrderSpec& stop, const std::string& broker) const;
  // Re-verify every working stop at a broker (after a reconnect).
  void reverify(const std::string& broker);

  // `local` policy: a held order (OrderManager::hold, OrderState::held) is watched from the moment
  // it is held (or recovered as held), with the configured trigger method, and released
  // (OrderManager::release: the same order as a market order) on the first quote through it:
  // there is no broker stop to wait for, so no grace period, verification or ghost. The release
  // is journaled ("local_stop_fired") before the order is. A held order cancelled or replaced is
  // unwatched or watched at its new price.

  // Start-up, once, right after OrderManager::recover() has loaded the journal (its queries may
  // still be out) and before quotes flow; restore_from_journal() ends it. Recovery can take tens
  // of seconds (IBKR's paced queries, then reconciliation), and a held stop (protection `local`)
  // has no broker stop behind it: unwatched, price could go through it and back with nobody the
  // wiser. So held stops are watched from here on. But nothing new is sent before recovery has
  // resolved the journal's open orders (DESIGN.md: an exit released now could double one whose
  // outcome is still unknown), so a held stop crossed now is journaled
  // ("local_stop_crossed_during_recovery"), alerted, and released by restore_from_journal(),
  // even when price has come back since: a broker's stop would have triggered. A process killed
  // before that leaves the event to the next one, which releases the stop the same way.
  // Until restore_from_journal() the guard sends and cancels nothing (mirrors wait too), and
  // broker-held stops are taken up there (their brokers hold them meanwhile, and the restore
  // knows their crossings of before the restart, which a fresh watch would forget).
  void begin_recovery();
  // Held stops crossed since begin_recovery() and not yet sent (restore_from_journal() decides
  // them): what a start-up that gives up before then must tell its operator.
  const std::vector<std::string>& crossed_during_recovery() const { return crossed_during_recovery_; }

  // Start-up, once, after OrderManager::recover(). A killed process
  // leaves in the journal what it had seen of its stops but not finished; this takes it up again:
  //  - a crossing ("stop_crossed") of a stop that has not filled, been reported triggered, or been
  //    cancelled by us within its grace period since: the stop is held as crossed with its
  //    original time and price, so its ghost is declared at crossed_at + ghost_grace (at once if
  //    that has passed), through the same read-back as any expiry;
  //  - a declared ghost ("ghost_stop"): back into ghosts(). One the policy acted on ("guard_action",
  //    or its flatten order found in OrderManager's records) is never acted on again; one whose
  //    action the kill interrupted gets it now, once;
  //  - mirror stops ("mirror_placed", "mirror_removed", "mirror_fired",
  //    "mirror_double_fill_restored"): known again as mirrors of their primaries, so a live one is
  //    removed when its primary is verified, ended or flat (never left orphaned at the second
  //    venue), a fired one is judged for a double fill, and a double fill already undone is never
  //    undone twice. Under another policy than `mirror` now, live mirrors are cancelled;
  //  - every other recovered working stop is watched and verified again, and every held one
  //    watched (recovery loads orders without notifying anyone);
  //  - a held stop crossed while recovery ran ("local_stop_crossed_during_recovery", this
  //    process's or a killed one's) and still held at that price: released now, once; or, when
  //    the position it protected closed while Backstop was down, cancelled ("local_stop_not_sent"):
  //    sent, it would open a position the other way;
  //  - a held stop released ("local_stop_fired") whose order never reached the broker (the kill
  //    came between the durable release and the send; recovery found no such order there and
  //    failed it): its exit is sent again once, under a new id (resend_lost_local_exits).
  // Journals "stop_crossing_restored" per crossing, "ghost_stop_restored" per ghost it acted on
  // or whose stop still works, "local_stop_resent" per lost exit, and a summary
  // "stop_guard_restored" when anything was restored.
  void restore_from_journal();

  // Router health: the broker is unreachable (true) or back (false). Under `mirror`, stops of a
  // broker going down get mirrors; coming back up with verified stops, the mirrors are removed.
  void set_broker_down(const std::string& broker, bool down);
  bool broker_down(const std::string& broker) const { return down_brokers_.count(broker) != 0; }
  const std::vector<MirrorStop>& mirrors() const { return mirrors_; }
  // True when `coid` is a mirror stop placed by this guard.
  bool is_mirror(const std::string& coid) const { return mirror_index_.count(coid) != 0; }

  void on_ghost(GhostListener l) { ghost_listeners_.push_back(std::move(l)); }
  // Every change of a stop's verification outcome (verified, mismatch, missing, timeout).
  void on_verification(std::function<void(const StopRecord&)> l) { verification_listeners_.push_back(std::move(l)); }
  const std::map<std::string, StopRecord>& stops() const { return stops_; }
  const std::vector<GhostStop>& ghosts() const { return ghosts_; }
  const StopGuardSettings& settings() const { return settings_; }
  // The policy that protects this stop: its strategy's, else the default.
  ProtectionPolicy policy_of(const OrderSpec& stop) const;
  // The same by client order id, mirrors included: a mirror stop is under its primary's policy.
  ProtectionPolicy policy_of(const std::string& client_order_id) const;

 private:
  // The broker that holds this stop's mirror (StopGuardSettings::strategy_routes), or null.
  const std::string* mirror_broker_for(const OrderRecord& stop) const;
  bool any_policy_is(ProtectionPolicy p) const;
  // Every callback the guard hands out (loop timers, order-manager listeners and answers) runs
  // only while the guard exists: the loop and the OrderManager outlive it in tests and at
  // shutdown, and AddressSanitizer found a verification timer firing into a destroyed guard.
  template <typename F>
  auto while_alive(F f) const {
    return lifetime_.while_alive(std::move(f));
  }
  Lifetime lifetime_;
  void on_order(const OrderRecord& o);
  void start_verification(const OrderRecord& o);
  void verify_once(const std::string& coid, Timestamp deadline, bool periodic);
  void finish_verification(const std::string& coid, Verification v, const std::string& detail);
  bool protecting(const OrderRecord& stop) const;  // active: no parent, or its parent filled
  void watch(const OrderRecord& stop);
  void watch_held(const OrderRecord& stop);
  void unwatch(const std::string& coid);
  void schedule_expiry();
  void declare_ghost(const CrossedStop& c);
  void guard_flatten(std::size_t ghost_index, int attempt);
  // A held order's stop was crossed: release it (`held`: its record, found by the caller, in
  // state held; the watchdog no longer watches it). `during_recovery`: the crossing was seen
  // while recovery ran (begin_recovery) and is released only now; said in the journal and the
  // reason.
  void fire_local(const CrossedStop& c, const OrderRecord& held, bool during_recovery = false);
  // begin_recovery() to restore_from_journal(): a held stop crossed is journaled and alerted,
  // not released.
  void note_crossed_during_recovery(const CrossedStop& c);
  // A local stop's exit (the released stop itself, attempt 0, or one sent again) ended without
  // a fill: refused by the broker, failed before it left, or an unknown outcome the broker then
  // proved it never had. The position the stop protected has no protection at all, so it is
  // logged as an error, journaled ("local_stop_release_failed", naming the attempt and whether
  // another follows), and sent again after retry_delay(attempt), for the exposure left, up to
  // kMaxLocalExitRetries times; beyond that only an exit that never reached the broker (failed,
  // not rejected: the broker unreachable, say) is sent again, every 8 s, until
  // kLocalExitRetryWindow has passed since the stop fired: repeating a request the broker never
  // saw costs nothing, and an outage often outlasts five quick tries. Seen through order updates
  // (on_order), so an outcome decided late is caught too. Once per exit.
  void local_exit_failed(const OrderRecord& exit, const std::string& stop, int attempt);
  static Duration retry_delay(int attempt);  // 1, 2, 4, 8, 8 s
  // Sends a stop's exit again (attempt >= 1) for the exposure left at its broker, under a new
  // id, journaling "local_stop_resent" first; nothing when there is no exposure left. Each
  // attempt goes out at most once (a retry timer and a restart's resume may both ask for it).
  void send_local_exit_again(const std::string& stop, int attempt, const std::string& why);
  void schedule_reverify();
  // Mirror policy: brings the mirror of one primary stop in line with what it needs now.
  void evaluate_mirror(const std::string& primary);
  void evaluate_all_mirrors();
  std::string mirror_need(const OrderRecord& primary) const;  // why a mirror is needed, or ""
  void place_mirror(const OrderRecord& primary, const std::string& mirror_broker, const std::string& why);
  void remove_mirror(MirrorStop& m, const std::string& why);
  // The primary was replaced (moved, resized) while its mirror stands: the mirror is replaced to
  // match, or it would protect at a level the strategy has left.
  void follow_primary(std::size_t mirror_index, const OrderRecord& primary, const OrderRecord& mirror);
  void on_mirror_fired(MirrorStop& m);
  // restore_from_journal(): rebuilds mirrors_ from the mirror events, in journal order; returns
  // how many restored mirrors still work at their broker.
  std::size_t restore_mirrors(const std::vector<JournalEvent>& events);
  // restore_from_journal(): each released held stop's latest exit that ended unfilled with no
  // failure journaled (mostly: the kill came between its durable record and its send, and
  // recovery found the broker never had it), or whose retry was due when the process died, sent
  // again (at most the exposure left at that broker); returns how many were judged.
  std::size_t resend_lost_local_exits();

  EventLoop& loop_;
  OrderManager& orders_;
  Journal& journal_;
  StopGuardSettings settings_;
  std::map<std::string, Instrument> instruments_;
  TriggerWatchdog watchdog_;
  std::map<std::string, Quote> last_quotes_;
  std::map<std::string, StopRecord> stops_;
  std::set<std::string> acted_;  // ghosts the guard has acted on: exactly once
  std::vector<GhostStop> ghosts_;
  std::vector<GhostListener> ghost_listeners_;
  std::vector<std::function<void(const StopRecord&)>> verification_listeners_;
  std::vector<CrossedStop> scratch_;  // reused per tick: no allocation on the hot path
  // fire_local()'s texts (the event's detail, the release's reason), reused: their capacity stays.
  std::string fired_detail_;
  std::string fired_reason_;
  EventLoop::TimerId expiry_timer_ = 0;
  Timestamp expiry_at_ = 0;
  bool reverify_scheduled_ = false;
  bool journal_restored_ = false;          // restore_from_journal() ran
  bool recovering_ = false;                // begin_recovery() ran, restore_from_journal() not yet
  std::vector<std::string> crossed_during_recovery_;
  static constexpr int kMaxLocalExitRetries = 5;
  static constexpr Duration kLocalExitRetryWindow{std::chrono::minutes(10)};
  struct LocalExit {
    std::string stop;
    int attempt = 0;
  };
  std::map<std::string, LocalExit> local_exits_;   // exit sent again -> its stop and attempt
  std::set<std::string> failed_exits_;             // exits whose failure was handled
  std::map<std::string, int> exit_attempts_sent_;  // stop -> the latest attempt sent again
  std::set<std::string> down_brokers_;
  std::vector<MirrorStop> mirrors_;                      // every mirror ever placed
  std::map<std::string, std::size_t> active_mirror_;     // primary coid -> index of its live mirror
  std::map<std::string, std::size_t> mirror_index_;      // mirror coid -> index
  std::set<std::string> restored_;                       // primaries whose double fill was undone
  std::map<std::string, int> mirror_failures_;           // primary -> mirrors refused or never sent
  static constexpr int kMaxMirrorFailures = 3;
};

}  // namespace backstop
