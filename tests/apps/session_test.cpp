// The session as `backstop run` and `backstop demo` drive it, on a simulated broker and a manual
// clock: what its start-up and wind-down do with stops held by Backstop (protection `local`).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

#include "apps/session.hpp"
#include "config/config.hpp"
#include "core/clock.hpp"
#include "core/error.hpp"
#include "core/event_loop.hpp"
#include "core/journal.hpp"

namespace backstop {
namespace {

using namespace std::chrono_literals;

// One simulated broker without faults and one strategy under `local` that never trades by itself
// (its entry distance is out of reach): the test sends the orders through its route.
constexpr const char* kConfig = R"({
  "journal": {"path": "unused.db"},
  "brokers": [{"name": "sim", "kind": "sim", "account": "SIM0001", "faults": FAULTS, "seed": 3, "tick_ms": 25}],
  "instruments": [{"symbol": "AAPL", "asset_class": "stock", "tick_size": "0.01", "exchange": "SMART"}],
  "strategies": [{"name": "fade", "kind": "mean_reversion", "instrument": "AAPL", "quantity": 10,
                  "params": {"entry_distance_ticks": 1000000}, "protection": "local"}],
  "routes": [{"strategy": "fade", "brokers": ["sim"], "mode": "failover"}]
})";

class SessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("backstop-session-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // `faults`: the simulated broker's fault profile, as JSON (a name, or an object of rates).
  static Config config(const std::string& faults = R"("none")") {
    std::string text = kConfig;
    text.replace(text.find("FAULTS"), 6, faults);
    return load_config_text(text, "session_test").value();
  }
  SessionOptions options() const {
    SessionOptions o;
    o.journal_path = (dir_ / "journal.db").string();
    return o;
  }

  std::filesystem::path dir_;
  ManualClock clock_;
};

// --flatten-on-exit (and the demo's end) cancels what works and flattens what is open. A held stop
// works too, at Backstop: left held after the flatten, the next run would watch it and, when price
// crossed it, send its exit for a position that is no longer there, opening one the other way.
TEST_F(SessionTest, WindDownCancelsHeldStopsAsWellAsWorkingOrders) {
  EventLoop loop(clock_);
  Session s(config(), loop, clock_, options());
  ASSERT_TRUE(s.start());
  s.run_for(1s);
  s.router().submit("fade", market_order("AAPL", Side::buy, 10));
  s.run_for(1s);
  ASSERT_EQ(s.orders().position("sim", "AAPL"), 10);
  const std::string stop = s.router().submit("fade", stop_order("AAPL", Side::sell, 10, Price::parse("1.00")));
  s.run_for(500ms);
  ASSERT_EQ(s.orders().find(stop)->state, OrderState::held)
      << "protection local: held by Backstop, not " << to_string(s.orders().find(stop)->state);

  s.wind_down();
  EXPECT_EQ(s.orders().find(stop)->state, OrderState::cancelled) << to_string(s.orders().find(stop)->state);
  EXPECT_EQ(s.orders().position("sim", "AAPL"), 0);
  for (const OrderRecord* o : s.orders().orders())
    EXPECT_TRUE(o->is_terminal()) << o->spec.client_order_id << " left " << to_string(o->state);
  s.stop();
}

// A broker slower to answer than the wind-down's old fixed pauses (300 ms for the cancels, 500 ms
// for the flatten): every acknowledgement here takes 1.5 s. The wind-down waits for what it
// cancelled and what it sent to end, not for a set time, so the process does not exit with the
// flatten still on its way and the position open (a chaos run found that with the journal's
// disk slow: the flatten orders were still pre_sent when the process ended).
TEST_F(SessionTest, WindDownWaitsForASlowBrokersAnswersBeforeItCountsThePositionFlat) {
  EventLoop loop(clock_);
  Session s(config(R"({"ack_delay_ms": 1500})"), loop, clock_, options());
  ASSERT_TRUE(s.start());
  s.run_for(1s);
  s.router().submit("fade", market_order("AAPL", Side::buy, 10));
  s.run_for(3s);
  ASSERT_EQ(s.orders().position("sim", "AAPL"), 10);
  const std::string resting = s.router().submit("fade", limit_order("AAPL", Side::buy, 10, Price::parse("1.00")));
  s.run_for(3s);
  ASSERT_EQ(s.orders().find(resting)->state, OrderState::submitted) << to_string(s.orders().find(resting)->state);

  const WindDownResult result = s.wind_down();
  EXPECT_TRUE(result.settled()) << result.describe();
  EXPECT_EQ(s.orders().find(resting)->state, OrderState::cancelled) << to_string(s.orders().find(resting)->state);
  EXPECT_EQ(s.orders().position("sim", "AAPL"), 0);
  for (const OrderRecord* o : s.orders().orders())
    EXPECT_TRUE(o->is_terminal()) << o->spec.client_order_id << " left " << to_string(o->state);
  ASSERT_EQ(s.final_positions().count("sim"), 1u);
  for (const auto& p : s.final_positions().at("sim").positions) EXPECT_EQ(p.quantity, 0) << p.symbol;
  s.stop();
}

