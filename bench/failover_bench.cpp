// Failover time: from the primary broker's endpoint failing (through a FaultProxy: dead, stalled
// or answering 503) to the first order acknowledged at the secondary, with orders offered every
// 50 ms, through the real adapters against both emulators on loopback. Health checks every
// 250 ms with a 400 ms timeout (the failover test's settings; IBKR's 10 requests/s pacing bounds
// the interval). Reported as manual time per failover; the detection is part of it.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <filesystem>

#include "emulated_brokers.hpp"
#include "fault_proxy.hpp"
#include "routed_session.hpp"

using namespace backstop;
using namespace std::chrono_literals;
using testing_support::EmulatedBrokers;
using testing_support::FaultProxy;
namespace fs = std::filesystem;

namespace {

EmulatedBrokers& brokers() {
  static EmulatedBrokers b;
  return b;
}

void BM_FailoverPrimaryFailureToFirstAckAtSecondary(benchmark::State& state) {
  const auto mode = static_cast<FaultProxy::Mode>(state.range(0));
  const bool ts_primary = state.range(1) == 1;
  int run = 0;
  for (auto _ : state) {
    ++run;
    FaultProxy ts_proxy(static_cast<std::uint16_t>(brokers().tradestation().port()));
    FaultProxy ib_proxy(brokers().ibkr().port());
    SystemClock clock;
    EventLoop loop(clock);
    const fs::path dir = fs::temp_directory_path() /
                         ("backstop-failover-bench-" + std::to_string(::getpid()) + "-" + std::to_string(run));
    fs::create_directories(dir);
    {
      testing_support::RoutedSessionOptions so;
      so.dir = dir;
      so.id_prefix = "B" + std::to_string(state.range(0)) + std::to_string(state.range(1)) + "r" + std::to_string(run);
      so.ts_url = ts_proxy.base_url();
      so.ib_url = ib_proxy.base_url();
      so.health.open_interval = 60s;
      so.monitor = HealthMonitorSettings{250ms, 400ms};
      Timestamp acked_at = 0;  // outlives the session: late acknowledgements land during its stop
      testing_support::RoutedSession session(brokers(), loop, so);
      Router& router = session.router;
      RouteConfig route;
      route.strategy = "s";
      route.brokers = ts_primary ? std::vector<std::string>{"ts", "ib"} : std::vector<std::string>{"ib", "ts"};
      router.add_route(route);
      const std::string secondary = route.brokers[1];
      auto run_for = [&](Duration d) { loop.run_until(clock.now() + to_ns(d)); };
      session.connect(5s);
      run_for(300ms);

      (ts_primary ? ts_proxy : ib_proxy).set_mode(mode);
      const Timestamp failed_at = clock.now();
      while (acked_at == 0 && clock.now() - failed_at < to_ns(5s)) {
        router.submit("s", limit_order("AAPL", Side::buy, 1, Price::parse("50.00")),
                      [&, secondary](const CommandResult& r) {
                        if (acked_at == 0 && r.outcome == Outcome::accepted && router.current_broker("s") == secondary)
                          acked_at = clock.now();
                      });
        run_for(50ms);
      }
      if (acked_at == 0) state.SkipWithError("no acknowledged order at the secondary within 5 s");
      state.SetIterationTime(static_cast<double>(acked_at - failed_at) / 1e9);
    }
    fs::remove_all(dir);
  }
}
BENCHMARK(BM_FailoverPrimaryFailureToFirstAckAtSecondary)
    ->ArgNames({"mode", "ts_primary"})
    ->Args({static_cast<int>(FaultProxy::Mode::dead), 1})
    ->Args({static_cast<int>(FaultProxy::Mode::stall), 1})
    ->Args({static_cast<int>(FaultProxy::Mode::http_503), 1})
    ->Args({static_cast<int>(FaultProxy::Mode::dead), 0})
    ->Args({static_cast<int>(FaultProxy::Mode::stall), 0})
    ->Args({static_cast<int>(FaultProxy::Mode::http_503), 0})
    ->Iterations(5)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
