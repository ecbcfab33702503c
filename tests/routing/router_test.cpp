// Router: pre-trade checks, failover by health, return to primary, unknown outcomes never
// resent elsewhere, dual-run pairs, and one strategy object on two brokers by config alone.
// Two simulated venues on one manual clock; the venues' own records are the evidence.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "brokers/sim/sim_broker.hpp"
#include "routing/health_monitor.hpp"
#include "routing/router.hpp"
#include "routing/strategies/bracket_breakout.hpp"
#include "routing/strategy_runner.hpp"
#include "sim_harness.hpp"

namespace backstop {
namespace {

using namespace std::chrono_literals;
using testing_support::ScriptedPath;

// One simulated venue with its broker.
struct SimSide {
  SimSide(const std::string& name, Clock& clock, EventLoop& loop, FaultProfile profile, std::vector<std::string> lasts,
          std::uint64_t seed)
      : faults(std::move(profile), seed), venue(clock, faults), broker(options(name), loop, venue) {
    venue.add_instrument("AAPL", TickSize(Price::parse("0.01")));
    auto p = std::make_unique<ScriptedPath>("AAPL", std::move(lasts));
    path = p.get();
    broker.add_price_path(std::move(p));
  }
  static SimBrokerOptions options(const std::string& name) {
    SimBrokerOptions o;
    o.name = name;
    o.tick_interval = 100ms;
    return o;
  }
  // How many times each client order id reached this venue.
  std::map<std::string, int> arrivals() const {
    std::map<std::string, int> n;
    for (const auto& a : venue.arrivals()) n[a.client_order_id]++;
    return n;
  }
  FaultInjector faults;
  Venue venue;
  SimBroker broker;
  ScriptedPath* path = nullptr;
};

// Limits that stay out of the way unless a test is about them.
RiskConfig roomy_risk() {
  RiskConfig r;
  r.max_orders_per_second = 1000;
  return r;
}

struct TwoBrokers {
  explicit TwoBrokers(RouteConfig route, FaultProfile a_faults = FaultProfile::named("none"),
                      std::vector<std::string> lasts = {"100.00"}, RiskConfig risk = roomy_risk())
      : dir(std::filesystem::temp_directory_path() /
            ("backstop-router-" + std::to_string(::getpid()) + "-" + std::to_string(++counter()))),
        loop(clock),
        journal((std::filesystem::create_directories(dir), (dir / "j.db").string())),
        ids("R"),
        orders(loop, journal, ids, om_options()),
        a("a", clock, loop, std::move(a_faults), lasts, 1),
        b("b", clock, loop, FaultProfile::named("none"), lasts, 2),
        health(loop, journal, health_settings()),
        monitor(loop, health, {100ms, 200ms}),
        router(loop, orders, health, journal, risk, instruments()) {
    orders.add_broker(a.broker);
    orders.add_broker(b.broker);
    monitor.watch(a.broker);
    monitor.watch(b.broker);
    router.add_route(route);
    a.broker.subscribe_quotes({"AAPL"}, [this](const Quote& q) { router.on_quote(q); });
    b.broker.subscribe_quotes({"AAPL"}, [this](const Quote& q) { router.on_quote(q); });
    a.broker.start();
    b.broker.start();
    monitor.start();
    run_for(250ms);  // first quotes and health checks
  }
  ~TwoBrokers() {
    monitor.stop();
    a.broker.stop();
    b.broker.stop();
    std::filesystem::remove_all(dir);
  }
  static OrderManagerOptions om_options() {
    OrderManagerOptions o;
    o.resolve_retry_interval = 100ms;
    return o;
  }
  static BrokerHealthSettings health_settings() {
    BrokerHealthSettings s;
    s.open_interval = 1s;
    return s;
  }
  static std::map<std::string, Instrument> instruments() {
    Instrument i;
    i.symbol = "AAPL";
    return {{"AAPL", i}};
  }
  static int& counter() {
    static int n = 0;
    return n;
  }
  void run_for(Duration d) { loop.run_until(clock.now() + d.count()); }