// What the wind-down could not settle is said, not passed over: with each step given less time
// than the broker takes to answer, the flatten is still on its way when the wind-down ends, and
// the result names the order and the position (`backstop run --flatten-on-exit` then exits 1).
TEST_F(SessionTest, WindDownSaysWhatItCouldNotSettleInItsTime) {
  EventLoop loop(clock_);
  SessionOptions o = options();
  o.wind_down_step_timeout = 1s;
  Session s(config(R"({"ack_delay_ms": 1500})"), loop, clock_, o);
  ASSERT_TRUE(s.start());
  s.run_for(1s);
  s.router().submit("fade", market_order("AAPL", Side::buy, 10));
  s.run_for(3s);
  ASSERT_EQ(s.orders().position("sim", "AAPL"), 10);

  const WindDownResult result = s.wind_down();
  EXPECT_FALSE(result.settled());
  ASSERT_EQ(result.unsettled_orders.size(), 1u) << result.describe();
  const std::string flatten = result.unsettled_orders[0].substr(0, result.unsettled_orders[0].find(' '));
  ASSERT_NE(s.orders().find(flatten), nullptr) << result.describe();
  EXPECT_EQ(s.orders().find(flatten)->spec.side, Side::sell);
  EXPECT_NE(result.describe().find("sim AAPL 10 (Backstop's record)"), std::string::npos) << result.describe();
  s.stop();
}

// An order whose outcome is unknown when the wind-down's cancels go out has no broker id to be
// cancelled by. Here its acknowledgement is lost (`lost_reply_rate`), so are the broker's order
// events (`drop_order_event_rate`), and every query takes 3 s (`query_delay_ms`), so the order is
// resolved only by the wind-down's read-back from the broker:
// found working then, it is cancelled then, not left resting at the broker by a wind-down that
// says it settled everything.
TEST_F(SessionTest, WindDownCancelsAnOrderItsReadBackFindsWorking) {
  EventLoop loop(clock_);
  SessionOptions o = options();
  o.wind_down_step_timeout = 10s;
  Session s(config(R"({"lost_reply_rate": 1.0, "drop_order_event_rate": 1.0, "query_delay_ms": 3000})"), loop, clock_, o);
  ASSERT_TRUE(s.start());
  s.run_for(1s);
  const std::string resting = s.router().submit("fade", limit_order("AAPL", Side::buy, 10, Price::parse("1.00")));
  s.run_for(200ms);
  ASSERT_EQ(s.orders().find(resting)->state, OrderState::pending) << "its outcome is unknown";

  const WindDownResult result = s.wind_down();
  EXPECT_EQ(s.orders().find(resting)->state, OrderState::cancelled) << to_string(s.orders().find(resting)->state);
  EXPECT_TRUE(result.settled()) << result.describe();
  for (const OrderRecord* r : s.orders().orders())
    EXPECT_TRUE(r->is_terminal()) << r->spec.client_order_id << " left " << to_string(r->state);
  s.stop();
}

