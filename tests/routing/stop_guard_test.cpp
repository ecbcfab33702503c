#include "routing/stop_guard.hpp"

#include <gtest/gtest.h>

#include <optional>

#include <functional>
#include <nlohmann/json.hpp>

#include "routing/reconciler.hpp"
#include "sim_harness.hpp"

using namespace backstop;
using namespace backstop::testing_support;
using namespace std::chrono_literals;

namespace {

std::vector<std::string> prices(double from, double to, double step) {
  std::vector<std::string> out;
  for (double p = from; step < 0 ? p >= to - 1e-9 : p <= to + 1e-9; p += step) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f", p);
    out.push_back(buf);
  }
  return out;
}

FaultProfile ghosts_only() {
  FaultProfile p;
  p.ghost_stop_rate = 1.0;  // the venue lists every stop as working and never triggers it
  return p;
}

// 30 ticks at 100.00, then down a cent a tick to 99.00: a 99.50 stop is crossed about 5 s in.
std::vector<std::string> flat_then_down_to_99() {
  std::vector<std::string> path(30, "100.00");
  const auto down = prices(99.99, 99.00, -0.01);
  path.insert(path.end(), down.begin(), down.end());
  return path;
}

// 30 ticks at 100.00, then down a cent a tick to 99.30 (about 5 s in), held there.
std::vector<std::string> flat_then_down_to_99_30() {
  std::vector<std::string> path(30, "100.00");
  const auto down = prices(99.99, 99.30, -0.01);
  path.insert(path.end(), down.begin(), down.end());
  return path;
}

StopGuardSettings settings(ProtectionPolicy policy) {
  StopGuardSettings s;
  s.policy = policy;
  s.ghost_grace = 2s;
  s.verify_deadline = 1s;
  return s;
}

// Buys `qty`, waits for the fill, then places a GTC sell stop; returns the stop's id.
template <typename Session>
std::string long_with_stop(Session& s, std::int64_t qty, const char* stop_price) {
  s.orders.submit("sim", market_order("AAPL", Side::buy, qty));
  s.run_for(300ms);
  s.orders.resync();
  s.run_for(100ms);
  const auto id = s.orders.submit("sim", stop_order("AAPL", Side::sell, qty, Price::parse(stop_price)));
  s.run_for(300ms);
  return id;
}

}  // namespace

TEST(StopGuard, EveryCrossedGhostStopIsDeclaredWithinGracePlusOneTick) {
  FaultProfile p;
  p.ghost_stop_rate = 1.0;
  auto path = prices(100.00, 100.00, 1);
  for (int i = 0; i < 20; ++i) path.push_back("100.00");
  const auto down = prices(99.99, 98.00, -0.01);
  path.insert(path.end(), down.begin(), down.end());
  SimSession s(p, path);
  StopGuard guard(s.loop, s.orders, s.journal, settings(ProtectionPolicy::verify), {{"AAPL", s.instrument}});
  s.sim.subscribe_quotes({"AAPL"}, [&](const Quote& q) { guard.on_quote(q); });
  s.sim.start();
  s.run_for(200ms);
  std::vector<std::string> stops;
  for (const char* px : {"99.90", "99.50", "99.00", "98.50"}) {
    s.orders.submit("sim", market_order("AAPL", Side::buy, 10));
    s.run_for(50ms);
    stops.push_back(s.orders.submit("sim", stop_order("AAPL", Side::sell, 10, Price::parse(px))));
    s.run_for(50ms);
  }
  s.run_for(30s);
  EXPECT_EQ(s.faults.count("ghost_stop_crossed"), 4u);
  ASSERT_EQ(guard.ghosts().size(), 4u);
  for (const auto& g : guard.ghosts()) {
    EXPECT_LE(g.declared_at - g.crossed_at, to_ns(2s + 100ms)) << g.client_order_id;
    EXPECT_GE(g.declared_at - g.crossed_at, to_ns(2s)) << g.client_order_id;
    EXPECT_LE(g.crossing_price, g.stop_price);
  }
  // Verification passed for each: the ghost is listed as working with the right fields.
  for (const auto& id : stops) EXPECT_EQ(guard.stops().at(id).verification, Verification::verified) << id;
  s.journal.flush();
  EXPECT_EQ(s.journal.events("ghost_stop").size(), 4u);
  EXPECT_EQ(s.orders.position("sim", "AAPL"), 40) << "policy verify never acts";
}

TEST(StopGuard, GuardFlattensEachGhostExactlyOnce) {
  SimSession s(ghosts_only(), flat_then_down_to_99());
  StopGuard guard(s.loop, s.orders, s.journal, settings(ProtectionPolicy::guard), {{"AAPL", s.instrument}});
  s.sim.subscribe_quotes({"AAPL"}, [&](const Quote& q) { guard.on_quote(q); });
  s.sim.start();
  s.run_for(200ms);
  const auto stop = long_with_stop(s, 100, "99.50");
  s.run_for(30s);
  ASSERT_EQ(guard.ghosts().size(), 1u);
  const auto& g = guard.ghosts()[0];
  EXPECT_EQ(g.client_order_id, stop);
  EXPECT_FALSE(g.flatten_order.empty()) << g.action;
  EXPECT_EQ(s.orders.find(stop)->state, OrderState::cancelled);
  EXPECT_EQ(s.orders.find(g.flatten_order)->state, OrderState::filled);
  EXPECT_EQ(s.orders.position("sim", "AAPL"), 0);
  ASSERT_TRUE(s.venue.positions().empty()) << "flat at the venue too";
  int market_sells = 0;
  for (const auto& o : s.venue.orders()) market_sells += o.type == OrderType::market && o.side == Side::sell;
  EXPECT_EQ(market_sells, 1) << "exactly one flatten";
  EXPECT_TRUE(s.venue.open_orders().empty()) << "no orphan orders";
}

// Each stop is under the policy of the strategy that sent it: two ghosts crossed together, one
// of a `guard` strategy (cancelled and flattened), one of a `verify` strategy (alerted only);
// the default policy (`mirror` here) applies to neither.
TEST(StopGuard, EachStopIsUnderItsOwnStrategysPolicy) {
  SimSession s(ghosts_only(), flat_then_down_to_99());
  StopGuardSettings gs = settings(ProtectionPolicy::mirror);
  gs.strategy_policies = {{"careful", ProtectionPolicy::guard}, {"watching", ProtectionPolicy::verify}};
  StopGuard guard(s.loop, s.orders, s.journal, gs, {{"AAPL", s.instrument}});
  s.sim.subscribe_quotes({"AAPL"}, [&](const Quote& q) { guard.on_quote(q); });
  s.sim.start();
  s.run_for(200ms);
  s.orders.submit("sim", market_order("AAPL", Side::buy, 30));
  s.run_for(300ms);
  auto stop_of = [&](const char* strategy, std::int64_t qty) {
    OrderSpec spec = stop_order("AAPL", Side::sell, qty, Price::parse("99.50"));
    spec.strategy = strategy;
    return s.orders.submit("sim", spec);
  };
  const auto guarded = stop_of("careful", 10);
  const auto watched = stop_of("watching", 20);
  s.run_for(30s);
  ASSERT_EQ(guard.ghosts().size(), 2u);
  EXPECT_EQ(guard.policy_of(s.orders.find(guarded)->spec), ProtectionPolicy::guard);
  EXPECT_EQ(guard.policy_of(s.orders.find(watched)->spec), ProtectionPolicy::verify);
  for (const auto& g : guard.ghosts()) {
    if (g.client_order_id == guarded) {
      EXPECT_FALSE(g.flatten_order.empty()) << g.action;
    } else {
      EXPECT_EQ(g.client_order_id, watched);
      EXPECT_EQ(g.action, "alerted (policy verify: no action)");
      EXPECT_TRUE(g.flatten_order.empty());
    }
  }
  EXPECT_EQ(s.orders.find(guarded)->state, OrderState::cancelled);
  EXPECT_EQ(s.orders.find(watched)->state, OrderState::submitted) << "verify leaves the broker's stop alone";
  EXPECT_EQ(s.orders.position("sim", "AAPL"), 20) << "the guarded 10 flattened, once";
  s.journal.flush();
  for (const auto& ev : s.journal.events("ghost_stop"))
    EXPECT_EQ(nlohmann::json::parse(ev.detail)["policy"], ev.client_order_id == guarded ? "guard" : "verify");
}

// A broker-held stop moved by a replace is judged at its new price: a crossing of the old price
// alone is no ghost (else `guard` would cancel a working stop and flatten the position), and a
// crossing of the new one is. Every stop here is a ghost (the venue never triggers it).
TEST(StopGuard, AReplacedStopIsWatchedAtItsNewPriceNotItsOld) {
  SimSession s(ghosts_only(), flat_then_down_to_99_30());
  StopGuard guard(s.loop, s.orders, s.journal, settings(ProtectionPolicy::guard), {{"AAPL", s.instrument}});
  s.sim.subscribe_quotes({"AAPL"}, [&](const Quote& q) { guard.on_quote(q); });
  s.sim.start();
  s.run_for(200ms);
  const auto lowered = long_with_stop(s, 10, "99.50");  // moved down to 99.20: never crossed
  const auto raised = long_with_stop(s, 20, "99.10");   // moved up to 99.40: crossed
  ASSERT_EQ(guard.stops().at(lowered).verification, Verification::verified);
  ASSERT_EQ(guard.stops().at(raised).verification, Verification::verified);
  auto move_to = [&](const std::string& coid, const char* price) {
    OrderSpec moved = s.orders.find(coid)->spec;
    moved.stop_price = Price::parse(price);
    std::optional<CommandResult> r;
    s.orders.replace(coid, moved, [&](CommandResult c) { r = std::move(c); });
    s.run_for(100ms);
    ASSERT_TRUE(r.has_value());
    ASSERT_EQ(r->outcome, Outcome::accepted) << r->message;
  };
  move_to(lowered, "99.20");
  move_to(raised, "99.40");
  s.run_for(30s);
  ASSERT_EQ(guard.ghosts().size(), 1u);
  EXPECT_EQ(guard.ghosts()[0].client_order_id, raised);
  EXPECT_EQ(guard.ghosts()[0].stop_price, Price::parse("99.40"));
  EXPECT_TRUE(is_working(s.orders.find(lowered)->state)) << to_string(s.orders.find(lowered)->state);
  EXPECT_EQ(s.orders.find(raised)->state, OrderState::cancelled);
  EXPECT_EQ(s.orders.position("sim", "AAPL"), 10) << "only the crossed stop's position was flattened";
  // Each read back at its new price after the replace.
  EXPECT_EQ(guard.stops().at(lowered).verification, Verification::verified) << guard.stops().at(lowered).detail;
  EXPECT_GE(guard.stops().at(lowered).verifications, 2);
}