  std::filesystem::path dir;
  ManualClock clock;
  EventLoop loop;
  Journal journal;
  ClientOrderIdGenerator ids;
  OrderManager orders;
  SimSide a, b;
  BrokerHealth health;
  HealthMonitor monitor;
  Router router;
};

RouteConfig route(std::vector<std::string> brokers, RouteMode mode = RouteMode::failover, bool back = true) {
  RouteConfig r;
  r.strategy = "s";
  r.brokers = std::move(brokers);
  r.mode = mode;
  r.return_to_primary = back;
  return r;
}

TEST(RouterChecks, RefusesOversizeOrderAndRecordsIt) {
  RiskConfig risk = roomy_risk();
  risk.max_order_quantity = 10;
  TwoBrokers t(route({"a", "b"}), FaultProfile::named("none"), {"100.00"}, risk);
  std::optional<CommandResult> result;
  const std::string coid = t.router.submit("s", limit_order("AAPL", Side::buy, 11, Price::parse("99.00")),
                                           [&](const CommandResult& r) { result = r; });
  t.run_for(100ms);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->outcome, Outcome::failed_locally);
  EXPECT_NE(result->message.find("max_order_quantity 10"), std::string::npos) << result->message;
  ASSERT_NE(t.orders.find(coid), nullptr);
  EXPECT_EQ(t.orders.find(coid)->state, OrderState::failed);
  EXPECT_TRUE(t.a.venue.arrivals().empty());
  EXPECT_TRUE(t.b.venue.arrivals().empty());
  t.journal.flush();
  bool journaled = false;
  for (const auto& o : t.journal.orders()) journaled |= o.spec.client_order_id == coid && o.state == OrderState::failed;
  EXPECT_TRUE(journaled) << "a refused order is on record";
}

TEST(RouterChecks, NotionalUsesMultiplierAndMarketPrice) {
  RiskConfig risk = roomy_risk();
  risk.max_notional = Price::from_integer(5'000);
  TwoBrokers t(route({"a"}), FaultProfile::named("none"), {"100.00"}, risk);
  // 50 x 100.00 = 5,000: allowed. 51 x 100.00: refused. Market orders use the last trade.
  EXPECT_EQ(t.router.check("a", market_order("AAPL", Side::buy, 50)), "");
  EXPECT_EQ(t.router.check("a", market_order("AAPL", Side::buy, 51)), "notional 5100 exceeds risk.max_notional 5000");
  // Exact, as every price: 40 x 125.01 is 5000.4, not a rounded double.
  EXPECT_EQ(t.router.check("a", limit_order("AAPL", Side::buy, 40, Price::parse("125.01"))),
            "notional 5000.4 exceeds risk.max_notional 5000");
  EXPECT_NE(t.router.check("a", market_order("MSFT", Side::buy, 1)).find("unknown instrument MSFT"), std::string::npos);
  // A limit below zero (a strategy's offset past the price) is refused as what it is.
  EXPECT_EQ(t.router.check("a", limit_order("AAPL", Side::buy, 10, Price::parse("-9767.01"))),
            "notional -97670.1 is negative (price -9767.01)");
}

TEST(RouterChecks, OrdersPerSecondPerBroker) {
  RiskConfig risk;
  risk.max_orders_per_second = 3;
  TwoBrokers t(route({"a"}), FaultProfile::named("none"), {"100.00"}, risk);
  int refused = 0;
  std::string why;
  for (int i = 0; i < 5; ++i)
    t.router.submit("s", limit_order("AAPL", Side::buy, 1, Price::parse("90.00")), [&](const CommandResult& r) {
      if (r.outcome == Outcome::failed_locally) ++refused, why = r.message;
    });
  t.run_for(50ms);
  EXPECT_EQ(refused, 2);  // a burst of 3, then nothing until the budget refills
  EXPECT_NE(why.find("more than risk.max_orders_per_second (3) order requests to a"), std::string::npos) << why;
  t.run_for(1s);
  std::optional<CommandResult> later;
  t.router.submit("s", limit_order("AAPL", Side::buy, 1, Price::parse("90.00")),
                  [&](const CommandResult& r) { later = r; });
  t.run_for(100ms);
  ASSERT_TRUE(later);
  EXPECT_EQ(later->outcome, Outcome::accepted);
  EXPECT_EQ(t.a.venue.arrivals().size(), 4u);
}

// Protection `local`: the route's stops are held by Backstop at the broker they would have gone
// to, after the same checks, never sent; its other orders go as usual; its brackets are refused.
TEST(RouterLocal, StopsAreHeldOtherOrdersSentBracketsRefused) {
  RiskConfig risk = roomy_risk();
  risk.max_order_quantity = 100;
  TwoBrokers t(route({"a", "b"}), FaultProfile::named("none"), {"100.00"}, risk);
  t.router.hold_stops("s");
  std::optional<CommandResult> held, entry, oversize, bracket;
  const auto e = t.router.submit("s", market_order("AAPL", Side::buy, 10), [&](const CommandResult& r) { entry = r; });
  const auto stop = t.router.submit("s", stop_order("AAPL", Side::sell, 10, Price::parse("99.00")),
                                    [&](const CommandResult& r) { held = r; });
  const auto big = t.router.submit("s", stop_order("AAPL", Side::sell, 101, Price::parse("99.00")),
                                   [&](const CommandResult& r) { oversize = r; });
  BracketSpec b{limit_order("AAPL", Side::buy, 10, Price::parse("99.50")),
                limit_order("AAPL", Side::sell, 10, Price::parse("101.00")),
                stop_order("AAPL", Side::sell, 10, Price::parse("98.00"))};
  const BracketIds ids = t.router.submit_bracket("s", b, [&](const CommandResult& r) { bracket = r; });
  t.run_for(500ms);
  ASSERT_TRUE(entry && held && oversize && bracket);
  EXPECT_EQ(entry->outcome, Outcome::accepted);
  EXPECT_EQ(t.orders.find(e)->state, OrderState::filled);
  EXPECT_EQ(held->outcome, Outcome::accepted) << held->message;
  const OrderRecord* h = t.orders.find(stop);
  EXPECT_EQ(h->state, OrderState::held);
  EXPECT_EQ(h->broker, "a") << "held at the broker the route sends to";
  EXPECT_EQ(h->spec.strategy, "s");
  EXPECT_EQ(oversize->outcome, Outcome::failed_locally) << "held stops pass the same checks";
  EXPECT_EQ(t.orders.find(big)->state, OrderState::failed);
  EXPECT_EQ(bracket->outcome, Outcome::failed_locally);
  EXPECT_NE(bracket->message.find("protection local"), std::string::npos) << bracket->message;
  for (const auto& leg : {ids.entry, ids.take_profit, ids.protective_stop})
    EXPECT_EQ(t.orders.find(leg)->state, OrderState::failed) << leg;
  EXPECT_EQ(t.a.arrivals(), (std::map<std::string, int>{{e, 1}})) << "only the entry reached a venue";
  EXPECT_TRUE(t.b.venue.arrivals().empty());
  // Cancelled through the router: at once, nothing sent.
  std::optional<CommandResult> cancelled;
  t.router.cancel(stop, [&](const CommandResult& r) { cancelled = r; });
  ASSERT_TRUE(cancelled);
  EXPECT_EQ(cancelled->outcome, Outcome::accepted);
  EXPECT_EQ(t.orders.find(stop)->state, OrderState::cancelled);
  EXPECT_EQ(t.a.venue.arrivals().size(), 1u);
}

TEST(RouterFailover, NewOrdersMoveWithinOneCheckPlusTimeoutAndReturn) {
  TwoBrokers t(route({"a", "b"}));
  EXPECT_EQ(t.router.choose("s"), "a");
  const Timestamp failed_at = t.clock.now();
  t.a.broker.set_link_up(false);
  // Orders sent every 20 ms; after one check interval plus one request timeout, all go to b.
  std::vector<std::pair<Timestamp, std::string>> sent;
  for (int i = 0; i < 25; ++i) {
    sent.emplace_back(t.clock.now(), t.router.submit("s", limit_order("AAPL", Side::buy, 1, Price::parse("90.00"))));
    t.run_for(20ms);
  }
  const Timestamp bound = failed_at + to_ns(100ms + 200ms);
  const auto at_b = t.b.arrivals();
  for (const auto& [when, coid] : sent) {
    if (when <= bound) continue;
    const OrderRecord* o = t.orders.find(coid);
    EXPECT_EQ(at_b.count(coid), 1u) << coid << " sent " << (when - failed_at) / 1'000'000 << " ms after the failure: "
                                    << o->broker << " " << to_string(o->state) << " " << o->last_message;
  }
  EXPECT_EQ(t.health.circuit("a"), Circuit::open);
  ASSERT_FALSE(t.router.switches().empty());
  EXPECT_EQ(t.router.switches().front().to, "b");
  // a comes back: after the cool-down a passing check half-opens, the next closes, orders return.
  t.a.broker.set_link_up(true);
  t.run_for(1500ms);
  EXPECT_EQ(t.health.circuit("a"), Circuit::closed);
  const std::string back = t.router.submit("s", limit_order("AAPL", Side::buy, 1, Price::parse("90.00")));
  t.run_for(100ms);
  EXPECT_EQ(t.a.arrivals().count(back), 1u);
  EXPECT_EQ(t.router.switches().back().to, "a");
  // Nothing anywhere twice, nothing at both.
  for (const auto& [coid, n] : t.a.arrivals()) {
    EXPECT_EQ(n, 1) << coid;
    EXPECT_EQ(at_b.count(coid), 0u) << coid << " reached both brokers";
  }
}

TEST(RouterFailover, StaysOnSecondaryWithoutReturnToPrimary) {
  TwoBrokers t(route({"a", "b"}, RouteMode::failover, false));
  t.a.broker.set_link_up(false);
  t.run_for(400ms);
  EXPECT_EQ(t.router.choose("s"), "b");
  t.a.broker.set_link_up(true);
  t.run_for(2s);
  EXPECT_EQ(t.health.circuit("a"), Circuit::closed);
  EXPECT_EQ(t.router.choose("s"), "b");
}

TEST(RouterFailover, UnknownOutcomeIsResolvedAtItsBrokerNeverResent) {
  FaultProfile lost = FaultProfile::named("none");
  lost.lost_reply_rate = 1.0;         // every reply from a is lost: the venue has the order...
  lost.drop_order_event_rate = 1.0;   // ...and its stream says nothing: only a query can tell
  TwoBrokers t(route({"a", "b"}), lost);
  std::optional<CommandResult> first;
  const std::string coid = t.router.submit("s", limit_order("AAPL", Side::buy, 1, Price::parse("90.00")),
                                           [&](const CommandResult& r) { first = r; });
  t.run_for(50ms);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->outcome, Outcome::unknown);
  // a keeps losing answers and then goes down entirely; the router moves new orders to b...
  t.a.broker.set_link_up(false);
  t.run_for(500ms);
  const std::string next = t.router.submit("s", limit_order("AAPL", Side::buy, 1, Price::parse("90.00")));
  t.run_for(100ms);
  EXPECT_EQ(t.b.arrivals().count(next), 1u);
  // ...but the unknown order stays a's: still pending (a cannot answer), never sent to b.
  EXPECT_EQ(t.b.arrivals().count(coid), 0u);
  EXPECT_EQ(t.a.arrivals().at(coid), 1);
  EXPECT_EQ(t.orders.find(coid)->state, OrderState::pending);
  EXPECT_EQ(t.orders.find(coid)->broker, "a");
  // a answers again: the order is resolved by its client order id.
  t.a.faults.set_profile(FaultProfile::named("none"));
  t.a.broker.set_link_up(true);
  t.orders.resync();
  t.run_for(500ms);
  EXPECT_EQ(t.orders.find(coid)->state, OrderState::submitted);
  EXPECT_EQ(t.a.arrivals().at(coid), 1);
  EXPECT_EQ(t.b.arrivals().count(coid), 0u);
}

TEST(RouterFailover, NoBrokerTakingOrdersRefusesWithEveryBrokersState) {
  TwoBrokers t(route({"a", "b"}));
  t.a.broker.set_link_up(false);
  t.b.broker.set_link_up(false);
  t.run_for(400ms);
  std::optional<CommandResult> r;
  t.router.submit("s", limit_order("AAPL", Side::buy, 1, Price::parse("90.00")), [&](const CommandResult& x) { r = x; });
  t.run_for(50ms);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->outcome, Outcome::failed_locally);
  EXPECT_NE(r->message.find("a down (circuit open), b down (circuit open)"), std::string::npos) << r->message;
  EXPECT_EQ(t.router.refused(), 1u);

