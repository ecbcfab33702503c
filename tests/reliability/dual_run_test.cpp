// Dual-run pairs as the Router journals them ("dual_pair" events), compared side by side by the
// report and checked against each venue's own record: which side rejected, when each filled.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "reliability/reliability.hpp"
#include "routing/router.hpp"
#include "tests/routing/sim_harness.hpp"

using namespace backstop;
using namespace backstop::reliability;
using namespace std::chrono_literals;

namespace {

struct Side_ {
  Side_(const std::string& name, Clock& clock, EventLoop& loop, FaultProfile profile, std::uint64_t seed)
      : faults(std::move(profile), seed), venue(clock, faults), broker(options(name), loop, venue) {
    venue.add_instrument("AAPL", TickSize(Price::parse("0.01")));
    broker.add_price_path(std::make_unique<testing_support::ScriptedPath>("AAPL", std::vector<std::string>{"100.00"}));
  }
  static SimBrokerOptions options(const std::string& name) {
    SimBrokerOptions o;
    o.name = name;
    return o;
  }
  FaultInjector faults;
  Venue venue;
  SimBroker broker;
};

// Broker "a" rejects some orders and acknowledges after a delay; broker "b" is faultless. The
// same market orders go to both through a dual route.
struct DualSession {
  static FaultProfile a_faults() {
    FaultProfile p;
    p.reject_rate = 0.3;
    p.ack_delay = 20ms;
    p.ack_delay_jitter = 30ms;
    return p;
  }
  static RiskConfig risk() {
    RiskConfig r;
    r.max_orders_per_second = 1000;
    return r;
  }
  static std::map<std::string, Instrument> instruments() {
    Instrument i;
    i.symbol = "AAPL";
    return {{"AAPL", i}};
  }
  DualSession()
      : dir(std::filesystem::temp_directory_path() / ("backstop-dual-" + std::to_string(::getpid()))),
        loop(clock),
        journal((std::filesystem::create_directories(dir), (dir / "j.db").string())),
        ids("D"),
        orders(loop, journal, ids),
        a("a", clock, loop, a_faults(), 11),
        b("b", clock, loop, FaultProfile::named("none"), 12),
        health(loop, journal),
        router(loop, orders, health, journal, risk(), instruments()) {
    orders.add_broker(a.broker);
    orders.add_broker(b.broker);
    RouteConfig route;
    route.strategy = "s";
    route.brokers = {"a", "b"};
    route.mode = RouteMode::dual;
    router.add_route(route);
    // The router needs a reference price for the notional check of market orders.
    a.broker.subscribe_quotes({"AAPL"}, [this](const Quote& q) { router.on_quote(q); });
    a.broker.start();
    b.broker.start();
    run_for(250ms);  // first quotes
    for (int i = 0; i < 10; ++i) {
      router.submit("s", market_order("AAPL", Side::buy, 1));
      run_for(200ms);
    }
    run_for(1s);
    journal.flush();
    ReportOptions options;
    options.tick_sizes["AAPL"] = TickSize(Price::parse("0.01"));
    report = build_report(read_facts(journal), options);
  }
  ~DualSession() {
    a.broker.stop();
    b.broker.stop();
    std::filesystem::remove_all(dir);
  }
  void run_for(Duration d) { loop.run_until(clock.now() + d.count()); }

  std::filesystem::path dir;
  ManualClock clock;
  EventLoop loop;
  Journal journal;
  ClientOrderIdGenerator ids;
  OrderManager orders;
  Side_ a, b;
  BrokerHealth health;
  Router router;
  Report report;
};

Timestamp first_fill_at(const Venue& v, const std::string& coid) {
  const VenueOrder* o = v.find_by_client_id(coid);
  if (!o) return 0;
  for (const auto& f : v.fills())
    if (f.order_id == o->id) return f.at;
  return 0;
}

}  // namespace

TEST(ReliabilityDualRun, PairsMatchWhatEachVenueDid) {
  DualSession d;
  ASSERT_EQ(d.report.pairs.size(), 10u);
  const auto a_rejects = static_cast<std::int64_t>(d.a.faults.count("reject"));
  ASSERT_GT(a_rejects, 0) << "the seed must reject some at a, or one-sided rejects are not tested";
  ASSERT_LT(a_rejects, 10);
  // b never rejects: each reject at a is a one-sided reject.
  EXPECT_EQ(d.report.figures.at("a").dual_one_sided_rejects, a_rejects);
  EXPECT_EQ(d.report.figures.at("b").dual_one_sided_rejects, 0);
  EXPECT_EQ(d.report.figures.at("a").dual_pairs, 10);
  EXPECT_EQ(d.report.figures.at("b").dual_pairs, 10);

  int both_filled = 0;
  for (const DualPair& p : d.report.pairs) {
    ASSERT_EQ(p.sides.size(), 2u);
    const DualSide& sa = p.sides[0];
    const DualSide& sb = p.sides[1];
    ASSERT_EQ(sa.broker, "a");
    ASSERT_EQ(sb.broker, "b");
    const VenueOrder* va = d.a.venue.find_by_client_id(sa.client_order_id);
    ASSERT_NE(va, nullptr) << sa.client_order_id;
    const bool a_rejected = va->status == VenueStatus::rejected;
    EXPECT_EQ(sa.state == "rejected", a_rejected);
    EXPECT_EQ(p.rejected_alone, a_rejected ? std::vector<std::string>{"a"} : std::vector<std::string>{});
    // b answers at once (no delay injected); a after its drawn 20-50 ms.
    EXPECT_EQ(sb.ack_latency_ns, 0);
    if (!a_rejected) {
      ASSERT_TRUE(sa.ack_latency_ns);
      EXPECT_GE(*sa.ack_latency_ns, to_ns(20ms));
      EXPECT_LE(*sa.ack_latency_ns, to_ns(50ms));
      // Fill time difference: exactly the venues' own fill times apart.
      const Timestamp fa = first_fill_at(d.a.venue, sa.client_order_id);
      const Timestamp fb = first_fill_at(d.b.venue, sb.client_order_id);
      ASSERT_NE(fa, 0);
      ASSERT_NE(fb, 0);
      ASSERT_EQ(p.fill_time_diff_ns.count("b"), 1u);
      EXPECT_EQ(p.fill_time_diff_ns.at("b"), fb - fa);
      // A flat price path: both bought at the same ask.
      EXPECT_EQ(p.fill_price_diff_ticks.at("b"), 0.0);
      ++both_filled;
    } else {
      EXPECT_TRUE(p.fill_time_diff_ns.empty());
    }
  }
  EXPECT_EQ(both_filled, 10 - a_rejects);
}