// A replace whose answer is lost (outcome unknown) is read back: the broker holds the change, so
// the record takes it, and the guard watches the price the broker holds. Left at the old price,
// the guard would take the crossing of the old level for a ghost and flatten a protected position.
TEST(StopGuard, AReplaceOfUnknownOutcomeIsReadBackAndTheStopWatchedWhereTheBrokerHasIt) {
  SimSession s(ghosts_only(), flat_then_down_to_99_30());
  StopGuard guard(s.loop, s.orders, s.journal, settings(ProtectionPolicy::guard), {{"AAPL", s.instrument}});
  s.sim.subscribe_quotes({"AAPL"}, [&](const Quote& q) { guard.on_quote(q); });
  s.sim.start();
  s.run_for(200ms);
  const auto stop = long_with_stop(s, 10, "99.50");
  ASSERT_EQ(guard.stops().at(stop).verification, Verification::verified);

  FaultProfile lossy = ghosts_only();
  lossy.lost_reply_rate = 1.0;
  s.faults.set_profile(lossy);
  OrderSpec moved = s.orders.find(stop)->spec;
  moved.stop_price = Price::parse("99.20");
  std::optional<CommandResult> r;
  s.orders.replace(stop, moved, [&](CommandResult c) { r = std::move(c); });
  s.run_for(50ms);
  s.faults.set_profile(ghosts_only());  // the reply was lost; the read-backs are answered
  ASSERT_EQ(s.venue.find_by_client_id(stop)->stop_price, Price::parse("99.20")) << "the venue took the change";
  s.run_for(3s);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->outcome, Outcome::accepted) << r->message;
  EXPECT_EQ(s.orders.find(stop)->spec.stop_price, Price::parse("99.20"));

  s.run_for(30s);
  EXPECT_TRUE(guard.ghosts().empty()) << "price never reached the stop the broker holds";
  EXPECT_TRUE(is_working(s.orders.find(stop)->state)) << to_string(s.orders.find(stop)->state);
  EXPECT_EQ(s.orders.position("sim", "AAPL"), 10);
}

TEST(StopGuard, WorkingStopThatFiresIsNotAGhost) {
  std::vector<std::string> path(30, "100.00");
  const auto down = prices(99.99, 99.00, -0.01);
  path.insert(path.end(), down.begin(), down.end());
  SimSession s(FaultProfile{}, path);
  StopGuard guard(s.loop, s.orders, s.journal, settings(ProtectionPolicy::guard), {{"AAPL", s.instrument}});
  s.sim.subscribe_quotes({"AAPL"}, [&](const Quote& q) { guard.on_quote(q); });
  s.sim.start();
  s.run_for(200ms);
  const auto stop = long_with_stop(s, 100, "99.50");
  s.run_for(30s);
  EXPECT_TRUE(guard.ghosts().empty());
  EXPECT_EQ(s.orders.find(stop)->state, OrderState::filled);
  EXPECT_EQ(s.orders.position("sim", "AAPL"), 0);
}

TEST(StopGuard, StopWhoseFillEventWasDroppedIsNotAGhost) {
  FaultProfile p;
  p.drop_fill_event_rate = 1.0;
  p.drop_order_event_rate = 1.0;
  std::vector<std::string> path(30, "100.00");
  const auto down = prices(99.99, 99.00, -0.01);
  path.insert(path.end(), down.begin(), down.end());
  SimSession s(p, path);
  StopGuard guard(s.loop, s.orders, s.journal, settings(ProtectionPolicy::guard), {{"AAPL", s.instrument}});
  s.sim.subscribe_quotes({"AAPL"}, [&](const Quote& q) { guard.on_quote(q); });
  s.sim.start();
  s.run_for(200ms);
  const auto stop = long_with_stop(s, 100, "99.50");
  s.run_for(30s);
  EXPECT_TRUE(guard.ghosts().empty()) << "the read-back found the fill the stream lost";
  EXPECT_EQ(s.orders.find(stop)->state, OrderState::filled);
  EXPECT_EQ(s.orders.position("sim", "AAPL"), 0);
}

// Protection `local`: the stop is an order held by Backstop (OrderManager::hold). The venue never
// sees a stop; when price goes through it, the same order, under the same client order id, goes
// to the venue as a market order, once.
TEST(StopGuard, HeldStopIsSentOnceAsAMarketOrderUnderItsOwnId) {
  std::vector<std::string> path(30, "100.00");
  SimSession s(FaultProfile{}, path);
  StopGuard guard(s.loop, s.orders, s.journal, settings(ProtectionPolicy::local), {{"AAPL", s.instrument}});
  s.sim.subscribe_quotes({"AAPL"}, [&](const Quote& q) { guard.on_quote(q); });
  s.sim.start();
  s.run_for(200ms);
  s.orders.submit("sim", market_order("AAPL", Side::buy, 50));
  s.run_for(300ms);
  std::optional<CommandResult> held_answer;
  const auto stop = s.orders.hold("sim", stop_order("AAPL", Side::sell, 50, Price::parse("99.50")),
                                  [&](const CommandResult& r) { held_answer = r; });
  s.run_for(1s);
  ASSERT_TRUE(held_answer);
  EXPECT_EQ(held_answer->outcome, Outcome::accepted) << "told once the hold is durable";
  EXPECT_EQ(s.orders.find(stop)->state, OrderState::held);
  EXPECT_NE(s.orders.find(stop)->time_of(OrderState::held), 0);
  ASSERT_EQ(s.venue.orders().size(), 1u) << "only the entry: no stop at the venue";
  EXPECT_TRUE(guard.stops().empty()) << "nothing at a broker to verify";

  s.path->append(prices(99.99, 99.00, -0.01));
  s.run_for(20s);
  ASSERT_EQ(s.venue.orders().size(), 2u);
  const VenueOrder sent = s.venue.orders().back();  // a copy: orders() returns a new vector
  EXPECT_EQ(sent.client_order_id, stop) << "the held order itself, not a new one";
  EXPECT_EQ(sent.type, OrderType::market);
  EXPECT_EQ(sent.side, Side::sell);
  EXPECT_EQ(sent.quantity, 50);
  EXPECT_FALSE(sent.stop_price);
  const OrderRecord* o = s.orders.find(stop);
  EXPECT_EQ(o->state, OrderState::filled);
  EXPECT_EQ(o->spec.type, OrderType::market);
  EXPECT_EQ(s.orders.position("sim", "AAPL"), 0);
  EXPECT_TRUE(s.venue.positions().empty());
  EXPECT_TRUE(guard.ghosts().empty());
  s.journal.flush();
  const auto fired = s.journal.events("local_stop_fired");
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(nlohmann::json::parse(fired[0].detail).at("stop_price"), Price::parse("99.50").to_string());
  std::vector<std::string> states;
  for (const auto& t : s.journal.transitions(stop)) states.push_back(t.to_state);
  EXPECT_EQ(states, (std::vector<std::string>{"held", "pre_sent", "pending", "submitted", "filled"}));
  const auto journaled = s.journal.order(stop);
  ASSERT_TRUE(journaled);
  EXPECT_EQ(journaled->spec.type, OrderType::market) << "the order row says what went to the broker";
  EXPECT_EQ(journaled->state, OrderState::filled);
  EXPECT_EQ(journaled->time_of(OrderState::held), o->time_of(OrderState::held));
}