  // A bracket is one request: refused once, its three legs on record as failed, the strategy's.
  BracketSpec b;
  b.entry = limit_order("AAPL", Side::buy, 1, Price::parse("90.00"));
  b.take_profit = limit_order("AAPL", Side::sell, 1, Price::parse("91.00"));
  b.protective_stop = stop_order("AAPL", Side::sell, 1, Price::parse("89.00"));
  std::optional<CommandResult> br;
  const BracketIds ids = t.router.submit_bracket("s", b, [&](const CommandResult& x) { br = x; });
  ASSERT_TRUE(br);
  EXPECT_EQ(br->outcome, Outcome::failed_locally);
  EXPECT_EQ(t.router.refused(), 2u);
  for (const auto& leg : {ids.entry, ids.take_profit, ids.protective_stop}) {
    ASSERT_NE(t.orders.find(leg), nullptr) << leg;
    EXPECT_EQ(t.orders.find(leg)->state, OrderState::failed) << leg;
    EXPECT_EQ(t.orders.find(leg)->spec.strategy, "s") << leg;
  }
}

TEST(RouterDual, EveryOrderGoesToBothAndPairsAreJournaled) {
  TwoBrokers t(route({"a", "b"}, RouteMode::dual));
  const std::string single = t.router.submit("s", limit_order("AAPL", Side::buy, 3, Price::parse("99.00")));
  BracketSpec br;
  br.entry = limit_order("AAPL", Side::buy, 2, Price::parse("100.01"));
  br.take_profit = limit_order("AAPL", Side::sell, 2, Price::parse("101.00"), TimeInForce::gtc);
  br.protective_stop = stop_order("AAPL", Side::sell, 2, Price::parse("99.50"), TimeInForce::gtc);
  const BracketIds ids = t.router.submit_bracket("s", br);
  t.run_for(500ms);
  t.router.cancel(single);
  t.run_for(300ms);
  t.journal.flush();

  const auto pairs = t.journal.events("dual_pair");
  ASSERT_EQ(pairs.size(), 4u);
  for (const auto& ev : pairs) {
    const auto j = nlohmann::json::parse(ev.detail);
    const std::string ca = j["orders"]["a"], cb = j["orders"]["b"];
    const VenueOrder* oa = t.a.venue.find_by_client_id(ca);
    const VenueOrder* ob = t.b.venue.find_by_client_id(cb);
    ASSERT_NE(oa, nullptr) << ca;
    ASSERT_NE(ob, nullptr) << cb;
    // Identical intent at both venues.
    EXPECT_EQ(oa->side, ob->side);
    EXPECT_EQ(oa->quantity, ob->quantity);
    EXPECT_EQ(oa->type, ob->type);
    EXPECT_EQ(oa->limit_price, ob->limit_price);
    EXPECT_EQ(oa->stop_price, ob->stop_price);
    EXPECT_EQ(oa->tif, ob->tif);
    EXPECT_EQ(t.b.venue.find_by_client_id(ca), nullptr) << "each side under its own client order id";
  }
  EXPECT_EQ(nlohmann::json::parse(pairs[0].detail)["pair"], single);
  EXPECT_EQ(nlohmann::json::parse(pairs[1].detail)["pair"], ids.entry);
  // The cancel followed to the partner.
  EXPECT_EQ(t.a.venue.find_by_client_id(single)->status, VenueStatus::cancelled);
  EXPECT_EQ(t.b.venue.find_by_client_id(*t.router.partner(single))->status, VenueStatus::cancelled);
}