// The start-up gap, through the session itself: a restarted `backstop run` resolves the journal's
// open orders before it sends anything, and a stop held by Backstop has no broker stop behind it
// meanwhile. Session::start must watch held stops from the moment the journal is loaded, with
// quotes flowing while it waits for recovery, and send a stop crossed then once recovery is over.
// Here every query to the restarted broker takes 2 s to answer (fault profile `query_delay_ms`,
// as IBKR paces its reads), so recovery of the one order open at it lasts that long. The
// simulated market starts each process at the same price and walks the same way (same seed): the
// stop is placed once price has risen above where it started, just above that start, so the
// restarted market's first quotes cross it while recovery runs.
TEST_F(SessionTest, HeldStopCrossedWhileStartUpRecoveryRunsIsSentOnceItEnds) {
  std::string stop;
  {
    EventLoop loop(clock_);
    Session s(config(), loop, clock_, options());
    std::optional<Price> first, last;
    s.on_quote([&](const Quote& q) {
      if (!q.last) return;
      if (!first) first = q.last;
      last = q.last;
    });
    ASSERT_TRUE(s.start());
    s.run_for(1s);
    s.router().submit("fade", market_order("AAPL", Side::buy, 10));
    s.run_for(1s);
    ASSERT_EQ(s.orders().position("sim", "AAPL"), 10);
    // Open at the broker when the process ends: the restart's recovery has to ask about it.
    s.router().submit("fade", limit_order("AAPL", Side::buy, 1, Price::parse("1.00")));
    ASSERT_TRUE(first.has_value());
    const Price start = *first;
    for (int i = 0; i < 1200 && *last < start + Price::parse("0.05"); ++i) s.run_for(100ms);
    ASSERT_GE(*last, start + Price::parse("0.05")) << "the simulated market never rose 5 ticks above its start";
    stop = s.router().submit("fade", stop_order("AAPL", Side::sell, 10, start + Price::parse("0.02")));
    s.run_for(10ms);
    ASSERT_EQ(s.orders().find(stop)->state, OrderState::held) << s.orders().find(stop)->last_message;
  }  // ended without a wind-down, as a killed process: nothing cancelled, the journal as it was

  EventLoop loop(clock_);
  Session s(config(R"({"query_delay_ms": 2000})"), loop, clock_, options());
  ASSERT_TRUE(s.start());
  s.journal().flush();
  const auto crossed = s.journal().events("local_stop_crossed_during_recovery");
  ASSERT_EQ(crossed.size(), 1u) << "the held stop was watched while recovery ran, and crossed then";
  EXPECT_EQ(crossed[0].client_order_id, stop);
  s.run_for(5s);
  // Filled at the broker, as a market order under its own id: the restarted venue took up the
  // first one's state (beside the journal), so it holds the position the exit closes and goes on
  // with the first one's ids.
  const OrderRecord& exit = *s.orders().find(stop);
  EXPECT_EQ(exit.state, OrderState::filled) << to_string(exit.state) << ": " << exit.last_message;
  EXPECT_EQ(exit.filled_quantity, 10);
  EXPECT_FALSE(exit.broker_order_id.empty());
  EXPECT_EQ(exit.spec.type, OrderType::market);
  s.journal().flush();
  // (The strategy, flat again, goes on trading: its own later stops fire too; not counted here.)
  std::vector<JournalEvent> fired;
  for (const auto& e : s.journal().events("local_stop_fired"))
    if (e.client_order_id == stop) fired.push_back(e);
  ASSERT_EQ(fired.size(), 1u) << "sent once";
  EXPECT_NE(fired[0].detail.find("crossed_during_recovery_at"), std::string::npos) << fired[0].detail;
  s.stop();
}

// The simulated broker keeps its record beside the journal, as a real broker keeps its own: a
// `backstop run` ended like a killed process and started again on its journal finds the order it
// left working still working at the broker, and the position it bought still there, so its
// recovery resolves that order and its reconciliation finds nothing to report. (With a new venue
// every run, the order was "missing at the broker" and the position was 0 there.)
TEST_F(SessionTest, ARunStartedAgainFindsItsSimulatedBrokerAsItLeftIt) {
  std::string resting;
  {
    EventLoop loop(clock_);
    Session s(config(), loop, clock_, options());
    ASSERT_TRUE(s.start());
    s.run_for(1s);
    s.router().submit("fade", market_order("AAPL", Side::buy, 10));
    resting = s.router().submit("fade", limit_order("AAPL", Side::buy, 1, Price::parse("1.00")));
    s.run_for(1s);
    ASSERT_EQ(s.orders().position("sim", "AAPL"), 10);
    ASSERT_EQ(s.orders().find(resting)->state, OrderState::submitted);
  }  // ended without stop() or a wind-down, as a killed process: its venue saved what it had by then
  ASSERT_TRUE(std::filesystem::exists(options().journal_path + ".sim.broker-state.json"));

  EventLoop loop(clock_);
  Session s(config(), loop, clock_, options());
  ASSERT_TRUE(s.start());
  s.run_for(2s);  // reconciliation runs at start and every second
  EXPECT_EQ(s.orders().find(resting)->state, OrderState::submitted) << s.orders().find(resting)->last_message;
  EXPECT_EQ(s.orders().position("sim", "AAPL"), 10);
  s.journal().flush();
  for (const auto& d : s.journal().events("divergence")) ADD_FAILURE() << d.client_order_id << ": " << d.detail;
  s.stop();
}

// A state file that cannot be taken up stops the start with its name, rather than starting a new
// venue that would call every order of the journal missing.
TEST_F(SessionTest, AnUnreadableBrokerStateFileIsAnErrorNamingIt) {
  const std::string file = options().journal_path + ".sim.broker-state.json";
  std::ofstream(file) << "{\"orders\": [";
  EventLoop loop(clock_);
  try {
    Session s(config(), loop, clock_, options());
    FAIL() << "started on a broken state file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(file), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("brokers[sim]"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace backstop