TEST(StopGuard, HeldStopCancelledOrReplacedActsAtOnceAndLocally) {
  std::vector<std::string> path(30, "100.00");
  SimSession s(FaultProfile{}, path);
  StopGuard guard(s.loop, s.orders, s.journal, settings(ProtectionPolicy::local), {{"AAPL", s.instrument}});
  s.sim.subscribe_quotes({"AAPL"}, [&](const Quote& q) { guard.on_quote(q); });
  s.sim.start();
  s.run_for(200ms);
  s.orders.submit("sim", market_order("AAPL", Side::buy, 50));
  s.run_for(300ms);
  const auto cancelled = s.orders.hold("sim", stop_order("AAPL", Side::sell, 50, Price::parse("99.80")));
  const auto moved = s.orders.hold("sim", stop_order("AAPL", Side::sell, 50, Price::parse("99.50")));
  s.run_for(500ms);
  std::optional<CommandResult> cancel_answer, replace_answer;
  s.orders.cancel(cancelled, [&](const CommandResult& r) { cancel_answer = r; });
  ASSERT_TRUE(cancel_answer) << "answered at once: no broker involved";
  EXPECT_EQ(cancel_answer->outcome, Outcome::accepted);
  EXPECT_EQ(s.orders.find(cancelled)->state, OrderState::cancelled);
  OrderSpec lower = s.orders.find(moved)->spec;
  lower.stop_price = Price::parse("99.20");
  s.orders.replace(moved, lower, [&](const CommandResult& r) { replace_answer = r; });
  ASSERT_TRUE(replace_answer);
  EXPECT_EQ(replace_answer->outcome, Outcome::accepted);
  EXPECT_EQ(s.orders.find(moved)->spec.stop_price, Price::parse("99.20"));

  // Down to 99.30: through the cancelled stop and the old price, not the new one.
  s.path->append(prices(99.99, 99.30, -0.01));
  s.run_for(10s);
  EXPECT_EQ(s.venue.orders().size(), 1u) << "neither the cancelled stop nor the old price sent anything";
  EXPECT_EQ(s.orders.find(moved)->state, OrderState::held);
  s.path->append(prices(99.29, 99.00, -0.01));
  s.run_for(10s);
  ASSERT_EQ(s.venue.orders().size(), 2u);
  EXPECT_EQ(s.venue.orders().back().client_order_id, moved);
  EXPECT_EQ(s.orders.position("sim", "AAPL"), 0);
  s.journal.flush();
  EXPECT_EQ(s.journal.order(moved)->spec.stop_price, std::nullopt) << "sent as a market order";
  EXPECT_EQ(s.journal.events("local_stop_fired").size(), 1u);
  EXPECT_EQ(nlohmann::json::parse(s.journal.events("local_stop_fired")[0].detail).at("stop_price"), Price::parse("99.20").to_string());
}

namespace {

// Reads back a stop with one field changed, or not at all: the failure modes verification exists for.
class LyingBroker final : public Broker {
 public:
  LyingBroker(EventLoop& loop, std::function<void(BrokerOrder&)> distort, bool lose_it)
      : loop_(loop), distort_(std::move(distort)), lose_it_(lose_it) {}
  const std::string& name() const override { return name_; }
  void submit(const OrderSpec& o, CommandCallback done) override {
    BrokerOrder b{"X" + std::to_string(++n_), o.client_order_id, o.symbol, o.side, o.quantity, o.type,
                  o.limit_price, o.stop_price, o.tif, o.outside_rth, OrderState::submitted, "PreSubmitted", 0,
                  std::nullopt, ""};
    if (distort_) distort_(b);
    if (!lose_it_) book_[b.broker_order_id] = b;
    loop_.post([done, id = b.broker_order_id] { done(CommandResult::accepted_as(id)); });
  }
  void cancel(const std::string&, CommandCallback done) override { done(CommandResult::accepted_as("")); }
  void query_order(const std::string& id, OrderQueryCallback done) override {
    auto it = book_.find(id);
    done({Outcome::accepted, {}, it == book_.end() ? std::nullopt : std::optional(it->second)});
  }
  void subscribe_order_events(OrderEventHandler) override {}
  BrokerHealthReport health() const override { return {}; }

  std::string name_ = "liar";
  EventLoop& loop_;
  std::function<void(BrokerOrder&)> distort_;
  bool lose_it_;
  int n_ = 0;
  std::map<std::string, BrokerOrder> book_;
};

struct LiarSession {
  LiarSession(std::function<void(BrokerOrder&)> distort, bool lose)
      : s(FaultProfile{}, {"100.00"}), liar(s.loop, std::move(distort), lose) {
    s.orders.add_broker(liar);
  }
  SimSession s;
  LyingBroker liar;
};

}  // namespace

namespace {
// Refuses every order (the business answer of a venue that will not take it), on the next loop
// turn, or when the test says (hold_answers).
class RefusingBroker final : public Broker {
 public:
  explicit RefusingBroker(EventLoop& loop) : loop_(loop) {}
  const std::string& name() const override { return name_; }
  void submit(const OrderSpec&, CommandCallback done) override {
    ++submits;
    if (hold_answers) {
      held.push_back(std::move(done));
      return;
    }
    loop_.post([done] { done(CommandResult::rejected_by_broker("no market for this order")); });
  }
  void answer_held() {
    for (auto& done : held) done(CommandResult::rejected_by_broker("no market for this order"));
    held.clear();
  }
  void cancel(const std::string&, CommandCallback done) override { done(CommandResult::accepted_as("")); }
  void query_order(const std::string&, OrderQueryCallback done) override { done({Outcome::accepted, {}, std::nullopt}); }
  void subscribe_order_events(OrderEventHandler) override {}
  BrokerHealthReport health() const override { return {}; }

  std::string name_ = "refuser";
  EventLoop& loop_;
  int submits = 0;
  bool hold_answers = false;
  std::vector<CommandCallback> held;
};

Quote through_quote(const char* price) {
  Quote q;
  q.symbol = "AAPL";
  q.bid = q.ask = q.last = Price::parse(price);
  q.source = "test-feed";
  return q;
}
}  // namespace

// A held stop fired whose exit the broker refuses: the position is unprotected, so it is
// journaled ("local_stop_release_failed", which a restart also reads) and logged as an error,
// for released orders only; the retry that follows finds nothing to sell here (the buy was
// refused too) and sends nothing.
TEST(StopGuard, HeldStopWhoseExitIsRefusedIsJournaledAsUnprotected) {
  SimSession s(FaultProfile{}, {"100.00"});
  RefusingBroker refuser(s.loop);
  s.orders.add_broker(refuser);
  StopGuard guard(s.loop, s.orders, s.journal, settings(ProtectionPolicy::local), {{"AAPL", s.instrument}});
  guard.on_quote(through_quote("100.00"));
  const auto stop = s.orders.hold("refuser", stop_order("AAPL", Side::sell, 10, Price::parse("99.50")));
  const auto other = s.orders.submit("refuser", market_order("AAPL", Side::buy, 5));
  s.run_for(1s);
  EXPECT_EQ(s.orders.find(other)->state, OrderState::rejected);
  EXPECT_EQ(s.orders.find(stop)->state, OrderState::held);
  s.loop.post([&] { guard.on_quote(through_quote("99.40")); });
  s.run_for(1s);
  EXPECT_EQ(refuser.submits, 2);
  EXPECT_EQ(s.orders.find(stop)->state, OrderState::rejected);
  s.journal.flush();
  const auto failed = s.journal.events("local_stop_release_failed");
  ASSERT_EQ(failed.size(), 1u) << "the released exit only, not the ordinary order refused before";
  EXPECT_EQ(failed[0].client_order_id, stop);
  EXPECT_EQ(failed[0].broker, "refuser");
  const auto detail = nlohmann::json::parse(failed[0].detail);
  EXPECT_EQ(detail.at("outcome"), "rejected");
  EXPECT_EQ(detail.at("message"), "no market for this order");
  EXPECT_EQ(detail.at("attempt"), 0);
  EXPECT_EQ(detail.at("will_retry"), true);
  s.run_for(2s);
  EXPECT_EQ(refuser.submits, 2) << "no exposure: the retry sends nothing";
  s.journal.flush();
  const auto resent = s.journal.events("local_stop_resent");
  ASSERT_EQ(resent.size(), 1u);
  EXPECT_EQ(nlohmann::json::parse(resent[0].detail).at("quantity"), 0);
  const auto fired = s.journal.events("local_stop_fired");
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(nlohmann::json::parse(fired[0].detail),
            (nlohmann::json{{"stop_price", "99.5"}, {"crossing_price", "99.4"}, {"source", "test-feed"},
                            {"order_type", "market"}}));
  const auto transitions = s.journal.transitions(stop);
  ASSERT_GE(transitions.size(), 2u);
  EXPECT_EQ(transitions[1].to_state, "pre_sent");
  EXPECT_EQ(transitions[1].reason, "local stop 99.5 triggered at 99.4");
}

// An exit answered after the guard is destroyed reaches nobody: the guard hears of exits through
// order updates, whose listener it leaves wrapped to die with it. Under the sanitizer run a
// listener that outlived it would be a call into freed memory.
TEST(StopGuard, ExitAnsweredAfterTheGuardIsDestroyedReachesNobody) {
  SimSession s(FaultProfile{}, {"100.00"});
  RefusingBroker refuser(s.loop);
  refuser.hold_answers = true;
  s.orders.add_broker(refuser);
  auto guard = std::make_unique<StopGuard>(s.loop, s.orders, s.journal, settings(ProtectionPolicy::local),
                                           std::map<std::string, Instrument>{{"AAPL", s.instrument}});
  const auto stop = s.orders.hold("refuser", stop_order("AAPL", Side::sell, 10, Price::parse("99.50")));
  s.run_for(1s);
  s.loop.post([&] { guard->on_quote(through_quote("99.40")); });
  s.run_for(1s);  // the tick, then the exit journaled and sent: its answer is held
  ASSERT_EQ(refuser.submits, 1);
  ASSERT_EQ(refuser.held.size(), 1u);
  guard.reset();
  refuser.answer_held();
  s.run_for(1s);
  EXPECT_EQ(s.orders.find(stop)->state, OrderState::rejected);
  s.journal.flush();
  EXPECT_TRUE(s.journal.events("local_stop_release_failed").empty());
}

