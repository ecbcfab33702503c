#include "routing/trigger_watchdog.hpp"

#include <gtest/gtest.h>

using namespace backstop;
using namespace std::chrono_literals;

namespace {
Quote quote(const char* bid, const char* ask, const char* last, Timestamp at) {
  Quote q;
  q.symbol = "ES";
  if (bid) q.bid = Price::parse(bid);
  if (ask) q.ask = Price::parse(ask);
  if (last) q.last = Price::parse(last);
  q.at = at;
  q.source = "feed";
  return q;
}
WatchedStop stop(const std::string& id, Side side, const char* price) {
  return {id, "ib", "ES", side, Price::parse(price), 1};
}
}  // namespace

TEST(TriggerWatchdog, LastTradeThroughTheStopCrossesIt) {
  TriggerWatchdog w(TriggerMethod::last, 2s);
  w.watch(stop("S1", Side::sell, "5000.00"));
  w.watch(stop("B1", Side::buy, "5010.00"));
  std::vector<CrossedStop> crossed;
  w.on_quote(quote("4999.75", "5000.25", "5000.25", 1), crossed);
  EXPECT_TRUE(crossed.empty());
  w.on_quote(quote("4999.75", "5000.25", "5000.00", 2), crossed);  // touching the stop is through
  ASSERT_EQ(crossed.size(), 1u);
  EXPECT_EQ(crossed[0].stop.client_order_id, "S1");
  EXPECT_EQ(crossed[0].crossed_at, 2);
  EXPECT_EQ(crossed[0].deadline, 2 + to_ns(2s));
  EXPECT_EQ(crossed[0].crossing_price, Price::parse("5000.00"));
  crossed.clear();
  w.on_quote(quote("4990", "4991", "4990", 3), crossed);
  EXPECT_TRUE(crossed.empty()) << "reported once";
}

TEST(TriggerWatchdog, BidAskUsesTheSideThatWouldFill) {
  TriggerWatchdog w(TriggerMethod::bid_ask, 2s);
  w.watch(stop("S1", Side::sell, "100.00"));
  w.watch(stop("B1", Side::buy, "101.00"));
  std::vector<CrossedStop> crossed;
  w.on_quote(quote("100.01", "101.00", "100.50", 1), crossed);  // ask at the buy stop
  ASSERT_EQ(crossed.size(), 1u);
  EXPECT_EQ(crossed[0].stop.client_order_id, "B1");
  crossed.clear();
  w.on_quote(quote("100.00", "100.02", "100.50", 2), crossed);  // bid at the sell stop, last above
  ASSERT_EQ(crossed.size(), 1u);
  EXPECT_EQ(crossed[0].stop.client_order_id, "S1");
}

TEST(TriggerWatchdog, DoubleBidAskNeedsTwoQuotesThrough) {
  TriggerWatchdog w(TriggerMethod::double_bid_ask, 2s);
  w.watch(stop("S1", Side::sell, "100.00"));
  std::vector<CrossedStop> crossed;
  w.on_quote(quote("99.99", "100.01", nullptr, 1), crossed);
  EXPECT_TRUE(crossed.empty()) << "one quote through is not enough";
  w.on_quote(quote("100.01", "100.03", nullptr, 2), crossed);
  EXPECT_TRUE(crossed.empty()) << "back above";
  w.on_quote(quote("99.98", "100.00", nullptr, 3), crossed);
  EXPECT_TRUE(crossed.empty());
  w.on_quote(quote("99.97", "99.99", nullptr, 4), crossed);
  ASSERT_EQ(crossed.size(), 1u);
  EXPECT_EQ(crossed[0].crossing_price, Price::parse("99.98"));
}

