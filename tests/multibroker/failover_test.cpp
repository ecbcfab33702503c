// Failover on the real adapters against their emulators, over loopback, many seeded runs.
//
// Each run routes a stream of resting limit orders through a failover route whose primary is
// TradeStation or IBKR (by seed). Mid-session the primary's endpoint dies (connections reset),
// stalls (accepted, never answered) or answers 503, through a FaultProxy in front of its
// emulator. Some runs first lose the primary's reply to an in-flight order. The emulators' own
// order logs are the evidence:
//  - no client order id reaches the emulators twice, or both emulators;
//  - every order sent later than one health-check interval plus one request timeout after the
//    failure is at the secondary, acknowledged;
//  - an order whose reply was lost is resolved by query at the primary (submitted there) and
//    never sent to the secondary.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <filesystem>
#include <random>

#include "emulated_brokers.hpp"
#include "fault_proxy.hpp"
#include "routed_session.hpp"

namespace backstop {
namespace {

using namespace std::chrono_literals;
using testing_support::AdapterTimeouts;
using testing_support::EmulatedBrokers;
using testing_support::FaultProxy;
namespace fs = std::filesystem;
using nlohmann::json;

// IBKR's gateway takes 10 requests/s in all (the adapter paces itself to that): health checks
// every 250 ms and an order every 300 ms leave room for its own background requests, and a
// check may wait its turn behind an order, hence the timeout.
constexpr auto kCheckInterval = 250ms;
constexpr auto kRequestTimeout = 400ms;
constexpr auto kOrderInterval = 300ms;
constexpr int kShards = 4;  // CTest runs the shards in parallel
// The event loop wakes at least every few milliseconds; allow that much past the bound.
constexpr auto kLoopSlack = 25ms;

int run_count() {
  if (const char* v = std::getenv("BACKSTOP_FAILOVER_RUNS")) return std::max(1, std::atoi(v));
  return 200;
}

class FailoverOnEmulators : public ::testing::TestWithParam<int> {
 protected:
  static void SetUpTestSuite() {
    brokers_ = new EmulatedBrokers();
    dir_ = new fs::path(fs::temp_directory_path() / ("backstop-failover-" + std::to_string(::getpid())));
    fs::create_directories(*dir_);
  }
  static void TearDownTestSuite() {
    delete brokers_;
    fs::remove_all(*dir_);
    delete dir_;
  }
  // One pair of emulators for every run: their logs accumulate, client order ids never repeat.
  static EmulatedBrokers* brokers_;
  static fs::path* dir_;
};
EmulatedBrokers* FailoverOnEmulators::brokers_ = nullptr;
fs::path* FailoverOnEmulators::dir_ = nullptr;

TEST_P(FailoverOnEmulators, NewOrdersReachSecondaryInTimeAndNothingIsSentTwice) {
  const int shard = GetParam();
  const int runs = run_count();
  int passed = 0;
  std::vector<std::string> failures;
  for (int seed = 1 + shard; seed <= runs; seed += kShards) {
    std::mt19937_64 rng(static_cast<std::uint64_t>(seed));
    const bool ts_primary = seed % 2 == 1;
    const FaultProxy::Mode mode =
        std::array{FaultProxy::Mode::dead, FaultProxy::Mode::stall, FaultProxy::Mode::http_503}[(seed / 2) % 3];
    const bool lose_reply = seed % 4 == 0 || seed % 4 == 3;
    const std::string primary = ts_primary ? "ts" : "ib";
    const std::string secondary = ts_primary ? "ib" : "ts";
    const std::string label = "seed " + std::to_string(seed) + " (primary " + primary + ", " +
                              testing_support::to_string(mode) + (lose_reply ? ", lost reply" : "") + ")";
    std::vector<std::string> problems;

    FaultProxy ts_proxy(static_cast<std::uint16_t>(brokers_->tradestation().port()));
    FaultProxy ib_proxy(brokers_->ibkr().port());
    FaultProxy& primary_proxy = ts_primary ? ts_proxy : ib_proxy;

    SystemClock clock;
    EventLoop loop(clock);
    const fs::path run_dir = *dir_ / std::to_string(seed);
    fs::create_directories(run_dir);
    testing_support::RoutedSessionOptions so;
    so.dir = run_dir;
    so.id_prefix = "F" + std::to_string(seed) + "x";
    so.ts_url = ts_proxy.base_url();
    so.ib_url = ib_proxy.base_url();
    so.timeouts = AdapterTimeouts{300ms};
    so.orders.resolve_retry_interval = 100ms;
    so.health.open_interval = 60s;  // no recovery within a run
    so.health.latency_degraded = 100ms;
    so.monitor = HealthMonitorSettings{kCheckInterval, kRequestTimeout};
    auto session = std::make_unique<testing_support::RoutedSession>(*brokers_, loop, so);
    OrderManager& orders = session->orders;
    BrokerHealth& health = session->health;
    Router& router = session->router;
    RouteConfig route;
    route.strategy = "s";
    route.brokers = {primary, secondary};
    router.add_route(route);
    auto run_until = [&](const std::function<bool()>& done, Duration limit) { return session->run_until(done, limit); };
    auto run_for = [&](Duration d) { session->run_for(d); };

    if (!session->connect(10s)) {
      problems.push_back("adapters did not connect: ts " + session->ts->health().detail + "; ib " +
                         session->ib->health().detail);
    }
    run_for(120ms);
    if (router.choose("s") != primary)
      problems.push_back("route did not start on the primary: " + primary + " " + to_string(health.state(primary)) +
                         ", " + secondary + " " + to_string(health.state(secondary)));
    // The healthy secondary must stay usable (slow answers may degrade it; they must not open it).
    health.on_change([&](const HealthChange& c) {
      if (c.broker == secondary && c.to == HealthState::down) problems.push_back("secondary went down: " + c.reason);
    });

    // A resting buy far below the market: acknowledged, never filled.
    int sequence = 0;
    auto order = [&] {
      return limit_order("AAPL", Side::buy, 1, Price::parse("50.00") + Price::parse("0.01") * (sequence++ % 50));
    };
    std::vector<std::pair<Timestamp, std::string>> sent;
    auto send = [&] { sent.emplace_back(clock.now(), router.submit("s", order())); };

    for (int i = 0; i < 2; ++i) {
      send();
      run_for(kOrderInterval);
    }
    std::string lost;
    if (lose_reply) {
      // The primary acts on this order; its answer never arrives: unknown, resolved by query.
      primary_proxy.lose_next_order_reply();
      // TradeStation's order reads carry no client order id: the adapter finds the order by its
      // fingerprint among orders it has not claimed, so this one must differ from every other
      // order on the (shared) account: a price no other run uses.
      lost = router.submit("s", limit_order("AAPL", Side::buy, 1, Price::parse("40.00") + Price::parse("0.01") * seed));
      const bool resolved = run_until([&] {
        const OrderRecord* o = orders.find(lost);
        return o && o->state == OrderState::submitted;
      }, 3s);
      if (primary_proxy.replies_lost() != 1) problems.push_back("the proxy did not lose the reply");
      if (!resolved)
        problems.push_back("order " + lost + " with a lost reply not resolved by query: " +
                           to_string(orders.find(lost)->state) + " " + orders.find(lost)->last_message);
    }
    std::uniform_int_distribution<int> offset_ms(0, 150);
    run_for(std::chrono::milliseconds(offset_ms(rng)));
    primary_proxy.set_mode(mode);
    const Timestamp failed_at = clock.now();
    const Timestamp bound = failed_at + to_ns(kCheckInterval + kRequestTimeout + kLoopSlack);
    while (clock.now() < bound + to_ns(3 * kOrderInterval)) {
      send();
      run_for(kOrderInterval);
    }
    // Acknowledgements of the last orders. Where an order goes is decided when it is submitted;
    // its journal commit (an fsync) and the broker's answer may take longer on a busy machine, so
    // wait for the answers (bounded) rather than a fixed time before reading the emulators' logs.
    run_until([&] {
      for (const auto& [when, coid] : sent) {
        const OrderRecord* o = orders.find(coid);
        if (o && (o->state == OrderState::pre_sent || o->state == OrderState::pending) && o->broker == secondary)
          return false;
      }
      return true;
    }, 5s);
    run_for(100ms);

    // The emulators' logs.
    const auto at_ts = brokers_->tradestation_placements();
    const auto at_ib = brokers_->ibkr_placements();
    const auto& at_primary = ts_primary ? at_ts : at_ib;
    const auto& at_secondary = ts_primary ? at_ib : at_ts;
    auto placed = [](const std::map<std::string, int>& m, const std::string& coid) {
      auto it = m.find(coid);
      return it == m.end() ? 0 : it->second;
    };
    std::vector<std::string> all;
    for (const auto& [t, c] : sent) all.push_back(c);
    if (!lost.empty()) all.push_back(lost);
    int after_bound = 0;
    for (const auto& coid : all) {
      const int p = placed(at_primary, coid), s = placed(at_secondary, coid);
      if (p + s > 1) problems.push_back(coid + " placed " + std::to_string(p) + "x at " + primary + " and " +
                                        std::to_string(s) + "x at " + secondary);
    }
    for (const auto& [when, coid] : sent) {
      if (when <= bound) continue;
      ++after_bound;
      const OrderRecord* o = orders.find(coid);
      if (placed(at_secondary, coid) != 1 || !o || o->broker != secondary || o->state != OrderState::submitted)
        problems.push_back(coid + " sent " + std::to_string((when - failed_at) / 1'000'000) + " ms after the failure: " +
                           std::to_string(placed(at_secondary, coid)) + " placements at " + secondary +
                           "; Backstop has it at " + (o ? o->broker : "?") + ", " + (o ? to_string(o->state) : "?") +
                           " " + (o ? o->last_message : ""));
    }
    if (after_bound == 0) problems.push_back("no order was sent after the bound");
    if (!lost.empty()) {
      if (placed(at_primary, lost) != 1) problems.push_back("the lost-reply order is not at the primary exactly once");
      if (placed(at_secondary, lost) != 0) problems.push_back("the lost-reply order reached the secondary");
    }
    // Unknown orders at the failed primary stay there, pending: never re-routed.
    for (const auto& [when, coid] : sent) {
      const OrderRecord* o = orders.find(coid);
      if (o && o->broker == primary && placed(at_secondary, coid) != 0)
        problems.push_back(coid + " of the primary reached the secondary");
    }

    session.reset();  // stops the monitor and adapters, then the routing core
    fs::remove_all(run_dir);

    if (problems.empty()) {
      ++passed;
    } else {
      std::string text = label + ":";
      for (const auto& p : problems) text += "\n    " + p;
      failures.push_back(text);
    }
  }
  std::cout << "failover shard " << shard << ": " << passed << " passed, " << failures.size() << " failed\n";
  for (const auto& f : failures) ADD_FAILURE() << f;
}

INSTANTIATE_TEST_SUITE_P(Shards, FailoverOnEmulators, ::testing::Range(0, kShards));

}  // namespace
}  // namespace backstop