namespace {

FaultProfile refusing_everything() {
  FaultProfile p;
  p.reject_rate = 1.0;
  return p;
}

// Long 10 at the simulated venue, with a held sell stop at 99.50. Returns the stop's id.
std::string sim_long_with_held_stop(SimSession& s) {
  s.sim.start();
  s.run_for(200ms);
  s.orders.submit("sim", market_order("AAPL", Side::buy, 10));
  s.run_for(1s);
  EXPECT_EQ(s.orders.position("sim", "AAPL"), 10);
  const auto stop = s.orders.hold("sim", stop_order("AAPL", Side::sell, 10, Price::parse("99.50")));
  s.run_for(500ms);
  return stop;
}

// The same, under `local`, with the stop fired by a tick through it while the venue refuses every
// order. Returns the stop's id.
std::string held_stop_fired_into_refusals(SimSession& s, StopGuard& guard) {
  const auto stop = sim_long_with_held_stop(s);
  s.faults.set_profile(refusing_everything());
  s.loop.post([&] { guard.on_quote(through_quote("99.40")); });
  s.run_for(100ms);
  EXPECT_EQ(s.orders.find(stop)->state, OrderState::rejected);
  return stop;
}

}  // namespace

// The exit of a fired local stop is refused (a venue rejecting for a while, say): the position
// stays unprotected only until a retry gets out. Each retry is a new order for the exposure left,
// journaled before it is sent, and the first that fills ends it.
TEST(StopGuard, RefusedLocalExitIsSentAgainUntilThePositionIsOut) {
  SimSession s(FaultProfile{}, {"100.00"});
  StopGuard guard(s.loop, s.orders, s.journal, settings(ProtectionPolicy::local), {{"AAPL", s.instrument}});
  const std::string stop = held_stop_fired_into_refusals(s, guard);
  s.run_for(1500ms);  // the first retry (1 s after), refused as well
  s.faults.set_profile(FaultProfile{});
  s.run_for(5s);  // the second (2 s after that) fills
  EXPECT_EQ(s.orders.position("sim", "AAPL"), 0);
  EXPECT_EQ(s.venue.positions().empty() ? 0 : s.venue.positions()[0].quantity, 0);
  s.journal.flush();
  const auto failed = s.journal.events("local_stop_release_failed");
  ASSERT_EQ(failed.size(), 2u);
  EXPECT_EQ(nlohmann::json::parse(failed[0].detail).at("order"), stop);
  EXPECT_EQ(nlohmann::json::parse(failed[1].detail).at("attempt"), 1);
  const auto resent = s.journal.events("local_stop_resent");
  ASSERT_EQ(resent.size(), 2u);
  const auto last = nlohmann::json::parse(resent[1].detail);
  EXPECT_EQ(last.at("attempt"), 2);
  EXPECT_EQ(last.at("quantity"), 10);
  EXPECT_EQ(s.orders.find(last.at("order").get<std::string>())->state, OrderState::filled);
  s.run_for(30s);
  EXPECT_EQ(s.journal.events("local_stop_resent").size(), 2u) << "nothing after the position is out";
}

// A venue that refuses every exit: five retries, 1, 2, 4, 8 and 8 s apart, then the guard gives
// up and says so (the position is left to a human).
TEST(StopGuard, LocalExitRetriesGiveUpAfterFiveAttempts) {
  SimSession s(FaultProfile{}, {"100.00"});
  StopGuard guard(s.loop, s.orders, s.journal, settings(ProtectionPolicy::local), {{"AAPL", s.instrument}});
  held_stop_fired_into_refusals(s, guard);
  s.run_for(60s);
  EXPECT_EQ(s.orders.position("sim", "AAPL"), 10);
  s.journal.flush();
  const auto failed = s.journal.events("local_stop_release_failed");
  ASSERT_EQ(failed.size(), 6u);
  EXPECT_EQ(nlohmann::json::parse(failed[4].detail).at("will_retry"), true);
  const auto last = nlohmann::json::parse(failed[5].detail);
  EXPECT_EQ(last.at("attempt"), 5);
  EXPECT_EQ(last.at("will_retry"), false);
  EXPECT_EQ(s.journal.events("local_stop_resent").size(), 5u);
  EXPECT_GE(failed[5].at - failed[0].at, to_ns(23s)) << "1 + 2 + 4 + 8 + 8 s";
  EXPECT_LE(failed[5].at - failed[0].at, to_ns(24s));
}

// The broker is unreachable when the stop fires, for longer than five quick retries: an exit that
// never reached it is sent again every 8 s (it cannot double anything), and the first one after
// the link is back gets the position out.
TEST(StopGuard, LocalExitIsSentAgainUntilAnUnreachableBrokerIsBack) {
  SimSession s(FaultProfile{}, {"100.00"});
  StopGuard guard(s.loop, s.orders, s.journal, settings(ProtectionPolicy::local), {{"AAPL", s.instrument}});
  const auto stop = sim_long_with_held_stop(s);
  ASSERT_FALSE(::testing::Test::HasFailure());
  s.sim.set_link_up(false);
  s.loop.post([&] { guard.on_quote(through_quote("99.40")); });
  s.run_for(60s);
  EXPECT_EQ(s.orders.find(stop)->state, OrderState::failed) << "never left: not connected";
  EXPECT_EQ(s.orders.position("sim", "AAPL"), 10);
  s.journal.flush();
  const auto failed = s.journal.events("local_stop_release_failed");
  ASSERT_GT(failed.size(), 6u) << "more than five tries while the broker stays away";
  EXPECT_EQ(nlohmann::json::parse(failed.back().detail).at("will_retry"), true);
  s.sim.set_link_up(true);
  s.run_for(10s);
  EXPECT_EQ(s.orders.position("sim", "AAPL"), 0);
  EXPECT_EQ(s.venue.positions().empty() ? 0 : s.venue.positions()[0].quantity, 0);
}

TEST(StopGuard, ReadBackThatDiffersInOneFieldIsAMismatchNamingIt) {
  LiarSession l([](BrokerOrder& b) { b.stop_price = Price::parse("95.00"); }, false);
  StopGuard guard(l.s.loop, l.s.orders, l.s.journal, settings(ProtectionPolicy::verify), {{"AAPL", l.s.instrument}});
  const auto id = l.s.orders.submit("liar", stop_order("AAPL", Side::sell, 10, Price::parse("99.50")));
  l.s.run_for(2s);
  const auto& rec = guard.stops().at(id);
  EXPECT_EQ(rec.verification, Verification::mismatch);
  EXPECT_EQ(rec.detail, "stop_price: sent 99.5, broker has 95");
  l.s.journal.flush();
  EXPECT_EQ(l.s.journal.events("stop_verification").size(), 1u);
}

TEST(StopGuard, TimeInForceAndOutsideHoursAreCompared) {
  LiarSession l([](BrokerOrder& b) { b.tif = TimeInForce::day; }, false);
  StopGuard guard(l.s.loop, l.s.orders, l.s.journal, settings(ProtectionPolicy::verify), {{"AAPL", l.s.instrument}});
  const auto id = l.s.orders.submit("liar", stop_order("AAPL", Side::sell, 10, Price::parse("99.50")));
  l.s.run_for(2s);
  EXPECT_EQ(guard.stops().at(id).detail, "time_in_force: sent gtc, broker has day");
}

TEST(StopGuard, StopMissingAtTheBrokerIsReportedAtTheDeadline) {
  LiarSession l({}, true);
  StopGuard guard(l.s.loop, l.s.orders, l.s.journal, settings(ProtectionPolicy::verify), {{"AAPL", l.s.instrument}});
  const auto id = l.s.orders.submit("liar", stop_order("AAPL", Side::sell, 10, Price::parse("99.50")));
  l.s.run_for(200ms);
  EXPECT_EQ(guard.stops().at(id).verification, Verification::pending) << "retries while the deadline allows";
  l.s.run_for(2s);
  EXPECT_EQ(guard.stops().at(id).verification, Verification::missing);
}

TEST(StopGuard, VerifiedStopsAreReverifiedPeriodically) {
  SimSession s(FaultProfile{}, {"100.00"});
  auto st = settings(ProtectionPolicy::verify);
  st.reverify_interval = 60s;
  StopGuard guard(s.loop, s.orders, s.journal, st, {{"AAPL", s.instrument}});
  s.sim.start();
  const auto id = s.orders.submit("sim", stop_order("AAPL", Side::sell, 10, Price::parse("99.50")));
  s.run_for(5min + 1s);
  EXPECT_EQ(guard.stops().at(id).verification, Verification::verified);
  EXPECT_GE(guard.stops().at(id).verifications, 5) << "once at the ack, then every 60 s";
}

// The guard hands callbacks to the loop (verification and re-verification timers) and to the
// OrderManager (listeners, read-back answers), both of which outlive it in tests and at shutdown.
// A guard destroyed before they fire must not be called back: found by AddressSanitizer (a
// verification timer firing into a destroyed guard in the emulator protection tests' tear-down);
// under the sanitizer run (scripts/run-sanitizers.sh) this test fails without StopGuard's
// while_alive, in a plain build it may pass by luck.
TEST(StopGuard, CallbacksOutstandingWhenTheGuardIsDestroyedDoNothing) {
  SimSession s(FaultProfile{}, {"100.00"});
  auto st = settings(ProtectionPolicy::verify);
  st.reverify_interval = 60s;
  auto guard = std::make_unique<StopGuard>(s.loop, s.orders, s.journal, st, std::map<std::string, Instrument>{{"AAPL", s.instrument}});
  s.sim.start();
  const auto id = s.orders.submit("sim", stop_order("AAPL", Side::sell, 10, Price::parse("99.50")));
  s.run_for(61s);
  ASSERT_GE(guard->stops().at(id).verifications, 1);  // its re-verification timer is set
  guard.reset();
  s.orders.cancel(id);  // an order update the guard listened for
  s.run_for(5min);      // timers that were the guard's
  EXPECT_EQ(s.orders.find(id)->state, OrderState::cancelled);
}

