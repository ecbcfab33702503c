// The session as `backstop run` and `backstop demo` drive it, on a simulated broker and a manual
// clock: what its start-up and wind-down do with stops held by Backstop (protection `local`).
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <unistd.h>

#include "apps/session.hpp"
#include "config/config.hpp"
#include "core/clock.hpp"
#include "core/event_loop.hpp"

namespace backstop {
namespace {

using namespace std::chrono_literals;

// One simulated broker without faults and one strategy under `local` that never trades by itself
// (its entry distance is out of reach): the test sends the orders through its route.
constexpr const char* kConfig = R"({
  "journal": {"path": "unused.db"},
  "brokers": [{"name": "sim", "kind": "sim", "account": "SIM0001", "faults": "none", "seed": 3, "tick_ms": 25}],
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

  static Config config() { return load_config_text(kConfig, "session_test").value(); }
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

}  // namespace
}  // namespace backstop
