#include "routing/stop_lint.hpp"

#include <gtest/gtest.h>

using namespace backstop;

namespace {

// A broker whose wire form the test decides: stands for an adapter that misplaces a field.
class WireBroker final : public Broker {
 public:
  explicit WireBroker(WireOrderView v) : view_(std::move(v)) {}
  const std::string& name() const override { return name_; }
  void submit(const OrderSpec&, CommandCallback) override {}
  void cancel(const std::string&, CommandCallback) override {}
  void subscribe_order_events(OrderEventHandler) override {}
  BrokerHealthReport health() const override { return {}; }
  std::optional<WireOrderView> preview(const OrderSpec&) const override { return view_; }
  std::string name_ = "ib";
  WireOrderView view_;
};

Instrument es() {
  Instrument i;
  i.symbol = "ES";
  i.asset_class = AssetClass::future;
  i.tick_size = TickSize(Price::parse("0.25"));
  return i;
}

OrderSpec sell_stop(const char* price) {
  OrderSpec o = stop_order("ES", Side::sell, 1, Price::parse(price), TimeInForce::gtc);
  o.client_order_id = "S1";
  return o;
}

WireOrderView faithful(const OrderSpec& o) {
  WireOrderView v;
  v.stop_price = o.stop_price;
  v.tif_explicit = true;
  v.tif = o.tif;
  v.outside_rth = o.outside_rth;
  v.request = "{...}";
  return v;
}

Quote market(const char* bid, const char* ask) {
  Quote q;
  q.symbol = "ES";
  q.bid = Price::parse(bid);
  q.ask = Price::parse(ask);
  return q;
}

bool has(const std::vector<LintFinding>& f, const std::string& field, const std::string& words) {
  for (const auto& x : f)
    if (x.field == field && x.to_string().find(words) != std::string::npos) return true;
  return false;
}

}  // namespace

TEST(StopLint, CleanStopPasses) {
  const auto o = sell_stop("4990.00");
  WireBroker b(faithful(o));
  EXPECT_TRUE(lint_stop(o, es(), b, market("5000.00", "5000.25"), {}).empty());
}

TEST(StopLint, StopPriceInTheWrongWireField) {
  const auto o = sell_stop("4990.00");
  auto wire = faithful(o);
  wire.stop_price.reset();  // e.g. sent in auxPrice where the broker reads price
  WireBroker b(wire);
  const auto f = lint_stop(o, es(), b, std::nullopt, {});
  ASSERT_TRUE(has(f, "stop_price", "ib would read the stop as absent")) << f.at(0).to_string();
  EXPECT_NE(f[0].to_string().find("order S1: stop_price:"), std::string::npos);
  EXPECT_NE(f[0].fix.find("field ib reads"), std::string::npos);
}

TEST(StopLint, TimeInForceMustBeExplicitAndAsRequired) {
  auto o = sell_stop("4990.00");
  o.tif = TimeInForce::day;
  auto wire = faithful(o);
  wire.tif_explicit = false;
  WireBroker b(wire);
  const auto f = lint_stop(o, es(), b, std::nullopt, {});
  EXPECT_TRUE(has(f, "time_in_force", "is day, the route requires gtc"));
  EXPECT_TRUE(has(f, "time_in_force", "not explicit on the wire"));
}

TEST(StopLint, OutsideRegularHoursAsConfigured) {
  auto o = sell_stop("4990.00");
  WireBroker b(faithful(o));
  StopLintPolicy p;
  p.outside_rth = true;
  EXPECT_TRUE(has(lint_stop(o, es(), b, std::nullopt, p), "outside_rth", "route requires it"));
}

TEST(StopLint, ManualIndicatorForUsFutures) {
  const auto o = sell_stop("4990.00");
  auto wire = faithful(o);
  wire.manual_indicator_required = true;
  WireBroker b(wire);
  EXPECT_TRUE(has(lint_stop(o, es(), b, std::nullopt, {}), "manual_indicator", "requires it for ES"));
}

TEST(StopLint, StopAlreadyThroughTheMarketIsRefusedUnlessAllowed) {
  const auto o = sell_stop("5000.25");
  WireBroker b(faithful(o));
  EXPECT_TRUE(has(lint_stop(o, es(), b, market("5000.00", "5000.25"), {}), "stop_price", "would trigger at once"));
  StopLintPolicy allow;
  allow.allow_marketable = true;
  EXPECT_TRUE(lint_stop(o, es(), b, market("5000.00", "5000.25"), allow).empty());
  OrderSpec buy = o;
  buy.side = Side::buy;
  buy.stop_price = Price::parse("5000.00");
  WireBroker b2(faithful(buy));
  EXPECT_TRUE(has(lint_stop(buy, es(), b2, market("5000.00", "5000.25"), {}), "stop_price", "above the ask"));
}

TEST(StopLint, OffTickStopPrice) {
  const auto o = sell_stop("4990.10");
  WireBroker b(faithful(o));
  EXPECT_TRUE(has(lint_stop(o, es(), b, std::nullopt, {}), "stop_price", "round it to 4990"));
}