// The same strategy class, run on broker a and then on broker b with only the route changed,
// sends orders of identical intent.
TEST(RouterStrategy, SameStrategyOnEitherBrokerByConfigOnly) {
  std::vector<std::string> lasts;
  for (int i = 0; i < 30; ++i) lasts.push_back(i % 2 ? "100.00" : "100.02");
  for (int i = 0; i < 10; ++i) lasts.push_back("100.0" + std::to_string(3 + (i % 5)));  // breakout up
  std::vector<std::vector<VenueOrder>> seen;
  for (const std::string broker : {"a", "b"}) {
    TwoBrokers t(route({broker}), FaultProfile::named("none"), lasts);
    BracketBreakoutParams p;
    p.symbol = "AAPL";
    p.quantity = 5;
    p.lookback = 20;
    BracketBreakout strategy(p, "s");
    StrategyRunner runner(strategy, t.router, t.loop, "s");
    SimSide& side = broker == "a" ? t.a : t.b;
    side.broker.subscribe_quotes({"AAPL"}, [&](const Quote& q) {
      t.router.on_quote(q);
      runner.on_quote(q);
    });
    runner.start();
    t.run_for(5s);
    runner.stop();
    SimSide& other = broker == "a" ? t.b : t.a;
    EXPECT_TRUE(other.venue.orders().empty()) << "nothing at the broker the route does not name";
    seen.push_back(side.venue.orders());
  }
  ASSERT_FALSE(seen[0].empty());
  ASSERT_EQ(seen[0].size(), seen[1].size());
  for (std::size_t i = 0; i < seen[0].size(); ++i) {
    EXPECT_EQ(seen[0][i].side, seen[1][i].side);
    EXPECT_EQ(seen[0][i].quantity, seen[1][i].quantity);
    EXPECT_EQ(seen[0][i].type, seen[1][i].type);
    EXPECT_EQ(seen[0][i].limit_price, seen[1][i].limit_price);
    EXPECT_EQ(seen[0][i].stop_price, seen[1][i].stop_price);
  }
}