TEST(TriggerWatchdog, GraceExpiryMakesGhostsUnlessUnwatched) {
  TriggerWatchdog w(TriggerMethod::last, 2s);
  w.watch(stop("S1", Side::sell, "100"));
  w.watch(stop("S2", Side::sell, "99"));
  std::vector<CrossedStop> crossed, ghosts;
  w.on_quote(quote(nullptr, nullptr, "98", 10), crossed);
  EXPECT_EQ(crossed.size(), 2u);
  EXPECT_EQ(w.next_deadline(), 10 + to_ns(2s));
  w.unwatch("S2");  // its fill arrived within the grace
  w.expire(10 + to_ns(2s) - 1, ghosts);
  EXPECT_TRUE(ghosts.empty());
  w.expire(10 + to_ns(2s), ghosts);
  ASSERT_EQ(ghosts.size(), 1u);
  EXPECT_EQ(ghosts[0].stop.client_order_id, "S1");
  EXPECT_EQ(w.size(), 0u);
  EXPECT_FALSE(w.next_deadline().has_value());
}

TEST(TriggerWatchdog, ThousandsOfStopsOnlyTheCrossedOnesAreTouched) {
  TriggerWatchdog w(TriggerMethod::last, 2s);
  for (int i = 0; i < 5000; ++i) {
    WatchedStop s{"S" + std::to_string(i), "ib", "SYM" + std::to_string(i % 500), Side::sell,
                  Price::parse("100") - Price::parse("0.01") * (i / 500), 1};
    w.watch(s);
  }
  std::vector<CrossedStop> crossed;
  Quote q = quote(nullptr, nullptr, "99.95", 1);
  q.symbol = "SYM7";
  w.on_quote(q, crossed);
  // SYM7 holds stops at 100.00, 99.99, ..., 99.91: the 6 at or above 99.95 cross.
  EXPECT_EQ(crossed.size(), 6u);
  for (const auto& c : crossed) EXPECT_GE(c.stop.stop_price, Price::parse("99.95"));
  EXPECT_EQ(w.size(), 5000u);
  w.unwatch("S7");
  EXPECT_FALSE(w.watching("S7"));
  EXPECT_EQ(w.size(), 4999u);
}

// Protection `local`: a held stop crossed is reported once and leaves the watchdog at once. No
// broker holds it, so there is no grace period to wait out and no ghost to declare: the guard
// sends its exit.
TEST(TriggerWatchdog, HeldStopCrossedLeavesAtOnceAndNeverExpiresAsAGhost) {
  TriggerWatchdog w(TriggerMethod::last, 2s);
  WatchedStop held = stop("H1", Side::sell, "5000.00");
  held.held = true;
  w.watch(held);
  w.watch(stop("S1", Side::sell, "5000.00"));
  std::vector<CrossedStop> crossed;
  w.on_quote(quote("4999.75", "5000.25", "4999.50", 5), crossed);
  ASSERT_EQ(crossed.size(), 2u);
  for (const auto& c : crossed) {
    EXPECT_EQ(c.crossed_at, 5);
    EXPECT_EQ(c.crossing_price, Price::parse("4999.50"));
    EXPECT_EQ(c.source, "feed");
  }
  const auto& h = crossed[0].stop.client_order_id == "H1" ? crossed[0] : crossed[1];
  EXPECT_EQ(h.stop.client_order_id, "H1");
  EXPECT_TRUE(h.stop.held);
  EXPECT_EQ(h.stop.stop_price, Price::parse("5000.00"));
  EXPECT_FALSE(w.watching("H1"));
  EXPECT_FALSE(w.crossed("H1"));
  EXPECT_TRUE(w.crossed("S1")) << "a broker's stop waits out its grace";
  EXPECT_EQ(w.size(), 1u);
  crossed.clear();
  w.on_quote(quote("4990", "4991", "4990", 6), crossed);
  EXPECT_TRUE(crossed.empty()) << "reported once";
  std::vector<CrossedStop> ghosts;
  w.expire(5 + to_ns(2s), ghosts);
  ASSERT_EQ(ghosts.size(), 1u);
  EXPECT_EQ(ghosts[0].stop.client_order_id, "S1");
  w.unwatch("H1");  // the guard's unwatch after the release: nothing left to remove
  EXPECT_EQ(w.size(), 0u);
}
