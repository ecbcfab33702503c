// Stop lint against each real adapter's wire form (preview() builds the exact request body the
// adapter would send). The rule tests in tests/routing/stop_lint_test.cpp use a made-up wire; these
// prove each rule holds, and does not misfire, on the TradeStation and IBKR request bodies, so an
// adapter that moves the stop into a field its broker does not read fails here.
#include <gtest/gtest.h>

#include "brokers/ibkr/ibkr_broker.hpp"
#include "brokers/sim/fault_injector.hpp"
#include "brokers/tradestation/tradestation_broker.hpp"
#include "core/event_loop.hpp"
#include "routing/stop_lint.hpp"

using namespace backstop;

namespace {

Instrument stock() {
  Instrument i;
  i.symbol = "AAPL";
  i.tick_size = TickSize(Price::parse("0.01"));
  return i;
}
Instrument future() {
  Instrument i;
  i.symbol = "ES";
  i.asset_class = AssetClass::future;
  i.tick_size = TickSize(Price::parse("0.25"));
  return i;
}
Quote market(const char* symbol, const char* bid, const char* ask) {
  Quote q;
  q.symbol = symbol;
  q.bid = Price::parse(bid);
  q.ask = Price::parse(ask);
  return q;
}
OrderSpec sell_stop(const char* symbol, const char* stop, TimeInForce tif = TimeInForce::gtc) {
  OrderSpec o = stop_order(symbol, Side::sell, 1, Price::parse(stop), tif);
  o.client_order_id = "LINT1";
  return o;
}
bool has(const std::vector<LintFinding>& f, const std::string& field, const std::string& words = {}) {
  for (const auto& x : f)
    if (x.field == field && x.to_string().find(words) != std::string::npos) return true;
  return false;
}
std::string all(const std::vector<LintFinding>& f) {
  std::string s;
  for (const auto& x : f) s += x.to_string() + "\n";
  return s;
}

// Adapters built but never started: preview() needs no connection.
struct Adapters {
  Adapters() {
    tradestation::TradeStationOptions t;
    t.account = "SIM2784990M";
    // Never contacted (nothing is started); the adapter still requires well-formed endpoints.
    t.settings.base_url = "http://127.0.0.1:9/v3";
    t.settings.token_url = "http://127.0.0.1:9/oauth/token";
    t.symbols = {{"AAPL", "AAPL"}, {"ES", "ESZ26"}};
    ts = std::make_unique<tradestation::TradeStationBroker>(t, loop);
    IbkrBrokerOptions i;
    i.symbols = {{"AAPL", "265598"}, {"ES", "ES:CME:202612"}};
    i.manual_indicator = false;
    ib = std::make_unique<IbkrBroker>(i, loop);
    i.manual_indicator = true;
    i.name = "ibkr_manual";
    ib_manual = std::make_unique<IbkrBroker>(i, loop);
  }
  std::vector<const Broker*> both() const { return {ts.get(), ib.get()}; }
  ManualClock clock;
  EventLoop loop{clock};
  std::unique_ptr<tradestation::TradeStationBroker> ts;
  std::unique_ptr<IbkrBroker> ib, ib_manual;
};

}  // namespace

TEST(WireLint, CleanStopPassesOnEveryBrokersWire) {
  Adapters a;
  for (const Broker* b : a.both()) {
    const auto o = sell_stop("AAPL", "189.50");
    ASSERT_TRUE(b->preview(o)) << b->name();
    const auto f = lint_stop(o, stock(), *b, market("AAPL", "190.00", "190.01"), {});
    EXPECT_TRUE(f.empty()) << b->name() << ": " << all(f);
  }
}

// The stop price must be where each broker reads it: TradeStation StopPrice; IBKR STP `price`,
// STOP_LIMIT `auxPrice` (with the limit in `price`).
TEST(WireLint, StopPriceIsInTheFieldEachBrokerReads) {
  Adapters a;
  for (const Broker* b : a.both()) {
    auto o = sell_stop("AAPL", "189.50");
    auto wire = b->preview(o);
    ASSERT_TRUE(wire) << b->name();
    EXPECT_EQ(wire->stop_price, o.stop_price) << b->name() << " " << wire->request;
    o.type = OrderType::stop_limit;
    o.limit_price = Price::parse("189.00");
    wire = b->preview(o);
    ASSERT_TRUE(wire) << b->name();
    EXPECT_EQ(wire->stop_price, o.stop_price) << b->name() << " " << wire->request;
    EXPECT_EQ(wire->limit_price, o.limit_price) << b->name() << " " << wire->request;
    EXPECT_FALSE(has(lint_stop(o, stock(), *b, std::nullopt, {}), "stop_price")) << b->name();
  }
  // The IBKR body itself: STP carries the stop in `price` and no auxPrice.
  const auto ib = a.ib->preview(sell_stop("AAPL", "189.50"));
  const auto body = nlohmann::json::parse(ib->request);
  EXPECT_EQ(body.value("orderType", ""), "STP") << ib->request;
  EXPECT_FALSE(body.contains("auxPrice")) << ib->request;
}