TEST(Reconciler, EightyPercentOfFillEventsDroppedAllRecoveredInOneCycle) {
  FaultProfile p;
  p.drop_fill_event_rate = 0.8;
  std::vector<std::string> path(10, "100.00");
  SimSession s(p, path, 4);
  Reconciler rec(s.loop, s.orders, s.journal, {30s, 5s});
  s.sim.start();
  s.run_for(200ms);
  for (int i = 0; i < 20; ++i) s.orders.submit("sim", market_order("AAPL", i % 2 ? Side::sell : Side::buy, 10 + i));
  s.run_for(1s);
  ASSERT_GT(s.faults.count("drop_fill_event"), 10u);
  rec.reconcile_orders("sim", {});
  s.run_for(100ms);
  std::size_t filled = 0;
  for (const OrderRecord* o : s.orders.orders()) filled += o->state == OrderState::filled;
  EXPECT_EQ(filled, 20u);
  s.journal.flush();
  EXPECT_EQ(s.journal.fills().size(), s.venue.fills().size());
  EXPECT_EQ(rec.count("sim", "missed_fill"), 1u);
  std::int64_t venue_pos = s.venue.positions().empty() ? 0 : s.venue.positions()[0].quantity;
  EXPECT_EQ(s.orders.position("sim", "AAPL"), venue_pos);
}

// A reconciler destroyed while the loop goes on: its interval timers do nothing (here a position
// the venue holds and Backstop does not would otherwise be reported by the next pass).
TEST(Reconciler, TimersAfterItIsDestroyedDoNothing) {
  SimSession s(FaultProfile{}, {"100.00"});
  s.sim.start();
  s.run_for(200ms);
  // Destroyed in place: its storage stays as the destructor left it, so a timer that still ran
  // the reconciler's pass would show (a divergence journaled), not only under AddressSanitizer.
  std::optional<Reconciler> rec;
  rec.emplace(s.loop, s.orders, s.journal, ReconcilerSettings{1s, 2s});
  bool ready = false;
  rec->start([&] { ready = true; });
  ASSERT_TRUE(ready);  // SimBroker answers its queries at once
  rec.reset();
  OrderSpec outside = market_order("AAPL", Side::buy, 5);
  outside.client_order_id = "OUTSIDE-1";
  ASSERT_TRUE(s.venue.submit(outside, SimBrokerOptions{}.account).accepted);
  s.run_for(10s);
  ASSERT_FALSE(s.venue.positions().empty());
  s.journal.flush();
  EXPECT_TRUE(s.journal.events("divergence").empty());
}

TEST(Reconciler, PositionAndOrderDivergencesAreReported) {
  SimSession s(FaultProfile{}, {"100.00"});
  Reconciler rec(s.loop, s.orders, s.journal);
  s.sim.start();
  s.run_for(200ms);
  // An order placed at the broker behind Backstop's back, and a position Backstop never saw.
  OrderSpec foreign = limit_order("AAPL", Side::buy, 5, Price::parse("90.00"));
  foreign.client_order_id = "MANUAL-1";
  s.venue.submit(foreign);
  OrderSpec manual_fill = market_order("AAPL", Side::buy, 7);
  manual_fill.client_order_id = "MANUAL-2";
  s.venue.submit(manual_fill);
  bool done = false;
  rec.start([&] { done = true; });
  s.run_for(1s);
  ASSERT_TRUE(done);
  EXPECT_EQ(rec.count("sim", "unknown_to_backstop"), 1u);
  EXPECT_EQ(rec.count("sim", "position_size"), 1u);
  s.journal.flush();
  EXPECT_EQ(s.journal.events("divergence").size(), 2u);
}

// ---------------------------------------------------------------------------------------------
// Restarts: the router process is killed (its objects destroyed with no shutdown of any kind:
// timers, in-flight requests and unjournaled state die with it) and a new one starts on the
// same journal file, against the same venue, which lives on outside the process.

namespace {

struct Tick {
  std::string last;
  std::int64_t size = 0;  // displayed bid and ask size; 0 = not reported (unlimited)
};

// Everything outside the router process: the venue, the clock, the market's price script.
struct Market {
  explicit Market(FaultProfile profile)
      : dir(std::filesystem::temp_directory_path() /
            ("backstop-restart-" + std::to_string(::getpid()) + "-" + std::to_string(++counter()))),
        faults(std::move(profile), 1),
        venue(clock, faults) {
    std::filesystem::create_directories(dir);
    venue.add_instrument("AAPL", TickSize(Price::parse("0.01")));
  }
  ~Market() { std::filesystem::remove_all(dir); }
  static int& counter() {
    static int n = 0;
    return n;
  }
  std::string journal_path() const { return (dir / "journal.db").string(); }
  void append(const std::vector<std::string>& lasts, std::int64_t size = 0) {
    for (const auto& l : lasts) script.push_back({l, size});
  }
  int market_sells() const {
    int n = 0;
    for (const auto& o : venue.orders()) n += o.type == OrderType::market && o.side == Side::sell;
    return n;
  }
  std::int64_t venue_position() const { return venue.positions().empty() ? 0 : venue.positions()[0].quantity; }

  std::filesystem::path dir;
  ManualClock clock;
  FaultInjector faults;
  Venue venue;
  std::vector<Tick> script;
  std::size_t next_tick = 0;  // the market goes on where it was when a new process connects
};

class MarketPath final : public PricePath {
 public:
  explicit MarketPath(Market& m) : m_(m) {}
  std::optional<Quote> next(Timestamp now) override {
    const Tick& t = m_.script[std::min(m_.next_tick++, m_.script.size() - 1)];
    Quote q;
    q.symbol = "AAPL";
    q.last = Price::parse(t.last);
    q.bid = *q.last - Price::parse("0.01");
    q.ask = *q.last + Price::parse("0.01");
    q.bid_size = q.ask_size = t.size;
    q.at = now;
    q.source = "script";
    return q;
  }

 private:
  Market& m_;
};

// One router process. Members are destroyed in reverse order: the journal commits what was
// queued (what a SIGKILL after those commits leaves), the loop with its timers goes last.
struct Process {
  Process(Market& m, const std::string& id_prefix, ProtectionPolicy policy)
      : loop(m.clock),
        journal(m.journal_path()),
        ids(id_prefix),
        orders(loop, journal, ids),
        sim(SimSession::options(), loop, m.venue),
        guard(loop, orders, journal, settings(policy), {{"AAPL", aapl()}}) {
    sim.add_price_path(std::make_unique<MarketPath>(m));
    orders.add_broker(sim);
    sim.start();
  }
  static Instrument aapl() {
    Instrument i;
    i.symbol = "AAPL";
    return i;
  }
  void feed_quotes() {
    sim.subscribe_quotes({"AAPL"}, [this](const Quote& q) { guard.on_quote(q); });
  }
  // Start-up after a kill, in Session::start's order: recovery against the broker, the guard's
  // restores, then quotes.
  void start_after_restart() {
    bool recovered = false;
    orders.recover([&](std::size_t, std::size_t) { recovered = true; });
    for (int i = 0; i < 1000 && !recovered; ++i) run_for(10ms);
    ASSERT_TRUE(recovered);
    guard.restore_from_journal();
    feed_quotes();
  }
  // Start-up as Session::start does it since held stops are watched through recovery: recovery
  // begins (the journal is loaded at once), the guard watches held stops and quotes flow while it
  // runs; restore_from_journal() (the caller's) ends it.
  void start_recovery_with_quotes() {
    bool recovered = false;
    orders.recover([&recovered](std::size_t, std::size_t) { recovered = true; });
    guard.begin_recovery();
    feed_quotes();
    ASSERT_TRUE(run_until([&] { return recovered; }));
  }
  void run_for(Duration d) { loop.run_until(loop.now() + d.count()); }
  // Runs in small steps until `done` (at most `limit`); true if it happened.
  bool run_until(const std::function<bool()>& done, Duration limit = 60s) {
    const Timestamp end = loop.now() + limit.count();
    while (!done()) {
      if (loop.now() >= end) return false;
      run_for(10ms);
    }
    return true;
  }
  std::size_t journaled(const std::string& kind) { return journal.events(kind).size(); }
  // Under `local`, with quotes flowing: long 100 with a held sell stop at 99.50. Returns its id.
  std::string long_with_held_stop() {
    feed_quotes();
    run_for(200ms);
    orders.submit("sim", market_order("AAPL", Side::buy, 100));
    run_for(300ms);
    const std::string stop = orders.hold("sim", stop_order("AAPL", Side::sell, 100, Price::parse("99.50")));
    run_for(500ms);
    EXPECT_EQ(orders.position("sim", "AAPL"), 100);
    EXPECT_EQ(orders.find(stop)->state, OrderState::held);
    return stop;
  }

  EventLoop loop;
  Journal journal;
  ClientOrderIdGenerator ids;
  OrderManager orders;
  SimBroker sim;
  StopGuard guard;
};

// 30 ticks at 100.00 then down a cent a tick to 99.00: a 99.50 sell stop is crossed at 99.50,
// about 5 s after the stop is placed.
void flat_then_down(Market& m, std::int64_t size_after_cross = 0) {
  m.append(std::vector<std::string>(30, "100.00"));
  m.append(prices(99.99, 99.51, -0.01));
  m.append(prices(99.50, 99.00, -0.01), size_after_cross);
}

// The first process of a restart test: a long position protected by a stop at 99.50 under
// `guard`, run until the market crosses the stop; `then` runs in that process before it is
// killed (destroyed without any shutdown, as SIGKILL would leave it).
struct Crossing {
  std::string stop;
  Timestamp at = 0;  // when the crossing was journaled
};
Crossing cross_then_kill(Market& m, const std::function<void(Process&)>& then) {
  Crossing c;
  Process p(m, "A", ProtectionPolicy::guard);
  p.feed_quotes();
  p.run_for(200ms);
  c.stop = long_with_stop(p, 100, "99.50");
  if (!p.run_until([&] { return p.journaled("stop_crossed") == 1; })) {
    ADD_FAILURE() << "the market never crossed the stop";
    return c;
  }
  c.at = p.journal.events("stop_crossed")[0].at;
  then(p);
  return c;
}

}  // namespace

