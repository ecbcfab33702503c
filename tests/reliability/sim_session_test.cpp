// The report computed from a journal written by a real (simulated) session, checked against the
// venue's own record of what happened: the fault injector's log and the venue's orders and
// fills. The two are independent paths: if the report miscounted, or the router failed to
// journal a fact, the numbers would disagree.
#include <gtest/gtest.h>

#include <regex>

#include "reliability/reliability.hpp"
#include "routing/stop_guard.hpp"
#include "tests/routing/sim_harness.hpp"

using namespace backstop;
using namespace backstop::reliability;
using namespace backstop::testing_support;
using namespace std::chrono_literals;

namespace {

std::vector<std::string> flat_then_down(int flat_ticks, int from_cents, int to_cents) {
  std::vector<std::string> path(static_cast<std::size_t>(flat_ticks), "100.00");
  for (int c = from_cents; c >= to_cents; --c) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%d.%02d", c / 100, c % 100);
    path.push_back(buf);
  }
  return path;
}

// A seeded session with ghost stops, rejects and acknowledgement delays: eight longs, each
// protected by a sell stop that the price then falls through; one more stop far below the
// market that is cancelled.
struct FaultySession {
  static FaultProfile profile() {
    FaultProfile p;
    p.name = "reliability-test";
    p.ghost_stop_rate = 0.5;
    p.reject_rate = 0.2;
    p.ack_delay = 20ms;
    p.ack_delay_jitter = 30ms;
    return p;
  }
  static StopGuardSettings guard_settings() {
    StopGuardSettings g;
    g.policy = ProtectionPolicy::verify;  // alert only: no flatten orders to account for
    g.ghost_grace = 2s;
    g.verify_deadline = 1s;
    return g;
  }

  FaultySession()
      : s(profile(), flat_then_down(40, 9999, 9800), /*seed=*/20261124),
        guard(s.loop, s.orders, s.journal, guard_settings(), {{"AAPL", s.instrument}}) {
    s.sim.subscribe_quotes({"AAPL"}, [this](const Quote& q) { guard.on_quote(q); });
    s.sim.start();
    s.run_for(200ms);
    for (const char* px : {"99.90", "99.80", "99.70", "99.60", "99.50", "99.40", "99.30", "99.20"}) {
      s.orders.submit("sim", market_order("AAPL", Side::buy, 10));
      s.run_for(100ms);
      stops.push_back(s.orders.submit("sim", stop_order("AAPL", Side::sell, 10, Price::parse(px))));
      s.run_for(100ms);
    }
    far_stop = s.orders.submit("sim", stop_order("AAPL", Side::sell, 1, Price::parse("90.00")));
    s.run_for(30s);  // the path falls through every stop but the far one, and holds
    s.orders.cancel(far_stop);
    s.run_for(2s);
    s.journal.flush();
    ReportOptions options;
    options.tick_sizes["AAPL"] = TickSize(Price::parse("0.01"));
    report = build_report(read_facts(s.journal), options);
  }

  const BrokerFigures& sim() const { return report.figures.at("sim"); }

  SimSession s;
  StopGuard guard;
  std::vector<std::string> stops;
  std::string far_stop;
  Report report;
};

const VenueOrder* venue_order(const Venue& v, const std::string& coid) { return v.find_by_client_id(coid); }

}  // namespace