TEST(WireLint, DayStopIsFlaggedAndTimeInForceIsExplicitOnEveryWire) {
  Adapters a;
  for (const Broker* b : a.both()) {
    const auto o = sell_stop("AAPL", "189.50", TimeInForce::day);
    const auto wire = b->preview(o);
    ASSERT_TRUE(wire) << b->name();
    EXPECT_TRUE(wire->tif_explicit) << b->name() << " " << wire->request;
    EXPECT_EQ(wire->tif, TimeInForce::day) << b->name();
    const auto f = lint_stop(o, stock(), *b, std::nullopt, {});
    EXPECT_TRUE(has(f, "time_in_force", "is day, the route requires gtc")) << b->name() << ": " << all(f);
    EXPECT_FALSE(has(f, "time_in_force", "not explicit")) << b->name();
  }
}

TEST(WireLint, OutsideRegularHoursAsConfiguredOnEveryWire) {
  Adapters a;
  StopLintPolicy rth;
  rth.outside_rth = true;
  for (const Broker* b : a.both()) {
    auto o = sell_stop("AAPL", "189.50");
    EXPECT_TRUE(has(lint_stop(o, stock(), *b, std::nullopt, rth), "outside_rth", "route requires it")) << b->name();
    o.outside_rth = true;
    const auto f = lint_stop(o, stock(), *b, std::nullopt, rth);
    // Set on the order and carried by the wire (TradeStation as a "plus" duration, IBKR outsideRTH).
    EXPECT_FALSE(has(f, "outside_rth")) << b->name() << ": " << all(f) << b->preview(o)->request;
  }
}

// IBKR's adapter always writes manualIndicator (false: generated by Backstop, true when
// configured) on US futures, so both of its wires pass; a wire that lacks it is flagged.
class WireWithoutManualIndicator final : public Broker {
 public:
  explicit WireWithoutManualIndicator(const Broker& real) : real_(real) {}
  const std::string& name() const override { return real_.name(); }
  void submit(const OrderSpec&, CommandCallback done) override { done(CommandResult::failed("not used")); }
  void cancel(const std::string&, CommandCallback done) override { done(CommandResult::failed("not used")); }
  void subscribe_order_events(OrderEventHandler) override {}
  BrokerHealthReport health() const override { return {}; }
  std::optional<WireOrderView> preview(const OrderSpec& o) const override {
    auto v = real_.preview(o);
    if (v) v->manual_indicator_set = false;  // as if the field had been left out
    return v;
  }

 private:
  const Broker& real_;
};

TEST(WireLint, ManualIndicatorForUsFuturesAtIbkrOnly) {
  Adapters a;
  const auto o = sell_stop("ES", "4990.00");
  for (const Broker* ib : {static_cast<const Broker*>(a.ib.get()), static_cast<const Broker*>(a.ib_manual.get())}) {
    const auto f = lint_stop(o, future(), *ib, std::nullopt, {});
    EXPECT_FALSE(has(f, "manual_indicator")) << ib->name() << ": " << all(f);
    EXPECT_NE(ib->preview(o)->request.find("manualIndicator"), std::string::npos) << ib->preview(o)->request;
  }
  WireWithoutManualIndicator missing(*a.ib);
  EXPECT_TRUE(has(lint_stop(o, future(), missing, std::nullopt, {}), "manual_indicator", "requires it for ES"));
  EXPECT_FALSE(has(lint_stop(o, future(), *a.ts, std::nullopt, {}), "manual_indicator"))
      << "TradeStation has no such field";
}

TEST(WireLint, StopThroughTheMarketAndOffTickOnEveryWire) {
  Adapters a;
  for (const Broker* b : a.both()) {
    EXPECT_TRUE(has(lint_stop(sell_stop("AAPL", "190.00"), stock(), *b, market("AAPL", "190.00", "190.01"), {}),
                    "stop_price", "would trigger at once"))
        << b->name();
    EXPECT_TRUE(has(lint_stop(sell_stop("ES", "4990.10"), future(), *b, std::nullopt, {}), "stop_price",
                    "round it to 4990"))
        << b->name();
  }
}
