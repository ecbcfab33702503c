#include "routing/stop_guard.hpp"

#include <gtest/gtest.h>

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

StopGuardSettings settings(ProtectionPolicy policy) {
  StopGuardSettings s;
  s.policy = policy;
  s.ghost_grace = 2s;
  s.verify_deadline = 1s;
  return s;
}

// Buys `qty`, waits for the fill, then places a GTC sell stop; returns the stop's id.
std::string long_with_stop(SimSession& s, std::int64_t qty, const char* stop_price) {
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
  FaultProfile p;
  p.ghost_stop_rate = 1.0;
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

TEST(StopGuard, LocalStopFiresOnceAndSurvivesARestart) {
  std::vector<std::string> path(30, "100.00");
  SimSession s(FaultProfile{}, path);
  {
    StopGuard guard(s.loop, s.orders, s.journal, settings(ProtectionPolicy::local), {{"AAPL", s.instrument}});
    s.sim.start();
    s.run_for(200ms);
    s.orders.submit("sim", market_order("AAPL", Side::buy, 50));
    s.run_for(300ms);
    guard.arm_local_stop("sim", stop_order("AAPL", Side::sell, 50, Price::parse("99.50")));
    s.run_for(1s);
  }  // "restart": the guard is gone, the journal keeps the armed stop
  StopGuard guard(s.loop, s.orders, s.journal, settings(ProtectionPolicy::local), {{"AAPL", s.instrument}});
  s.journal.flush();
  guard.restore_local_stops();
  s.sim.subscribe_quotes({"AAPL"}, [&](const Quote& q) { guard.on_quote(q); });
  s.path->append(prices(99.99, 99.00, -0.01));
  s.run_for(20s);
  int market_sells = 0;
  for (const auto& o : s.venue.orders()) market_sells += o.type == OrderType::market && o.side == Side::sell;
  EXPECT_EQ(market_sells, 1);
  EXPECT_EQ(s.orders.position("sim", "AAPL"), 0);
  EXPECT_TRUE(s.venue.positions().empty());
  s.journal.flush();
  EXPECT_EQ(s.journal.events("local_stop_fired").size(), 1u);
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