// A runner destroyed while its orders are still working (a strategy removed, the loop and the
// OrderManager going on): the listeners it left with the OrderManager reach nothing.
TEST(RouterStrategy, UpdatesAfterTheRunnerIsDestroyedReachNoStrategy) {
  struct Counting final : Strategy {
    const std::string& name() const override { return name_; }
    void on_order_update(StrategyContext&, const OrderRecord&) override { ++updates; }
    void on_fill(StrategyContext&, const Fill&, const OrderRecord&) override { ++fills; }
    std::string name_ = "s";
    int updates = 0, fills = 0;
  } strategy;
  TwoBrokers t(route({"a"}));
  auto runner = std::make_unique<StrategyRunner>(strategy, t.router, t.loop, "s");
  runner->start();
  const std::string limit = runner->submit(limit_order("AAPL", Side::buy, 5, Price::parse("99.00")));
  const std::string market = runner->submit(market_order("AAPL", Side::buy, 5));
  t.run_for(1s);
  ASSERT_GT(strategy.updates, 0);
  ASSERT_EQ(t.orders.find(market)->state, OrderState::filled);
  const int updates = strategy.updates, fills = strategy.fills;
  runner.reset();
  t.orders.cancel(limit);
  t.orders.submit("a", market_order("AAPL", Side::sell, 5));  // fills and position changes
  t.run_for(1s);
  EXPECT_EQ(t.orders.find(limit)->state, OrderState::cancelled);
  EXPECT_EQ(strategy.updates, updates);
  EXPECT_EQ(strategy.fills, fills);
}