TEST(ReliabilityFromSimSession, GhostStopsCountedAreTheGhostsTheVenueInjected) {
  FaultySession f;
  const auto injected = f.s.faults.count("ghost_stop");
  // The seed must give a mix, or this test could not tell a count from a constant.
  ASSERT_GT(injected, 0u);
  ASSERT_LT(injected, f.stops.size());
  // Every injected ghost was crossed by the path except the far stop's, if it was one.
  const bool far_is_ghost = venue_order(f.s.venue, f.far_stop) && venue_order(f.s.venue, f.far_stop)->ghost;
  const auto crossed_ghosts = f.s.faults.count("ghost_stop_crossed");
  EXPECT_EQ(crossed_ghosts, injected - (far_is_ghost ? 1 : 0));
  EXPECT_EQ(f.sim().ghost_stops, static_cast<std::int64_t>(crossed_ghosts));
  // Each declared 2 s (the grace) after the crossing, give or take one 100 ms tick.
  ASSERT_EQ(f.sim().ghost_detection_delay.count(), crossed_ghosts);
  for (double d : f.sim().ghost_detection_delay.samples) {
    EXPECT_GE(d, 2e9);
    EXPECT_LE(d, 2.1e9);
  }
}

TEST(ReliabilityFromSimSession, EveryAcknowledgedOrderHasItsAckDelayAsLatency) {
  FaultySession f;
  std::size_t accepted_at_venue = 0;
  for (const auto& o : f.s.venue.orders()) accepted_at_venue += o.status != VenueStatus::rejected;
  ASSERT_GT(accepted_at_venue, 0u);
  EXPECT_EQ(f.sim().submit_to_ack.count(), accepted_at_venue);

  // The injector logs each submit's delay ("submit delayed N ms", truncated to ms) at the
  // instant the request was sent; the order's "sent" transition carries that same instant. Every
  // acknowledged order's latency must be exactly its drawn delay.
  std::map<Timestamp, std::int64_t> delay_ms_at;
  const std::regex submit_delay("submit delayed ([0-9]+) ms");
  for (const auto& rec : f.s.faults.log()) {
    std::smatch m;
    if (rec.kind == "ack_delay" && std::regex_match(rec.detail, m, submit_delay)) delay_ms_at[rec.at] = std::stoll(m[1]);
  }
  std::multiset<std::int64_t> expected;
  for (const auto& o : f.s.journal.orders()) {
    if (o.time_of(OrderState::submitted) == 0) continue;
    ASSERT_TRUE(delay_ms_at.count(o.time_of(OrderState::pending))) << o.spec.client_order_id;
    expected.insert(delay_ms_at.at(o.time_of(OrderState::pending)));
  }
  std::multiset<std::int64_t> measured;
  for (double ns : f.sim().submit_to_ack.samples) measured.insert(static_cast<std::int64_t>(ns) / 1'000'000);
  EXPECT_EQ(measured, expected);
  // And within the profile's bounds: 20 ms plus up to 30 ms of jitter.
  EXPECT_GE(f.sim().submit_to_ack.samples.front(), 20e6);
  EXPECT_LE(f.sim().submit_to_ack.samples.back(), 50e6);
}

TEST(ReliabilityFromSimSession, RejectsAreTheVenueRejects) {
  FaultySession f;
  const auto venue_rejects = static_cast<std::int64_t>(f.s.faults.count("reject"));
  ASSERT_GT(venue_rejects, 0);
  EXPECT_EQ(f.sim().rejected, venue_rejects);
  // Submit reply and stream event word it differently; both land under the venue's reason.
  EXPECT_EQ(f.sim().rejects_by_reason,
            (std::map<std::string, std::int64_t>{{"simulated reject: order refused by venue risk check", venue_rejects}}));
}

