// Unit tests of the reliability report's arithmetic on hand-built journal facts: percentiles,
// the window, and each figure's definition, with every expected number worked out by hand.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "reliability/reliability.hpp"

using namespace backstop;
using namespace backstop::reliability;

namespace {

constexpr Timestamp kT0 = 1'800'000'000'000'000'000;  // an arbitrary session start
constexpr Timestamp ms(std::int64_t n) { return n * 1'000'000; }
constexpr Timestamp s(std::int64_t n) { return n * 1'000'000'000; }

std::vector<double> sorted(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v;
}

// An order with its lifecycle given as (state, time) steps; the transitions and state times the
// OrderManager would have journaled for it.
struct OrderBuilder {
  JournalFacts& facts;
  OrderRecord rec;
  OrderBuilder(JournalFacts& f, const std::string& coid, const std::string& broker, OrderSpec spec, Timestamp created)
      : facts(f) {
    spec.client_order_id = coid;
    rec.spec = std::move(spec);
    rec.broker = broker;
    rec.state_times[static_cast<std::size_t>(OrderState::pre_sent)] = created;
  }
  OrderBuilder& to(OrderState next, Timestamp at, const std::string& reason = {}) {
    facts.transitions.push_back({rec.spec.client_order_id, to_string(rec.state), to_string(next), at, reason, true});
    rec.state = next;
    rec.state_times[static_cast<std::size_t>(next)] = at;
    return *this;
  }
  OrderBuilder& fill(const std::string& price, Timestamp at, std::int64_t qty = 0) {
    Fill f;
    f.execution_id = "x" + std::to_string(facts.fills.size());
    f.broker = rec.broker;
    f.client_order_id = rec.spec.client_order_id;
    f.symbol = rec.spec.symbol;
    f.side = rec.spec.side;
    f.quantity = qty ? qty : rec.spec.quantity;
    f.price = Price::parse(price);
    f.at = at;
    facts.fills.push_back(f);
    rec.add_fill(f.quantity, f.price);
    return *this;
  }
  void done() { facts.orders.push_back(rec); }
};

ReportOptions options_with_ticks() {
  ReportOptions o;
  o.tick_sizes["AAPL"] = TickSize(Price::parse("0.01"));
  return o;
}

}  // namespace

TEST(NearestRank, PicksTheSmallestSampleCoveringThePercentage) {
  std::vector<double> v;
  for (int i = 1; i <= 20; ++i) v.push_back(i);
  EXPECT_EQ(nearest_rank(v, 50), 10.0);  // rank ceil(0.50 * 20) = 10
  EXPECT_EQ(nearest_rank(v, 95), 19.0);  // rank ceil(0.95 * 20) = 19
  EXPECT_EQ(nearest_rank(v, 99), 20.0);  // rank ceil(0.99 * 20) = 20
  EXPECT_EQ(nearest_rank(v, 100), 20.0);
  EXPECT_EQ(nearest_rank(v, 1), 1.0);

  std::vector<double> hundred;
  for (int i = 1; i <= 100; ++i) hundred.push_back(i * 10);
  EXPECT_EQ(nearest_rank(hundred, 50), 500.0);
  EXPECT_EQ(nearest_rank(hundred, 95), 950.0);
  EXPECT_EQ(nearest_rank(hundred, 99), 990.0);

  // Odd count: the median is the middle sample itself, never an average of two.
  EXPECT_EQ(nearest_rank({1, 2, 3, 4, 100}, 50), 3.0);
  EXPECT_EQ(nearest_rank({1, 2, 3, 4, 100}, 95), 100.0);
  EXPECT_EQ(nearest_rank({7}, 99), 7.0);
}

TEST(NearestRank, NoSamplesOrANonsensePercentageGiveNothing) {
  EXPECT_FALSE(nearest_rank({}, 50));
  EXPECT_FALSE(nearest_rank({1, 2}, 0));
  EXPECT_FALSE(nearest_rank({1, 2}, 101));
}

TEST(Distribution, SortsBeforeRanking) {
  Distribution d;
  for (double v : {30.0, 10.0, 20.0, 40.0}) d.add(v);
  d.sort();
  EXPECT_EQ(d.samples, (std::vector<double>{10, 20, 30, 40}));
  EXPECT_EQ(d.median(), 20.0);  // rank ceil(2.0) = 2
  EXPECT_EQ(d.p95(), 40.0);
}

TEST(Window, BoundsAreInclusiveAndEachMayBeOpen) {
  const Window both{kT0, kT0 + s(10)};
  EXPECT_TRUE(both.contains(kT0));
  EXPECT_TRUE(both.contains(kT0 + s(10)));
  EXPECT_FALSE(both.contains(kT0 - 1));
  EXPECT_FALSE(both.contains(kT0 + s(10) + 1));
  EXPECT_TRUE(Window{}.contains(0));
  EXPECT_TRUE((Window{kT0, std::nullopt}.contains(kT0 + s(1'000'000))));
  EXPECT_FALSE((Window{std::nullopt, kT0}.contains(kT0 + 1)));
}

TEST(Report, SubmitToAckRunsFromSentToFirstAckAndFollowsTheWindow) {
  JournalFacts f;
  OrderBuilder(f, "A", "ib", market_order("AAPL", Side::buy, 1), kT0)
      .to(OrderState::pending, kT0 + ms(10))
      .to(OrderState::submitted, kT0 + ms(35))
      .done();
  OrderBuilder(f, "B", "ib", market_order("AAPL", Side::buy, 1), kT0 + s(2))
      .to(OrderState::pending, kT0 + s(2))
      .to(OrderState::submitted, kT0 + s(2) + ms(100))
      .done();
  OrderBuilder(f, "C", "ts", limit_order("AAPL", Side::buy, 1, Price::parse("1")), kT0 + s(3))
      .to(OrderState::pending, kT0 + s(3))
      .to(OrderState::rejected, kT0 + s(3) + ms(5), "too far from the market")
      .done();

  auto r = build_report(f, options_with_ticks());
  EXPECT_EQ(r.brokers, (std::vector<std::string>{"ib", "ts"}));
  EXPECT_EQ(r.figures.at("ib").submit_to_ack.samples, (std::vector<double>{ms(25), ms(100)}));
  EXPECT_EQ(r.figures.at("ib").orders_created, 2);
  // A reject is an answer but not an acknowledgement.
  EXPECT_EQ(r.figures.at("ts").submit_to_ack.count(), 0u);
  EXPECT_EQ(r.figures.at("ts").rejected, 1);

  ReportOptions later = options_with_ticks();
  later.window.from = kT0 + s(1);
  r = build_report(f, later);
  EXPECT_EQ(r.figures.at("ib").submit_to_ack.samples, (std::vector<double>{ms(100)}));
  EXPECT_EQ(r.figures.at("ib").orders_created, 1);
  EXPECT_EQ(r.span_from, kT0 + s(1));
  EXPECT_EQ(r.span_to, kT0 + s(3) + ms(5));
}

TEST(Report, RejectsGroupByReasonWhicheverPathJournaledThem) {
  JournalFacts f;
  OrderBuilder(f, "A", "ib", market_order("AAPL", Side::buy, 1), kT0)
      .to(OrderState::pending, kT0)
      .to(OrderState::rejected, kT0 + ms(1), "margin")
      .done();
  OrderBuilder(f, "B", "ib", market_order("AAPL", Side::buy, 1), kT0)
      .to(OrderState::pending, kT0)
      .to(OrderState::rejected, kT0 + ms(1), "broker: margin")
      .done();
  OrderBuilder(f, "C", "ib", market_order("AAPL", Side::buy, 1), kT0)
      .to(OrderState::pending, kT0)
      .to(OrderState::rejected, kT0 + ms(1), "broker: halted")
      .done();
  // A refused transition changed nothing and is no reject.
  f.transitions.push_back({"C", "rejected", "rejected", kT0 + ms(2), "broker: halted", false});
  const auto r = build_report(f, options_with_ticks());
  EXPECT_EQ(r.figures.at("ib").rejected, 3);
  EXPECT_EQ(r.figures.at("ib").rejects_by_reason, (std::map<std::string, std::int64_t>{{"margin", 2}, {"halted", 1}}));
}

TEST(Report, CancelsCountRequestsConfirmationsAndFailures) {
  JournalFacts f;
  OrderBuilder(f, "A", "ib", limit_order("AAPL", Side::buy, 1, Price::parse("99")), kT0)
      .to(OrderState::pending, kT0)
      .to(OrderState::submitted, kT0 + ms(10))
      .to(OrderState::pending_cancel, kT0 + s(1), "cancel requested")
      .to(OrderState::cancelled, kT0 + s(1) + ms(40), "broker: cancelled")
      .done();
  OrderBuilder(f, "B", "ib", limit_order("AAPL", Side::buy, 1, Price::parse("99")), kT0)
      .to(OrderState::pending, kT0)
      .to(OrderState::submitted, kT0 + ms(10))
      .to(OrderState::pending_cancel, kT0 + s(2), "cancel requested")
      .to(OrderState::submitted, kT0 + s(2) + ms(5), "cancel rejected: too late")
      .done();
  f.events.push_back({kT0 + s(3), "ib", "replace_requested", "B", "{}"});
  f.events.push_back({kT0 + s(3) + ms(9), "ib", "replace_rejected", "B", R"({"message":"no"})"});
  f.events.push_back({kT0 + s(4), "ib", "replace_requested", "B", "{}"});
  const auto r = build_report(f, options_with_ticks());
  const auto& ib = r.figures.at("ib");
  EXPECT_EQ(ib.cancel_requests, 2);
  EXPECT_EQ(ib.cancelled, 1);
  EXPECT_EQ(ib.cancel_failures, 1);
  EXPECT_EQ(ib.cancel_latency.samples, (std::vector<double>{ms(40)}));
  EXPECT_EQ(ib.replace_requests, 2);
  EXPECT_EQ(ib.replace_failures, (std::map<std::string, std::int64_t>{{"rejected", 1}}));
}

TEST(Report, StopFiguresComeFromVerificationCrossingAndFills) {
  JournalFacts f;
  // A sell stop at 99.50 that was verified 300 ms after its ack, crossed, and filled 2 ticks
  // below its price 150 ms later, in two parts.
  OrderBuilder(f, "S1", "ib", stop_order("AAPL", Side::sell, 10, Price::parse("99.50")), kT0)
      .to(OrderState::pending, kT0)
      .to(OrderState::submitted, kT0 + ms(20))
      .fill("99.48", kT0 + s(5) + ms(150), 4)
      .fill("99.50", kT0 + s(5) + ms(160), 6)
      .done();
  // A buy stop at 101 verified, then found mismatching and missing.
  OrderBuilder(f, "S2", "ib", stop_order("AAPL", Side::buy, 10, Price::parse("101")), kT0)
      .to(OrderState::pending, kT0)
      .to(OrderState::submitted, kT0 + ms(30))
      .fill("101.03", kT0 + s(9))
      .done();
  f.events = {
      {kT0 + ms(320), "ib", "stop_verification", "S1", R"({"outcome":"verified","detail":""})"},
      {kT0 + ms(530), "ib", "stop_verification", "S2", R"({"outcome":"verified","detail":""})"},
      {kT0 + s(1), "ib", "stop_verification", "S2", R"({"outcome":"mismatch","detail":"quantity"})"},
      {kT0 + s(2), "ib", "stop_verification", "S2", R"({"outcome":"missing","detail":""})"},
      {kT0 + s(2) + 1, "ib", "stop_verification", "S2", R"({"outcome":"verified","detail":""})"},
      {kT0 + s(5), "ib", "stop_crossed", "S1", R"({"stop_price":"99.50","crossing_price":"99.49"})"},
      {kT0 + s(5) + ms(50), "ib", "stop_crossed", "S1", R"({"stop_price":"99.50","crossing_price":"99.40"})"},
      {kT0 + s(5) + ms(100), "ib", "stop_triggered", "S1", R"({"broker_status":"triggered"})"},
      {kT0 + s(7), "ib", "ghost_stop", "G", nlohmann::json{{"crossed_at", format_timestamp(kT0 + s(5))}}.dump()},
  };
  const auto r = build_report(f, options_with_ticks());
  const auto& ib = r.figures.at("ib");
  EXPECT_EQ(ib.stops_verified, 2);
  EXPECT_EQ(ib.ack_to_verified.samples, (std::vector<double>{ms(300), ms(500)}));  // first verdict only
  EXPECT_EQ(ib.verification_failures, (std::map<std::string, std::int64_t>{{"mismatch", 1}, {"missing", 1}, {"timeout", 0}}));
  EXPECT_EQ(ib.stops_crossed, 2);
  EXPECT_EQ(ib.stops_triggered, 1);
  EXPECT_EQ(ib.stop_trigger_delay.samples, (std::vector<double>{ms(150)}));  // first crossing to first fill
  // Per fill, adverse positive: sell 99.50 -> 99.48 is 2, -> 99.50 is 0; buy 101 -> 101.03 is 3.
  EXPECT_EQ(ib.stop_slippage_ticks.samples, sorted({2, 0, 3}));
  EXPECT_EQ(ib.ghost_stops, 1);
  EXPECT_EQ(ib.ghost_detection_delay.samples, (std::vector<double>{s(2)}));
  EXPECT_FALSE(ib.market_slippage_ticks) << "no reference price is journaled";
}

TEST(Report, SlippageWithoutATickSizeIsLeftOutWithAWarning) {
  JournalFacts f;
  OrderBuilder(f, "S1", "ib", stop_order("ES", Side::sell, 1, Price::parse("5000")), kT0)
      .to(OrderState::pending, kT0)
      .to(OrderState::submitted, kT0 + ms(20))
      .fill("4999.75", kT0 + s(1))
      .done();
  const auto r = build_report(f, options_with_ticks());
  EXPECT_EQ(r.figures.at("ib").stop_slippage_ticks.count(), 0u);
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_NE(r.warnings[0].find("no tick size known for ES"), std::string::npos) << r.warnings[0];
}

TEST(Report, TimeInHealthStateSplitsTheSpanAtEachChange) {
  JournalFacts f;
  auto change = [&](std::int64_t at_s, const char* from, const char* to, const char* circuit) {
    f.events.push_back({kT0 + s(at_s), "ib", "health_change", "",
                        nlohmann::json{{"from", from}, {"to", to}, {"circuit", circuit}, {"reason", "x"}}.dump()});
  };
  f.events.push_back({kT0, "ib", "stop_crossed", "X", "{}"});  // the journal starts here
  change(10, "up", "degraded", "closed");
  change(20, "degraded", "down", "open");
  change(25, "down", "up", "closed");
  // The router moved new orders to ts while ib was down; journaled under the new broker.
  f.events.push_back({kT0 + s(20), "ts", "route_switch", "", R"({"strategy":"x","from":"ib","to":"ts"})"});
  f.events.push_back({kT0 + s(40), "ts", "stop_crossed", "Y", "{}"});  // and ends here

  auto r = build_report(f, options_with_ticks());
  ASSERT_TRUE(r.figures.at("ib").time_in_health_state);
  EXPECT_EQ(*r.figures.at("ib").time_in_health_state,
            (std::map<std::string, std::int64_t>{{"up", s(25)}, {"degraded", s(10)}, {"down", s(5)}}));
  EXPECT_EQ(r.figures.at("ib").health_changes, 3);
  EXPECT_EQ(r.figures.at("ib").circuit_opens, 1);
  EXPECT_EQ(r.figures.at("ib").route_switches_in, 0);
  EXPECT_EQ(r.figures.at("ts").route_switches_in, 1);
  EXPECT_FALSE(r.figures.at("ts").time_in_health_state) << "no health_change for ts: not recorded, not 100 % up";

  ReportOptions mid = options_with_ticks();
  mid.window = {kT0 + s(15), kT0 + s(30)};
  r = build_report(f, mid);
  EXPECT_EQ(*r.figures.at("ib").time_in_health_state,
            (std::map<std::string, std::int64_t>{{"up", s(5)}, {"degraded", s(5)}, {"down", s(5)}}));
  EXPECT_EQ(r.figures.at("ib").health_changes, 2);
}

TEST(Report, UnjournaledKindsAreNotRecordedUntilAJournalHoldsThem) {
  JournalFacts f;
  f.events.push_back({kT0, "ib", "divergence", "A", R"({"kind":"position_size","detail":""})"});
  f.events.push_back({kT0, "ts", "divergence", "B", R"({"kind":"missed_fill","detail":""})"});
  auto r = build_report(f, options_with_ticks());
  EXPECT_FALSE(r.figures.at("ib").reconnects);
  EXPECT_FALSE(r.figures.at("ib").stream_gaps);
  EXPECT_EQ(r.figures.at("ib").divergences_by_kind, (std::map<std::string, std::int64_t>{{"position_size", 1}}));
  EXPECT_NE(render_table(r).find("not recorded"), std::string::npos);

  f.events.push_back({kT0 + 1, "ib", "reconnect", "", "{}"});
  r = build_report(f, options_with_ticks());
  EXPECT_EQ(r.figures.at("ib").reconnects, 1);
  EXPECT_EQ(r.figures.at("ts").reconnects, 0) << "recorded at all: a broker without one has 0";
  EXPECT_FALSE(r.figures.at("ts").http_429);
  const auto j = nlohmann::json::parse(render_json(r));
  EXPECT_EQ(j.at("figures").at("ts").at("streams").at("reconnects"), 0);
  EXPECT_TRUE(j.at("figures").at("ts").at("streams").at("http_429").is_null());
}

TEST(Report, DualPairsCompareEachSideWithTheFirst) {
  JournalFacts f;
  OrderBuilder(f, "a1", "alpha", market_order("AAPL", Side::buy, 5), kT0)
      .to(OrderState::pending, kT0)
      .to(OrderState::submitted, kT0 + ms(12))
      .fill("100.00", kT0 + ms(15))
      .to(OrderState::filled, kT0 + ms(15))
      .done();
  OrderBuilder(f, "b1", "beta", market_order("AAPL", Side::buy, 5), kT0)
      .to(OrderState::pending, kT0)
      .to(OrderState::submitted, kT0 + ms(40))
      .fill("100.03", kT0 + ms(45))
      .to(OrderState::filled, kT0 + ms(45))
      .done();
  OrderBuilder(f, "a2", "alpha", market_order("AAPL", Side::buy, 5), kT0 + s(1))
      .to(OrderState::pending, kT0 + s(1))
      .to(OrderState::submitted, kT0 + s(1) + ms(12))
      .done();
  OrderBuilder(f, "b2", "beta", market_order("AAPL", Side::buy, 5), kT0 + s(1))
      .to(OrderState::pending, kT0 + s(1))
      .to(OrderState::rejected, kT0 + s(1) + ms(8), "halted")
      .done();
  f.events.push_back({kT0, "", "dual_pair", "", R"({"pair":1,"orders":{"beta":"b1","alpha":"a1"}})"});
  f.events.push_back({kT0 + s(1), "", "dual_pair", "", R"({"pair":"p2","orders":{"alpha":"a2","beta":"b2"}})"});
  f.events.push_back({kT0 + s(2), "", "dual_pair", "", "not json"});

  const auto r = build_report(f, options_with_ticks());
  ASSERT_EQ(r.pairs.size(), 2u);
  const DualPair& p1 = r.pairs[0];
  EXPECT_EQ(p1.pair, "1");
  ASSERT_EQ(p1.sides.size(), 2u);
  EXPECT_EQ(p1.sides[0].broker, "alpha");
  EXPECT_EQ(p1.sides[0].ack_latency_ns, ms(12));
  EXPECT_EQ(p1.sides[1].ack_latency_ns, ms(40));
  EXPECT_EQ(p1.fill_price_diff_ticks, (std::map<std::string, double>{{"beta", 3.0}}));
  EXPECT_EQ(p1.fill_time_diff_ns, (std::map<std::string, std::int64_t>{{"beta", ms(30)}}));
  EXPECT_TRUE(p1.rejected_alone.empty());
  EXPECT_EQ(r.pairs[1].rejected_alone, (std::vector<std::string>{"beta"}));
  EXPECT_EQ(r.figures.at("beta").dual_one_sided_rejects, 1);
  EXPECT_EQ(r.figures.at("alpha").dual_one_sided_rejects, 0);
  EXPECT_EQ(r.figures.at("alpha").dual_pairs, 2);
  ASSERT_EQ(r.warnings.size(), 1u) << "the malformed pair is reported, not fatal";
  EXPECT_NE(r.warnings[0].find("malformed"), std::string::npos);
}

TEST(Report, JsonCarriesTheSchemaVersionAndExactNanoseconds) {
  JournalFacts f;
  OrderBuilder(f, "A", "ib", market_order("AAPL", Side::buy, 1), kT0)
      .to(OrderState::pending, kT0 + 7)
      .to(OrderState::submitted, kT0 + 123'456'789)
      .done();
  const auto j = nlohmann::json::parse(render_json(build_report(f, options_with_ticks())));
  EXPECT_EQ(j.at("schema_version"), kReportSchemaVersion);
  const auto& d = j.at("figures").at("ib").at("orders").at("submit_to_ack_ns");
  EXPECT_EQ(d.at("count"), 1);
  EXPECT_TRUE(d.at("median").is_number_integer());
  EXPECT_EQ(d.at("median").get<std::int64_t>(), 123'456'782);
  EXPECT_TRUE(j.at("figures").at("ib").at("stops").at("ack_to_verified_ns").at("median").is_null());
}

TEST(Report, HtmlIsOneFileWithInlineSvgAndNothingFetched) {
  JournalFacts f;
  OrderBuilder(f, "A<b>", "ib", market_order("AAPL", Side::buy, 1), kT0)
      .to(OrderState::pending, kT0)
      .to(OrderState::submitted, kT0 + ms(3))
      .done();
  f.events.push_back({kT0 + s(1), "ib", "ghost_stop", "G", R"({"crossed_at":"bad"})"});
  const auto html = render_html(build_report(f, options_with_ticks()));
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(html.find("<svg"), std::string::npos);
  // Nothing that could fetch: no URL, no external script, stylesheet, font or image.
  for (const char* fetch : {"http://", "https://", "//", "src=", "href=", "url(", "@import"})
    EXPECT_EQ(html.find(fetch), std::string::npos) << fetch;
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("<link"), std::string::npos);
  EXPECT_NE(html.find("unreadable crossed_at"), std::string::npos) << "warnings are shown";
}