// Restarts: the router process is destroyed with no shutdown (as a SIGKILL leaves it) and a new
// one starts on the same journal, against the same two venues, which live outside the process.
struct Venues {
  Venues()
      : dir(std::filesystem::temp_directory_path() /
            ("backstop-router-restart-" + std::to_string(::getpid()) + "-" + std::to_string(++counter()))),
        faults(FaultProfile::named("none"), 1),
        a(clock, faults),
        b(clock, faults) {
    std::filesystem::create_directories(dir);
    for (Venue* v : {&a, &b}) v->add_instrument("AAPL", TickSize(Price::parse("0.01")));
  }
  ~Venues() { std::filesystem::remove_all(dir); }
  static int& counter() {
    static int n = 0;
    return n;
  }
  std::string journal_path() const { return (dir / "j.db").string(); }
  std::filesystem::path dir;
  ManualClock clock;
  FaultInjector faults;
  Venue a, b;
};

struct RouterProcess {
  RouterProcess(Venues& v, const RouteConfig& r, const std::string& id_prefix)
      : loop(v.clock),
        journal(v.journal_path()),
        ids(id_prefix),
        orders(loop, journal, ids, TwoBrokers::om_options()),
        a(SimSide::options("a"), loop, v.a),
        b(SimSide::options("b"), loop, v.b),
        health(loop, journal, TwoBrokers::health_settings()),
        router(loop, orders, health, journal, roomy_risk(), TwoBrokers::instruments()) {
    for (SimBroker* s : {&a, &b}) {
      s->add_price_path(std::make_unique<ScriptedPath>("AAPL", std::vector<std::string>{"100.00"}));
      orders.add_broker(*s);
      s->subscribe_quotes({"AAPL"}, [this](const Quote& q) { router.on_quote(q); });
      s->start();
    }
    router.add_route(r);
    run_for(250ms);
  }
  // Session::start's order: recovery against the brokers, then the router's restore.
  void recover() {
    bool done = false;
    orders.recover([&](std::size_t, std::size_t) { done = true; });
    for (int i = 0; i < 500 && !done; ++i) run_for(10ms);
    ASSERT_TRUE(done);
    router.restore_pairs();
  }
  void run_for(Duration d) { loop.run_until(loop.now() + d.count()); }