TEST(ReliabilityFromSimSession, StopFillsAndSlippageMatchTheVenueFills) {
  FaultySession f;
  // Slippage of every stop fill the venue executed, worked out from the venue's own record.
  const std::int64_t tick_units = Price::parse("0.01").units();
  std::multiset<double> expected;
  std::size_t market_orders_filled = 0;
  for (const auto& o : f.s.venue.orders()) {
    if (o.type == OrderType::market && o.filled_quantity > 0) ++market_orders_filled;
    if (o.type != OrderType::stop) continue;
    for (const auto& fill : f.s.venue.fills())
      if (fill.order_id == o.id) expected.insert(static_cast<double>((*o.stop_price - fill.price).units() / tick_units));
  }
  ASSERT_FALSE(expected.empty()) << "some stops were not ghosts and filled";
  EXPECT_EQ(std::multiset<double>(f.sim().stop_slippage_ticks.samples.begin(), f.sim().stop_slippage_ticks.samples.end()),
            expected);
  EXPECT_EQ(f.sim().market_fill_latency.count(), market_orders_filled);

  // Trigger delay runs from the crossing the guard saw to the stop's first fill. The venue
  // triggers on the same tick the guard sees cross, so each must equal the venue's own
  // triggered-to-first-fill time for that stop.
  std::multiset<double> venue_trigger_delays;
  std::int64_t venue_triggered = 0, crossed_by_path = 0;
  for (const auto& o : f.s.venue.orders()) {
    if (o.type != OrderType::stop || o.status == VenueStatus::rejected) continue;
    crossed_by_path += *o.stop_price > Price::parse("98.00");  // where the path bottoms out
    if (o.triggered_at == 0) continue;
    ++venue_triggered;
    for (const auto& fill : f.s.venue.fills())
      if (fill.order_id == o.id) {
        venue_trigger_delays.insert(static_cast<double>(fill.at - o.triggered_at));
        break;  // the first fill
      }
  }
  ASSERT_GT(venue_triggered, 0);
  EXPECT_EQ(f.sim().stops_triggered, venue_triggered);
  EXPECT_EQ(f.sim().stops_crossed, crossed_by_path);
  EXPECT_EQ(std::multiset<double>(f.sim().stop_trigger_delay.samples.begin(), f.sim().stop_trigger_delay.samples.end()),
            venue_trigger_delays);

  // Verified stops: the guard's own in-memory verdicts, against the journal-derived count.
  std::int64_t verified = 0;
  for (const auto& [coid, rec] : f.guard.stops()) verified += rec.verified_at != 0;
  EXPECT_EQ(f.sim().stops_verified, verified);
  ASSERT_EQ(f.sim().ack_to_verified.count(), static_cast<std::size_t>(verified));
  // The simulated broker answers order queries synchronously (SimBroker::query_order), and the
  // guard reads a stop back the instant it is acknowledged: every verdict comes 0 ns after it.
  for (double d : f.sim().ack_to_verified.samples) EXPECT_EQ(d, 0.0);
}

TEST(ReliabilityFromSimSession, TheCancelledStopIsOneRequestAndOneConfirmation) {
  FaultySession f;
  const VenueOrder* far = venue_order(f.s.venue, f.far_stop);
  ASSERT_NE(far, nullptr);
  if (far->status == VenueStatus::rejected) GTEST_SKIP() << "the seed rejected the far stop";
  EXPECT_EQ(far->status, VenueStatus::cancelled);
  EXPECT_EQ(f.sim().cancel_requests, 1);
  EXPECT_EQ(f.sim().cancelled, 1);
  EXPECT_EQ(f.sim().cancel_failures, 0);
  ASSERT_EQ(f.sim().cancel_latency.count(), 1u);
  EXPECT_GE(f.sim().cancel_latency.samples[0], 20e6);
  EXPECT_LE(f.sim().cancel_latency.samples[0], 50e6 + 100e6);  // the delay, plus at most one tick
}

TEST(ReliabilityFromSimSession, AWindowAfterTheSessionHoldsNothing) {
  FaultySession f;
  ReportOptions later;
  later.window.from = f.s.clock.now() + to_ns(1s);
  const auto r = build_report(read_facts(f.s.journal), later);
  ASSERT_EQ(r.brokers, (std::vector<std::string>{"sim"}));
  EXPECT_EQ(r.figures.at("sim").orders_created, 0);
  EXPECT_EQ(r.figures.at("sim").submit_to_ack.count(), 0u);
  EXPECT_EQ(r.figures.at("sim").ghost_stops, 0);
  EXPECT_TRUE(r.timeline.empty());
}
