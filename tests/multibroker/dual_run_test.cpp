// Dual-run on the real adapters against both emulators: one strategy object (a bracket
// breakout) whose every order the Router sends to TradeStation and to IBKR. The pairs the router
// journals ("dual_pair") must match what each emulator's own log saw, order for order, with the
// same intent at both.
#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <filesystem>

#include "emulated_brokers.hpp"
#include "routed_session.hpp"
#include "routing/strategies/bracket_breakout.hpp"
#include "routing/strategy_runner.hpp"

namespace backstop {
namespace {

using namespace std::chrono_literals;
using testing_support::EmulatedBrokers;
namespace fs = std::filesystem;
using nlohmann::json;

constexpr std::int64_t kAaplConid = 265598;

TEST(DualRunOnEmulators, RecordedPairsMatchWhatEachEmulatorSaw) {
  const fs::path dir = fs::temp_directory_path() / ("backstop-dual-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  EmulatedBrokers brokers;  // prices move only when this test says so, identically at both
  httplib::Client ts_control("127.0.0.1", brokers.tradestation().port());

  SystemClock clock;
  EventLoop loop(clock);
  {
    testing_support::RoutedSessionOptions so;
    so.dir = dir;
    so.id_prefix = "D";
    so.ts_url = brokers.tradestation().base_url();
    so.ib_url = brokers.ibkr().base_url();
    so.timeouts = {2000ms};
    so.max_orders_per_second = 100;
    testing_support::RoutedSession session(brokers, loop, so);
    Journal& journal = session.journal;
    OrderManager& orders = session.orders;
    Router& router = session.router;
    Broker& ts = *session.ts;
    Broker& ib = *session.ib;
    RouteConfig route;
    route.strategy = "dual";
    route.brokers = {"ts", "ib"};
    route.mode = RouteMode::dual;
    router.add_route(route);

    BracketBreakoutParams p;
    p.symbol = "AAPL";
    p.quantity = 5;
    p.lookback = 10;
    p.take_profit_ticks = 10;
    p.stop_loss_ticks = 8;
    p.entry_timeout = 3s;
    BracketBreakout strategy(p, "dual");
    StrategyRunner runner(strategy, router, loop, "dual");
    // The session stops while the runner listening to it is alive, on every way out of this block.
    struct StopSessionFirst {
      testing_support::RoutedSession& s;
      ~StopSessionFirst() { s.stop(); }
    } stop_session_first{session};
    // The strategy follows the first broker's market data, as a dual-run session does.
    ts.subscribe_quotes({"AAPL"}, [&](const Quote& q) {
      router.on_quote(q);
      runner.on_quote(q);
    });

    auto run_for = [&](Duration d) { session.run_for(d); };
    // The same quote at both venues: their books, hence their fills, follow the same market.
    auto quote = [&](const std::string& last) {
      const Price l = Price::parse(last), tick = Price::parse("0.01");
      ts_control.Post("/__emulator/quote",
                      json{{"symbol", "AAPL"}, {"bid", (l - tick).to_string()}, {"ask", (l + tick).to_string()}, {"last", last}}
                          .dump(),
                      "application/json");
      brokers.ibkr().set_quote(kAaplConid, l - tick, l + tick, l);
    };

    ASSERT_TRUE(session.connect(10s)) << ts.health().detail << " / " << ib.health().detail;
    runner.start();
    // A range, then a breakout upwards, then through the take-profit.
    for (int i = 0; i < 14; ++i) {
      quote(i % 2 ? "100.00" : "100.02");
      run_for(60ms);
    }
    for (const char* last : {"100.03", "100.05", "100.07", "100.09", "100.12", "100.15", "100.18", "100.22", "100.26"}) {
      quote(last);
      run_for(150ms);
    }
    run_for(1500ms);
    runner.stop();
    for (const OrderRecord* o : orders.working_orders()) orders.cancel(o->spec.client_order_id);
    run_for(500ms);
    journal.flush();

    const auto pairs = journal.events("dual_pair");
    ASSERT_GE(pairs.size(), 3u) << "the breakout sent no bracket";
    std::map<std::string, int> at_ts, at_ib;
    {
      const json log = json::parse(ts_control.Get("/__emulator/log")->body);
      for (const auto& e : log["requests"])
        if (e.value("endpoint", "").rfind("POST", 0) == 0) at_ts[e.value("OrderConfirmID", "")]++;
    }
    {
      const json log = json::parse(brokers.ibkr().log_json());
      for (const auto& e : log["orders"])
        if (e.value("stage", "") == "received") at_ib[e.value("cOID", "")]++;
    }
    std::size_t paired_at_ts = 0, paired_at_ib = 0;
    for (const auto& ev : pairs) {
      const json j = json::parse(ev.detail);
      const std::string cts = j["orders"]["ts"], cib = j["orders"]["ib"];
      EXPECT_EQ(at_ts[cts], 1) << cts << " at TradeStation";
      EXPECT_EQ(at_ib[cib], 1) << cib << " at IBKR";
      EXPECT_EQ(at_ts.count(cib), 0u) << cib << " must go to IBKR only";
      EXPECT_EQ(at_ib.count(cts), 0u) << cts << " must go to TradeStation only";
      paired_at_ts += at_ts.count(cts);
      paired_at_ib += at_ib.count(cib);
      const OrderRecord* a = orders.find(cts);
      const OrderRecord* b = orders.find(cib);
      ASSERT_TRUE(a && b);
      EXPECT_EQ(a->broker, "ts");
      EXPECT_EQ(b->broker, "ib");
      // Identical intent.
      EXPECT_EQ(a->spec.side, b->spec.side) << cts;
      EXPECT_EQ(a->spec.quantity, b->spec.quantity) << cts;
      EXPECT_EQ(a->spec.type, b->spec.type) << cts;
      EXPECT_EQ(a->spec.limit_price, b->spec.limit_price) << cts;
      EXPECT_EQ(a->spec.stop_price, b->spec.stop_price) << cts;
      EXPECT_EQ(a->spec.tif, b->spec.tif) << cts;
    }
    // Every order either emulator saw from this session is one side of a recorded pair.
    std::size_t ours_at_ts = 0, ours_at_ib = 0;
    for (const auto& [coid, n] : at_ts) ours_at_ts += coid.rfind("D-", 0) == 0;
    for (const auto& [coid, n] : at_ib) ours_at_ib += coid.rfind("D-", 0) == 0;
    EXPECT_EQ(ours_at_ts, paired_at_ts);
    EXPECT_EQ(ours_at_ib, paired_at_ib);
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace backstop