  EventLoop loop;
  Journal journal;
  ClientOrderIdGenerator ids;
  OrderManager orders;
  SimBroker a, b;
  BrokerHealth health;
  Router router;
};

struct Following final : Strategy {
  const std::string& name() const override { return name_; }
  void on_resume(StrategyContext&, const std::vector<const OrderRecord*>& open) override {
    for (const OrderRecord* o : open) resumed.push_back(o->spec.client_order_id);
  }
  void on_order_update(StrategyContext&, const OrderRecord& o) override { updates.push_back(o.spec.client_order_id); }
  std::string name_ = "s";
  std::vector<std::string> updates, resumed;
};

// A restarted strategy owns the orders its route sent before: its position is the one it holds
// (not flat, which would make it open a second one), and its open orders' updates reach it.
TEST(RouterRestart, StrategyOwnsItsOrdersAgainAfterARestart) {
  Venues v;
  std::string filled, open, others;
  {
    RouterProcess p(v, route({"a"}), "R");
    Following strategy;
    StrategyRunner runner(strategy, p.router, p.loop, "s");
    runner.start();
    filled = runner.submit(market_order("AAPL", Side::buy, 5));
    open = runner.submit(limit_order("AAPL", Side::buy, 3, Price::parse("99.00")));
    p.run_for(1s);
    ASSERT_EQ(p.orders.find(filled)->state, OrderState::filled);
    ASSERT_EQ(p.orders.find(open)->state, OrderState::submitted);
    ASSERT_EQ(runner.position("AAPL"), 5);
    // Someone else's order at the same broker (the guard's, say) is not the strategy's.
    others = p.orders.submit("a", limit_order("AAPL", Side::buy, 1, Price::parse("98.00")));
    p.run_for(1s);
  }  // killed
  RouterProcess p(v, route({"a"}), "S");
  Following strategy;
  StrategyRunner runner(strategy, p.router, p.loop, "s");  // before recovery, as in Session
  p.recover();
  EXPECT_EQ(p.orders.find(filled)->spec.strategy, "s") << "journaled with the route that sent it";
  EXPECT_TRUE(strategy.updates.empty()) << "nothing reaches the strategy before start()";
  runner.start();
  EXPECT_EQ(runner.position("AAPL"), 5);
  EXPECT_EQ(strategy.resumed, std::vector<std::string>{open}) << "its one open order, not the other's";
  p.orders.cancel(open);
  p.orders.cancel(others);
  p.run_for(1s);
  ASSERT_EQ(p.orders.find(open)->state, OrderState::cancelled);
  ASSERT_EQ(p.orders.find(others)->state, OrderState::cancelled);
  EXPECT_EQ(p.orders.find(others)->spec.strategy, "");
  EXPECT_NE(std::find(strategy.updates.begin(), strategy.updates.end(), open), strategy.updates.end());
  for (const auto& coid : strategy.updates) EXPECT_EQ(p.orders.find(coid)->spec.strategy, "s") << coid;
}