// Protection `local` across a kill: the held stop is an order in the journal, in state held. The
// restarted process loads it without asking the broker for it (no broker has it), watches it, and
// sends it when price goes through: under its own id, once.
TEST(StopGuardRestart, HeldStopIsHeldAgainAfterAKillAndSentOnce) {
  Market m(FaultProfile{});
  flat_then_down(m);
  std::string stop;
  {
    Process p(m, "A", ProtectionPolicy::local);
    stop = p.long_with_held_stop();
  }  // killed before the market gets to the stop
  ASSERT_FALSE(::testing::Test::HasFailure());
  Process p(m, "B", ProtectionPolicy::local);
  p.start_after_restart();
  ASSERT_NE(p.orders.find(stop), nullptr);
  EXPECT_EQ(p.orders.find(stop)->state, OrderState::held);
  EXPECT_EQ(m.venue.orders().size(), 1u) << "still only the entry at the venue";
  ASSERT_TRUE(p.run_until([&] { return p.orders.find(stop)->state == OrderState::filled; }));
  EXPECT_EQ(m.market_sells(), 1);
  EXPECT_EQ(m.venue.orders().back().client_order_id, stop);
  EXPECT_EQ(m.venue_position(), 0);
  EXPECT_EQ(p.journaled("local_stop_fired"), 1u);
  const auto restored = p.journal.events("stop_guard_restored");
  ASSERT_EQ(restored.size(), 1u);
  EXPECT_EQ(nlohmann::json::parse(restored[0].detail).at("held_stops_watched"), 1);
}

namespace {

// 30 ticks at 100.00, down through a 99.50 stop to 99.40, back up to 100.50 and staying there.
void through_the_stop_and_back(Market& m) {
  m.append(std::vector<std::string>(30, "100.00"));
  m.append(prices(99.99, 99.40, -0.01));
  m.append(prices(99.41, 100.50, 0.01));
  m.append(std::vector<std::string>(2000, "100.50"));
}

// The market as through_the_stop_and_back() has it; process A under `local` long 100 with a held
// sell stop at 99.50, killed while the market is still at 100.00. Returns the stop's id.
std::string held_stop_killed_before_a_dip_and_back(Market& m) {
  through_the_stop_and_back(m);
  Process p(m, "A", ProtectionPolicy::local);
  return p.long_with_held_stop();
}

// A restarted process whose recovery is still running (its guard not yet restored) while the
// market goes through the held stop and back above it (through_the_stop_and_back's ticks).
void cross_while_recovering(Process& p, Market& m) {
  p.start_recovery_with_quotes();
  ASSERT_TRUE(p.run_until([&] { return p.journaled("local_stop_crossed_during_recovery") == 1; }));
  ASSERT_TRUE(p.run_until([&] { return m.next_tick > 30 + 60 + 110 + 10; }));
}

}  // namespace

// The start-up gap: a restarted process resolves the journal's open orders before it sends anything
// (at IBKR, paced queries and a reconciliation: tens of seconds). A held stop has no broker stop
// behind it, so it is watched through that time; crossed then, its exit must wait for the end of
// recovery, and is sent then even though price has come back above the stop, as a broker's stop
// would have triggered.
TEST(StopGuardRestart, HeldStopCrossedWhileRecoveryRunsIsSentWhenItEndsEvenIfPriceCameBack) {
  Market m(FaultProfile{});
  const std::string stop = held_stop_killed_before_a_dip_and_back(m);
  ASSERT_FALSE(::testing::Test::HasFailure());
  Process p(m, "B", ProtectionPolicy::local);
  cross_while_recovering(p, m);
  ASSERT_FALSE(::testing::Test::HasFailure());
  EXPECT_EQ(p.orders.find(stop)->state, OrderState::held) << "nothing is sent while recovery runs";
  EXPECT_EQ(m.market_sells(), 0);
  EXPECT_EQ(p.journaled("local_stop_crossed_during_recovery"), 1u) << "journaled once, not per tick";
  const auto crossing = nlohmann::json::parse(p.journal.events("local_stop_crossed_during_recovery")[0].detail);
  EXPECT_EQ(crossing.at("stop_price"), "99.5");
  EXPECT_EQ(crossing.at("crossing_price"), "99.5");
  EXPECT_EQ(p.guard.crossed_during_recovery(), std::vector<std::string>{stop}) << "for a start-up that gives up";

  p.guard.restore_from_journal();
  EXPECT_TRUE(p.guard.crossed_during_recovery().empty());
  ASSERT_TRUE(p.run_until([&] { return p.orders.find(stop)->state == OrderState::filled; }));
  EXPECT_EQ(m.market_sells(), 1);
  EXPECT_EQ(m.venue.orders().back().client_order_id, stop) << "the held order itself, under its own id";
  EXPECT_EQ(m.venue_position(), 0);
  const auto fired = p.journal.events("local_stop_fired");
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_TRUE(nlohmann::json::parse(fired[0].detail).contains("crossed_during_recovery_at")) << fired[0].detail;
  const auto restored = p.journal.events("stop_guard_restored");
  ASSERT_EQ(restored.size(), 1u);
  const auto summary = nlohmann::json::parse(restored[0].detail);
  EXPECT_EQ(summary.at("held_stops_crossed_during_recovery"), 1);
  EXPECT_EQ(summary.at("held_stops_watched"), 0);
  p.run_for(5s);
  EXPECT_EQ(m.market_sells(), 1) << "sent once";
}

// The same crossing, but the process is killed before its recovery ends: the journaled crossing
// hands the release to the next process, which sends it once although the market is back above it.
TEST(StopGuardRestart, HeldStopCrossedDuringAnInterruptedRecoveryIsSentByTheNextProcessOnce) {
  Market m(FaultProfile{});
  const std::string stop = held_stop_killed_before_a_dip_and_back(m);
  ASSERT_FALSE(::testing::Test::HasFailure());
  {
    Process p(m, "B", ProtectionPolicy::local);
    cross_while_recovering(p, m);
    ASSERT_FALSE(::testing::Test::HasFailure());
    EXPECT_EQ(m.market_sells(), 0);
  }  // killed before the guard's restore
  {
    Process p(m, "C", ProtectionPolicy::local);
    p.start_after_restart();
    ASSERT_TRUE(p.run_until([&] { return p.orders.find(stop)->state == OrderState::filled; }));
    EXPECT_EQ(m.market_sells(), 1);
    EXPECT_EQ(m.venue_position(), 0);
    EXPECT_EQ(p.journaled("local_stop_fired"), 1u);
  }
  Process p(m, "D", ProtectionPolicy::local);
  p.start_after_restart();
  p.run_for(3s);
  EXPECT_EQ(m.market_sells(), 1) << "never a second exit";
  EXPECT_EQ(p.journaled("local_stop_fired"), 1u);
}

namespace {

// The position a held stop protected closes while Backstop is down (its target, a limit order at
// the broker, fills), and price then goes through the stop during the restart's recovery: sending
// the stop's exit now would open a short on a crossing nobody could act on. It is cancelled, and
// journaled as not sent.
TEST(StopGuardRestart, HeldStopCrossedDuringRecoveryWithItsPositionGoneIsCancelledNotSent) {
  Market m(FaultProfile{});
  m.append(std::vector<std::string>(30, "100.00"));
  m.append(prices(100.01, 100.10, 0.01));   // the target at 100.05 fills
  m.append(prices(100.09, 99.40, -0.01));   // then through the stop at 99.50
  m.append(std::vector<std::string>(400, "99.40"));
  std::string stop, target;
  {
    Process p(m, "A", ProtectionPolicy::local);
    stop = p.long_with_held_stop();
    target = p.orders.submit("sim", limit_order("AAPL", Side::sell, 100, Price::parse("100.05")));
    p.run_for(300ms);
    ASSERT_EQ(p.orders.find(target)->state, OrderState::submitted);
  }  // killed with the target working and the stop held
  ASSERT_FALSE(::testing::Test::HasFailure());
  Process p(m, "B", ProtectionPolicy::local);
  p.start_recovery_with_quotes();
  ASSERT_TRUE(p.run_until([&] { return p.journaled("local_stop_crossed_during_recovery") == 1; }));
  ASSERT_EQ(p.orders.find(target)->state, OrderState::filled);
  ASSERT_EQ(p.orders.position("sim", "AAPL"), 0);
  p.guard.restore_from_journal();
  p.run_for(2s);
  EXPECT_EQ(p.orders.find(stop)->state, OrderState::cancelled);
  EXPECT_EQ(m.market_sells(), 0) << "no exit sent for a position that is gone";
  EXPECT_EQ(m.venue_position(), 0);
  EXPECT_EQ(p.journaled("local_stop_fired"), 0u);
  EXPECT_EQ(p.journaled("local_stop_not_sent"), 1u);
}

// Process A under `local`: long 100 with a held sell stop at 99.50, released by a quote through it
// (handed to the guard directly, outside the loop) and killed before the loop runs again: the
// release and the order as it goes out are committed (the journal commits what was queued), the
// request never left. Returns the stop's id.
std::string release_then_kill_before_send(Market& m) {
  Process p(m, "A", ProtectionPolicy::local);
  const std::string stop = p.long_with_held_stop();
  Quote q;
  q.symbol = "AAPL";
  q.last = Price::parse("99.40");
  q.bid = Price::parse("99.39");
  q.ask = Price::parse("99.41");
  q.at = p.loop.now();
  q.source = "script";
  p.guard.on_quote(q);
  EXPECT_EQ(p.orders.find(stop)->state, OrderState::pre_sent) << "released, not yet sent";
  EXPECT_EQ(p.journaled("local_stop_fired"), 1u);
  return stop;
}

}  // namespace

// The crash window of a release: the stop is released (journaled) and the process killed before
// its order leaves. Recovery finds no such order at the broker and fails it; the restarted guard
// sends the exit again, once, under a new id, and a second restart sends nothing more.
TEST(StopGuardRestart, HeldStopReleasedButKilledBeforeSendIsSentAgainOnce) {
  Market m(FaultProfile{});
  m.append(std::vector<std::string>(400, "100.00"));
  const std::string stop = release_then_kill_before_send(m);
  ASSERT_FALSE(::testing::Test::HasFailure());
  EXPECT_EQ(m.market_sells(), 0) << "the exit never reached the venue";
  std::string resent;
  {
    Process p(m, "B", ProtectionPolicy::local);
    p.start_after_restart();
    const OrderRecord* o = p.orders.find(stop);
    ASSERT_NE(o, nullptr);
    EXPECT_EQ(o->state, OrderState::failed) << "the broker never had it";
    EXPECT_EQ(o->spec.type, OrderType::market) << "recovered as released";
    const auto ev = p.journal.events("local_stop_resent");
    ASSERT_EQ(ev.size(), 1u);
    const auto d = nlohmann::json::parse(ev[0].detail);
    EXPECT_EQ(ev[0].client_order_id, stop);
    EXPECT_EQ(d.at("quantity"), 100);
    EXPECT_EQ(d.at("position_before"), 100);
    resent = d.at("order").get<std::string>();
    ASSERT_FALSE(resent.empty());
    EXPECT_NE(resent, stop);
    ASSERT_TRUE(p.run_until([&] { return p.orders.find(resent)->state == OrderState::filled; }));
    EXPECT_EQ(p.orders.find(resent)->spec.type, OrderType::market);
    EXPECT_EQ(p.orders.find(resent)->spec.side, Side::sell);
    EXPECT_EQ(m.market_sells(), 1);
    EXPECT_EQ(m.venue_position(), 0);
    EXPECT_EQ(p.orders.position("sim", "AAPL"), 0);
    const auto restored = p.journal.events("stop_guard_restored");
    ASSERT_EQ(restored.size(), 1u);
    EXPECT_EQ(nlohmann::json::parse(restored[0].detail).at("local_exits_resent"), 1);
  }
  Process p(m, "C", ProtectionPolicy::local);
  p.start_after_restart();
  p.run_for(2s);
  EXPECT_EQ(p.journaled("local_stop_resent"), 1u) << "judged once, across any number of restarts";
  EXPECT_EQ(m.market_sells(), 1) << "never a second exit";
  EXPECT_EQ(m.venue_position(), 0);
}

// The same window, but the position was closed by hand before the restart's guard ran: the exit
// is judged (journaled, with nothing to send) and no order is sent, since a sell would open a short.
TEST(StopGuardRestart, HeldStopReleasedButKilledBeforeSendIsNotSentWhenFlatAlready) {
  Market m(FaultProfile{});
  m.append(std::vector<std::string>(400, "100.00"));
  const std::string stop = release_then_kill_before_send(m);
  ASSERT_FALSE(::testing::Test::HasFailure());
  Process p(m, "B", ProtectionPolicy::local);
  bool recovered = false;
  p.orders.recover([&](std::size_t, std::size_t) { recovered = true; });
  ASSERT_TRUE(p.run_until([&] { return recovered; }, 10s));
  EXPECT_EQ(p.orders.find(stop)->state, OrderState::failed);
  const std::string by_hand = p.orders.submit("sim", market_order("AAPL", Side::sell, 100));
  ASSERT_TRUE(p.run_until([&] { return p.orders.find(by_hand)->state == OrderState::filled; }));
  ASSERT_EQ(p.orders.position("sim", "AAPL"), 0);
  p.guard.restore_from_journal();
  p.feed_quotes();
  p.run_for(2s);
  const auto ev = p.journal.events("local_stop_resent");
  ASSERT_EQ(ev.size(), 1u);
  const auto d = nlohmann::json::parse(ev[0].detail);
  EXPECT_EQ(d.at("order"), "");
  EXPECT_EQ(d.at("quantity"), 0);
  EXPECT_EQ(m.market_sells(), 1) << "only the sale by hand";
  EXPECT_EQ(m.venue_position(), 0);
}

// (a) The chaos test's case: the crossing is journaled, the process is killed inside the grace
// period, and the restarted guard declares the ghost at the original crossed_at + grace.
// The exit of a fired local stop was refused and the process died before its retry: the journal
// says a retry was due ("will_retry"), and the restarted guard sends it, once.
TEST(StopGuardRestart, LocalExitRetryDueWhenTheProcessDiedIsSentByTheNextProcess) {
  Market m(FaultProfile{});
  m.append(std::vector<std::string>(400, "100.00"));
  std::string stop;
  {
    Process p(m, "A", ProtectionPolicy::local);
    stop = p.long_with_held_stop();
    FaultProfile refuse;
    refuse.reject_rate = 1.0;
    m.faults.set_profile(refuse);
    Quote q;
    q.symbol = "AAPL";
    q.last = q.bid = q.ask = Price::parse("99.40");
    q.at = p.loop.now();
    q.source = "script";
    p.loop.post([&] { p.guard.on_quote(q); });
    p.run_for(200ms);
    ASSERT_EQ(p.orders.find(stop)->state, OrderState::rejected);
    ASSERT_EQ(p.journaled("local_stop_release_failed"), 1u);
    ASSERT_EQ(p.journaled("local_stop_resent"), 0u) << "killed before the retry";
  }
  m.faults.set_profile(FaultProfile{});
  Process p(m, "B", ProtectionPolicy::local);
  p.start_after_restart();
  const auto resent = p.journal.events("local_stop_resent");
  ASSERT_EQ(resent.size(), 1u);
  const auto d = nlohmann::json::parse(resent[0].detail);
  EXPECT_EQ(d.at("attempt"), 1);
  const std::string exit = d.at("order").get<std::string>();
  ASSERT_TRUE(p.run_until([&] { return p.orders.find(exit)->state == OrderState::filled; }));
  EXPECT_EQ(m.venue_position(), 0);
  p.run_for(20s);
  EXPECT_EQ(m.market_sells(), 2) << "the refused exit and one retry: the restored one, not also a timer of the dead "
                                    "process's";
}

TEST(StopGuardRestart, CrossingJournaledBeforeAKillIsDeclaredAtItsOriginalDeadline) {
  Market m(ghosts_only());
  flat_then_down(m);
  const Crossing first = cross_then_kill(m, [](Process& p) {
    p.run_for(500ms);
    EXPECT_TRUE(p.guard.ghosts().empty()) << "killed inside the grace period";
    EXPECT_EQ(p.journaled("ghost_stop"), 0u);
  });
  ASSERT_FALSE(::testing::Test::HasFailure());
  const std::string& stop = first.stop;
  const Timestamp crossed_at = first.at;
  m.clock.advance(300ms);
  Process p(m, "B", ProtectionPolicy::guard);
  p.start_after_restart();
  EXPECT_EQ(p.journaled("stop_crossing_restored"), 1u);
  EXPECT_TRUE(p.guard.stops().at(stop).watching);
  p.loop.run_until(crossed_at + to_ns(2s) - to_ns(1ms));
  EXPECT_TRUE(p.guard.ghosts().empty()) << "not before the original deadline";
  p.run_for(30s);
  ASSERT_EQ(p.guard.ghosts().size(), 1u);
  const GhostStop& g = p.guard.ghosts()[0];
  EXPECT_EQ(g.client_order_id, stop);
  EXPECT_EQ(g.crossed_at, crossed_at) << "the original crossing, not a new one after the restart";
  EXPECT_EQ(g.crossing_price, Price::parse("99.50"));
  EXPECT_GE(g.declared_at - crossed_at, to_ns(2s));
  EXPECT_LE(g.declared_at - crossed_at, to_ns(2s + 100ms));
  // `guard`: cancelled and flattened, once.
  EXPECT_EQ(p.orders.find(stop)->state, OrderState::cancelled);
  EXPECT_FALSE(g.flatten_order.empty()) << g.action;
  EXPECT_EQ(m.market_sells(), 1) << "exactly one flatten";
  EXPECT_EQ(m.venue_position(), 0);
  EXPECT_TRUE(m.venue.open_orders().empty());
  EXPECT_EQ(p.journaled("stop_crossed"), 1u) << "held as crossed: the next tick did not cross it afresh";
  EXPECT_EQ(p.journaled("ghost_stop"), 1u);
  EXPECT_EQ(p.journaled("guard_action"), 1u);
}