// An order open when the earlier run ended that ended while Backstop was down (here: killed before
// its request left, so recovery finds the broker never had it) is handed to on_resume too, as
// recovery left it: no update will ever tell the strategy it ended.
TEST(RouterRestart, OrderThatEndedWhileDownIsHandedToOnResumeAsRecoveryLeftIt) {
  Venues v;
  std::string lost, done;
  {
    RouterProcess p(v, route({"a"}), "R");
    Following strategy;
    StrategyRunner runner(strategy, p.router, p.loop, "s");
    runner.start();
    done = runner.submit(market_order("AAPL", Side::buy, 5));
    p.run_for(1s);
    ASSERT_EQ(p.orders.find(done)->state, OrderState::filled);
    lost = runner.submit(limit_order("AAPL", Side::buy, 3, Price::parse("99.00")));
  }  // killed before the loop ran again: journaled, never sent
  RouterProcess p(v, route({"a"}), "S");
  Following strategy;
  StrategyRunner runner(strategy, p.router, p.loop, "s");
  p.recover();
  ASSERT_EQ(p.orders.find(lost)->state, OrderState::failed) << "the broker never had it";
  runner.start();
  EXPECT_EQ(strategy.resumed, std::vector<std::string>{lost})
      << "the order open at the end, now failed; not the one that had filled before";
}

// A dual route's open order still takes its twin along on a cancel after a restart; the
// restarted strategy follows the first broker only, as before the restart.
TEST(RouterRestart, DualPairOfAnOpenOrderIsRestored) {
  Venues v;
  std::string first;
  {
    RouterProcess p(v, route({"a", "b"}, RouteMode::dual), "R");
    first = p.router.submit("s", limit_order("AAPL", Side::buy, 3, Price::parse("99.00")));
    p.router.submit("s", market_order("AAPL", Side::buy, 2));
    p.run_for(1s);
    ASSERT_TRUE(p.router.partner(first));
  }
  RouterProcess p(v, route({"a", "b"}, RouteMode::dual), "S");
  p.recover();
  const auto twin = p.router.partner(first);
  ASSERT_TRUE(twin) << "restored from the journal's dual_pair event";
  EXPECT_EQ(v.b.find_by_client_id(*twin)->status, VenueStatus::working);
  Following strategy;
  StrategyRunner runner(strategy, p.router, p.loop, "s");
  runner.start();
  EXPECT_EQ(runner.position("AAPL"), 2) << "the first broker's position, not both";
  EXPECT_EQ(strategy.resumed, std::vector<std::string>{first}) << "the first broker's order, not its twin";
  p.router.cancel(first);
  p.run_for(1s);
  EXPECT_EQ(v.a.find_by_client_id(first)->status, VenueStatus::cancelled);
  EXPECT_EQ(v.b.find_by_client_id(*twin)->status, VenueStatus::cancelled);
}

}  // namespace
}  // namespace backstop