// The process stayed down past the deadline: the ghost is declared right after the restart (after
// the read-back), still with the original crossing time.
TEST(StopGuardRestart, CrossingWhoseGraceEndedWhileDownIsDeclaredAtOnceAfterTheReadBack) {
  Market m(ghosts_only());
  flat_then_down(m);
  const Crossing first = cross_then_kill(m, [](Process& p) { p.run_for(1s); });
  ASSERT_FALSE(::testing::Test::HasFailure());
  const std::string& stop = first.stop;
  const Timestamp crossed_at = first.at;
  m.clock.advance(10s);
  Process p(m, "B", ProtectionPolicy::guard);
  p.start_after_restart();
  const Timestamp restored_at = p.loop.now();
  p.run_for(30s);
  ASSERT_EQ(p.guard.ghosts().size(), 1u);
  const GhostStop& g = p.guard.ghosts()[0];
  EXPECT_EQ(g.client_order_id, stop);
  EXPECT_EQ(g.crossed_at, crossed_at);
  EXPECT_LE(g.declared_at - restored_at, to_ns(100ms)) << "overdue: declared at once";
  EXPECT_EQ(m.market_sells(), 1);
  EXPECT_EQ(m.venue_position(), 0);
  p.journal.flush();
  const auto restored = p.journal.events("stop_crossing_restored");
  ASSERT_EQ(restored.size(), 1u);
  EXPECT_NE(restored[0].detail.find("\"overdue\":true"), std::string::npos) << restored[0].detail;
}

// (b) Declared and acted on before the kill; the flatten is still filling (10 shares a tick) when
// the process dies, so the position still shows exposure after the restart: nothing may send a
// second flatten.
TEST(StopGuardRestart, GhostActedOnBeforeAKillIsNeverFlattenedAgain) {
  Market m(ghosts_only());
  flat_then_down(m, 10);
  m.append(std::vector<std::string>(100, "99.00"), 10);
  std::string stop, flatten;
  {
    Process p(m, "A", ProtectionPolicy::guard);
    p.feed_quotes();
    p.run_for(200ms);
    stop = long_with_stop(p, 100, "99.50");
    ASSERT_TRUE(p.run_until([&] { return p.journaled("guard_action") == 1; }));
    ASSERT_EQ(p.guard.ghosts().size(), 1u);
    flatten = p.guard.ghosts()[0].flatten_order;
    ASSERT_FALSE(flatten.empty());
    // "guard_action" is journaled as the order is handed to OrderManager; it reaches the venue
    // once its own journal write is durable.
    ASSERT_TRUE(p.run_until([&] { return m.venue.find_by_client_id(flatten) != nullptr; }));
    ASSERT_LT(m.venue.find_by_client_id(flatten)->filled_quantity, 100) << "the flatten is still working at the kill";
  }
  m.clock.advance(1s);
  Process p(m, "B", ProtectionPolicy::guard);
  p.start_after_restart();
  ASSERT_GT(p.orders.position("sim", "AAPL"), 0) << "exposure left: a second flatten would be sent if acted_ were lost";
  p.run_for(30s);
  EXPECT_EQ(m.market_sells(), 1) << "one flatten at the venue, across the restart";
  EXPECT_EQ(m.venue_position(), 0);
  EXPECT_EQ(p.orders.position("sim", "AAPL"), 0);
  ASSERT_EQ(p.guard.ghosts().size(), 1u);
  EXPECT_EQ(p.guard.ghosts()[0].flatten_order, flatten);
  EXPECT_EQ(p.journaled("ghost_stop"), 1u);
  EXPECT_EQ(p.journaled("guard_action"), 1u);
  EXPECT_EQ(p.journaled("guard_flatten_order"), 1u);
}

// Killed after the ghost was declared, before the guard's flatten decision (the cancel of the
// stop was in flight): the restarted guard owes the action and takes it, once.
TEST(StopGuardRestart, GhostDeclaredButNotActedOnIsFlattenedOnceAfterRestart) {
  Market m(ghosts_only());
  flat_then_down(m);
  std::string stop;
  {
    Process p(m, "A", ProtectionPolicy::guard);
    p.feed_quotes();
    p.run_for(200ms);
    stop = long_with_stop(p, 100, "99.50");
    ASSERT_TRUE(p.run_until([&] { return !p.guard.ghosts().empty(); }));
    ASSERT_EQ(p.journaled("guard_action"), 0u);
    ASSERT_EQ(m.market_sells(), 0);
  }
  m.clock.advance(1s);
  Process p(m, "B", ProtectionPolicy::guard);
  p.start_after_restart();
  p.run_for(30s);
  EXPECT_EQ(m.market_sells(), 1) << "the interrupted flatten happens, once";
  EXPECT_EQ(m.venue_position(), 0);
  EXPECT_TRUE(m.venue.open_orders().empty());
  ASSERT_EQ(p.guard.ghosts().size(), 1u);
  EXPECT_EQ(p.journaled("ghost_stop"), 1u) << "not declared a second time";
  EXPECT_EQ(p.journaled("guard_action"), 1u);
  EXPECT_EQ(p.journaled("ghost_stop_restored"), 1u);
}

// Killed after the flatten order was journaled and sent but before "guard_action" was: the crash
// state is built by doing, by hand, what guard_flatten() journals before "guard_action" (the
// link event, then the order). The flatten fills 10 a tick, so exposure is left at the restart.
TEST(StopGuardRestart, FlattenSentButNotRecordedAsTheActionIsFoundAndNotRepeated) {
  Market m(ghosts_only());
  flat_then_down(m, 10);
  m.append(std::vector<std::string>(100, "99.00"), 10);
  std::string stop, flatten;
  {
    Process p(m, "A", ProtectionPolicy::guard);
    p.feed_quotes();
    p.run_for(200ms);
    stop = long_with_stop(p, 100, "99.50");
    ASSERT_TRUE(p.run_until([&] { return !p.guard.ghosts().empty(); }));
    OrderSpec f = market_order("AAPL", Side::sell, 100);
    f.client_order_id = flatten = p.orders.next_client_order_id();
    p.journal.record_event({p.loop.now(), "sim", "guard_flatten_order", stop,
                            nlohmann::json{{"flatten_order", flatten}, {"quantity", 100}}.dump()});
    p.orders.submit("sim", f);
    ASSERT_TRUE(p.run_until([&] { return m.venue.find_by_client_id(flatten) != nullptr; }));
    ASSERT_EQ(p.journaled("guard_action"), 0u);
  }  // killed before the guard's own decision (its cancel poll) ran
  m.clock.advance(1s);
  Process p(m, "B", ProtectionPolicy::guard);
  p.start_after_restart();
  ASSERT_GT(p.orders.position("sim", "AAPL"), 0);
  p.run_for(30s);
  EXPECT_EQ(m.market_sells(), 1) << "the flatten found in the order records is the flatten";
  EXPECT_EQ(m.venue_position(), 0);
  ASSERT_EQ(p.guard.ghosts().size(), 1u);
  EXPECT_EQ(p.guard.ghosts()[0].flatten_order, flatten);
  EXPECT_EQ(p.journaled("guard_action"), 1u) << "the action is recorded once, by the restore";
}

// (c) The crossing was journaled, but the stop filled (its fill events were lost, so the process
// never knew) before the restart: recovery reads the fill back, and no crossing is restored.
TEST(StopGuardRestart, CrossedStopThatFilledBeforeTheRestartIsNoGhost) {
  FaultProfile p0;
  p0.drop_fill_event_rate = 1.0;
  p0.drop_order_event_rate = 1.0;
  Market m(p0);
  flat_then_down(m);
  const Crossing first = cross_then_kill(m, [&m](Process& p) {
    p.run_for(500ms);
    const std::string coid = p.journal.events("stop_crossed")[0].client_order_id;  // a copy: the vector is a temporary
    EXPECT_EQ(m.venue.find_by_client_id(coid)->status, VenueStatus::filled) << "filled at the venue";
    EXPECT_EQ(p.orders.find(coid)->filled_quantity, 0) << "unknown to the process";
  });
  ASSERT_FALSE(::testing::Test::HasFailure());
  const std::string& stop = first.stop;
  m.clock.advance(300ms);
  Process p(m, "B", ProtectionPolicy::guard);
  p.start_after_restart();
  EXPECT_EQ(p.orders.find(stop)->state, OrderState::filled);
  EXPECT_EQ(p.journaled("stop_crossing_restored"), 0u);
  p.run_for(30s);
  EXPECT_TRUE(p.guard.ghosts().empty());
  EXPECT_EQ(p.journaled("ghost_stop"), 0u);
  EXPECT_EQ(m.market_sells(), 0) << "no flatten: the stop's own fill closed the position";
  EXPECT_EQ(m.venue_position(), 0);
}

// A working stop that had not been crossed at the kill is watched by the restarted guard (recovery
// loads orders without notifying anyone): a crossing after the restart is a ghost like any other.
TEST(StopGuardRestart, RecoveredWorkingStopIsWatchedAndVerifiedAfterRestart) {
  Market m(ghosts_only());
  m.append(std::vector<std::string>(100, "100.00"));
  std::string stop;
  {
    Process p(m, "A", ProtectionPolicy::verify);
    p.feed_quotes();
    p.run_for(200ms);
    stop = long_with_stop(p, 100, "99.50");
    p.run_for(1s);
    ASSERT_EQ(p.guard.stops().at(stop).verification, Verification::verified);
  }
  m.clock.advance(1s);
  Process p(m, "B", ProtectionPolicy::verify);
  p.start_after_restart();
  ASSERT_TRUE(p.guard.stops().count(stop));
  EXPECT_TRUE(p.guard.stops().at(stop).watching);
  p.run_for(2s);
  EXPECT_EQ(p.guard.stops().at(stop).verification, Verification::verified) << "read back again";
  const std::size_t down_from = m.script.size();
  m.append(prices(99.99, 99.00, -0.01));
  m.next_tick = down_from;  // now, not after the rest of the flat script
  p.run_for(20s);
  ASSERT_EQ(p.guard.ghosts().size(), 1u);
  EXPECT_EQ(p.guard.ghosts()[0].client_order_id, stop);
}
